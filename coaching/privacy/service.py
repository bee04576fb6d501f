"""Exports (GDPR art. 15/20) and erasure (art. 17) of a patient's data.

An export is a row that a job turns into a ZIP in the media store: `data.json` with every row
the collector finds about the patient (secrets left out) and the stored videos and thumbnails
those rows point at. The patient fetches it through a short-lived URL until it expires.

Erasure closes the account at once: credentials, devices, messages, videos, notifications,
progress and everything else found by the collector are deleted; uptake events stay with a
random pseudonym instead of the account id (the funnel counts invites, not people); the audit log
stays. Rows of the medical record (`ERASURE_RETAINED_TABLES`) are kept for
`MEDICAL_RECORD_RETENTION_YEARS` on a closed account that keeps only the patient's name, unless
the caregiver has decided that the record may be destroyed; `purge_expired_retention` erases
them when the period ends. docs/privacy.md has the rules and their reasons.
"""

from __future__ import annotations

import base64
import json
import logging
import tempfile
import zipfile
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path

from flask import current_app
from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.exc import IntegrityError

from coaching import clock
from coaching.accounts.models import Account
from coaching.audit import service as audit
from coaching.db import new_id, utc_iso
from coaching.errors import Forbidden, NotFound
from coaching.extensions import db
from coaching.media.storage import KEY_PATTERN, get_storage, new_key
from coaching.privacy import collector
from coaching.privacy.models import DataExport, ErasureRecord

log = logging.getLogger(__name__)

EXPORT_FORMAT = "coaching-export/1"
EXPORT_LEASE = timedelta(minutes=15)
EXPORT_MAX_ATTEMPTS = 3
ZIP_CONTENT_TYPE = "application/zip"
# The medical record in this service: outcome measurements and what the therapist was alerted to.
DEFAULT_RETAINED_TABLES = (
    "questionnaire_responses",
    "questionnaire_scores",
    "outcome_checkins",
    "outcome_alerts",
)
EXTENSIONS = {
    "video/mp4": ".mp4",
    "video/quicktime": ".mov",
    "video/webm": ".webm",
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "audio/mpeg": ".mp3",
}


# --- export ---------------------------------------------------------------------------------


def _open_export(patient_id: str) -> DataExport | None:
    return db.session.execute(
        select(DataExport).where(
            DataExport.patient_id == patient_id, DataExport.status.in_(("pending", "running"))
        )
    ).scalar_one_or_none()


def request_export(*, patient: Account) -> tuple[DataExport, bool]:
    """Returns the patient's export in preparation, or a new one; and whether it is new."""
    running = _open_export(patient.id)
    if running is not None:
        return running, False
    now = clock.now()
    export = DataExport(
        patient_id=patient.id, status="pending", requested_at=now, due_at=now, attempts=0
    )
    try:
        with db.session.begin_nested():
            db.session.add(export)
    except IntegrityError:
        # A simultaneous request inserted one since the look-up (the unique index on open
        # exports, uq_data_exports_open_patient_id): that one is the answer to both.
        running = _open_export(patient.id)
        if running is None:
            raise
        return running, False
    return export, True


def get_export_for(*, patient: Account, export_id: str) -> DataExport:
    """Returns one of the patient's own exports, or raises NotFound."""
    export = db.session.get(DataExport, export_id)
    if export is None or export.patient_id != patient.id:
        raise NotFound("No such export")
    return export


def export_view(export: DataExport) -> dict:
    """Returns the export's status and, when it is ready, a short-lived download URL."""
    view = {
        "id": export.id,
        "status": export.status,
        "requested_at": export.requested_at,
        "completed_at": export.completed_at,
        "expires_at": export.expires_at,
        "size_bytes": export.size_bytes,
        "download_url": None,
        "download_expires_at": None,
    }
    if export.status == "ready" and export.expires_at <= clock.now():
        # Past its time, before expire_exports has let the ZIP go: no URL for it any more.
        view["status"] = "expired"
    elif export.status == "ready" and export.media_key:
        url, url_expires = get_storage().download_url(
            key=export.media_key, content_type=ZIP_CONTENT_TYPE, not_after=export.expires_at
        )
        view["download_url"] = url
        view["download_expires_at"] = url_expires
    return view


def _json_value(value):
    if isinstance(value, datetime):
        return utc_iso(value)
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value


def _is_media_key(column: str, value) -> bool:
    return column.endswith("_key") and isinstance(value, str) and bool(KEY_PATTERN.match(value))


def _media_content_type(row: dict, column: str) -> str:
    if column.startswith("thumbnail"):
        return "image/jpeg"
    return row.get("content_type") or "application/octet-stream"


def build_document(found: collector.Collected) -> tuple[dict, list[tuple[str, str]]]:
    """Returns the export's JSON document and the stored objects to add as (key, zip path)."""
    storage = get_storage()
    records: dict[str, list[dict]] = {}
    files: list[tuple[str, str]] = []
    listing: list[dict] = []
    for table in found.tables():
        if table in collector.SECRET_TABLES:
            continue
        rows = list(found.rows.get(table, {}).values())
        rows += [row for row, _ in found.mentions.get(table, {}).values()]
        out = []
        for row in rows:
            item = {}
            for column, value in row.items():
                if column in collector.SECRET_COLUMNS:
                    continue
                if _is_media_key(column, value):
                    value = None
                    if table not in collector.NO_MEDIA_IN_EXPORT:
                        key = row[column]
                        if storage.size_of(key) is not None:
                            ext = EXTENSIONS.get(_media_content_type(row, column), "")
                            ident = "-".join(
                                str(v)
                                for v in collector.primary_key(db.metadata.tables[table], row)
                            )
                            value = f"media/{table}/{ident}-{column.removesuffix('_key')}{ext}"
                            files.append((key, value))
                            listing.append(
                                {"path": value, "table": table, "column": column, "id": ident}
                            )
                item[column] = _json_value(value)
            out.append(item)
        records[table] = out
    account = records.get(collector.ROOT_TABLE, [{}])[0]
    document = {
        "format": EXPORT_FORMAT,
        "generated_at": utc_iso(clock.now()),
        "patient_id": found.patient_id,
        "account": account,
        "records": {name: rows for name, rows in records.items() if name != "accounts"},
        "files": listing,
        "notes": {
            "records": "Every row held about you, by table. Times are UTC (ISO 8601).",
            "files": "Your videos and the videos sent to you, in the media folder.",
            "left_out": "Password and token hashes and other security data are not included.",
        },
    }
    return document, files


def _write_zip(path: Path, document: dict, files: list[tuple[str, str]]) -> None:
    storage = get_storage()
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("data.json", json.dumps(document, ensure_ascii=False, indent=2))
        for key, name in files:
            try:
                with storage.fetch(key) as source:
                    # Videos are compressed already: stored as they are.
                    archive.write(source, name, compress_type=zipfile.ZIP_STORED)
            except FileNotFoundError:
                log.info("export: object %s vanished while building; left out", key[:6])


def build_export(export: DataExport) -> None:
    """Build the ZIP of one export and put it in the media store (the export becomes ready).

    The ZIP's key is committed on the row before the ZIP is written, so that no stored copy is
    ever unknown: an erasure meanwhile deletes the row and queues its key, a worker that dies
    leaves it to the next attempt, and any failure here queues it at once (a row erased after
    the key was committed, and before the ZIP was written, is found so too).
    """
    from coaching.media.service import schedule_deletion

    export_id = export.id
    found = collector.collect(export.patient_id)
    document, files = build_document(found)
    key = new_key()
    try:
        # An earlier attempt's ZIP (its worker died after storing it) goes.
        schedule_deletion(key=export.media_key, reason="export_abandoned")
        export.media_key = key
        db.session.commit()
        with tempfile.TemporaryDirectory(prefix="coaching-export-") as folder:
            path = Path(folder) / "export.zip"
            _write_zip(path, document, files)
            size = path.stat().st_size
            get_storage().save_file(key=key, path=path, content_type=ZIP_CONTENT_TYPE)
        now = clock.now()
        export.size_bytes = size
        export.status = "ready"
        export.completed_at = now
        export.expires_at = now + timedelta(hours=int(current_app.config["EXPORT_TTL_HOURS"]))
        export.failure_reason = None
        # Fails (StaleDataError) if the row was erased meanwhile; otherwise the row is locked
        # until the caller commits, so an erasure after that sees the key on a ready export.
        db.session.flush()
    except BaseException:
        db.session.rollback()
        _let_go(export_id, key)
        raise


def _let_go(export_id: str, key: str) -> None:
    # In a transaction of its own, as the failed one is gone: the ZIP (if it was stored) is
    # queued for deletion and the row, if it still exists, no longer points at it.
    from coaching.media.service import schedule_deletion

    try:
        schedule_deletion(key=key, reason="export_failed")
        db.session.execute(
            update(DataExport)
            .where(DataExport.id == export_id, DataExport.media_key == key)
            .values(media_key=None)
        )
        db.session.commit()
    except Exception:  # the first failure is the one to report; the key stays on the row
        db.session.rollback()
        log.exception("export %s: could not queue the deletion of its ZIP", export_id)


def _claim_export(now: datetime) -> str | None:
    stmt = (
        select(DataExport.id)
        .where(DataExport.status.in_(("pending", "running")), DataExport.due_at <= now)
        .order_by(DataExport.due_at)
        .limit(1)
    )
    if db.session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    export_id = db.session.execute(stmt).scalar_one_or_none()
    if export_id is None:
        db.session.rollback()
        return None
    db.session.execute(
        update(DataExport)
        .where(DataExport.id == export_id)
        .values(status="running", due_at=now + EXPORT_LEASE, attempts=DataExport.attempts + 1)
    )
    db.session.commit()
    return export_id


def run_pending_exports(now: datetime, *, limit: int = 10) -> int:
    """Build waiting exports, one leased row at a time; returns how many became ready.

    A worker that dies leaves its row `running` until the lease ends, then another takes it. A
    failure is retried later, and after three attempts the export is marked failed.
    """
    from coaching.media.service import schedule_deletion

    done = 0
    for _ in range(limit):
        export_id = _claim_export(now)
        if export_id is None:
            break
        export = db.session.get(DataExport, export_id)
        try:
            build_export(export)
            db.session.commit()
            done += 1
        except Exception as exc:  # any failure (store, disk) is recorded and retried
            db.session.rollback()
            log.exception("export %s failed", export_id)
            export = db.session.get(DataExport, export_id)
            if export is None:
                continue
            # A dead worker's ZIP, if this attempt failed before taking its place.
            schedule_deletion(key=export.media_key, reason="export_failed")
            export.media_key = None
            if export.attempts >= EXPORT_MAX_ATTEMPTS:
                export.status = "failed"
            else:
                export.status = "pending"
                export.due_at = now + timedelta(minutes=5 * export.attempts)
            export.failure_reason = type(exc).__name__[:200]
            db.session.commit()
    return done


def expire_exports(now: datetime, *, limit: int = 200) -> int:
    """Mark ready exports past their time expired and let their ZIPs go; returns how many."""
    from coaching.media.service import schedule_deletion

    rows = (
        db.session.execute(
            select(DataExport)
            .where(DataExport.status == "ready", DataExport.expires_at <= now)
            .limit(limit)
        )
        .scalars()
        .all()
    )
    for export in rows:
        schedule_deletion(key=export.media_key, reason="export_expired")
        export.status = "expired"
        export.media_key = None
    db.session.commit()
    return len(rows)


# --- erasure -------------------------------------------------------------------------------


def retained_tables_setting() -> tuple[str, ...]:
    """Returns the tables configured as the medical record kept on erasure."""
    raw = current_app.config.get("ERASURE_RETAINED_TABLES")
    if raw is None:
        return DEFAULT_RETAINED_TABLES
    if isinstance(raw, str):
        raw = [] if raw.strip().lower() in ("", "none") else raw.split(",")
    return tuple(name.strip() for name in raw if name.strip())


def _retention_closure(found: collector.Collected, names: set[str]) -> set[str]:
    # A kept row must keep the rows it belongs to (a score its response): otherwise the database
    # would delete it with them.
    retained = set(names)
    graph = collector.links()
    grew = True
    while grew:
        grew = False
        for link in graph:
            if (
                link.child in retained
                and link.declared
                and not link.mentions_only
                and link.parent != collector.ROOT_TABLE
                and link.parent in found.rows
                and link.parent not in retained
            ):
                retained.add(link.parent)
                grew = True
    return retained


def get_patient_for_staff(*, staff: Account, patient_id: str) -> Account:
    """Returns a patient a therapist (their own) or an owner may erase, or raises NotFound."""
    patient = db.session.get(Account, patient_id)
    if patient is None or patient.role != "patient":
        raise NotFound("No such patient")
    if staff.role == "therapist" and patient.therapist_id != staff.id:
        raise NotFound("No such patient")
    if staff.role not in ("therapist", "owner"):
        raise Forbidden("Only the patient's therapist or a programme owner can do this")
    return patient


def _delete_rows(table_name: str, keys: list[tuple]) -> None:
    table = db.metadata.tables[table_name]
    pk = list(table.primary_key.columns)
    for batch in collector._chunks(keys):
        if len(pk) == 1:
            condition = pk[0].in_([k[0] for k in batch])
        else:
            condition = or_(*[and_(*[c == v for c, v in zip(pk, k, strict=True)]) for k in batch])
        db.session.execute(delete(table).where(condition))


def _update_rows(table_name: str, keys: list[tuple], values: dict) -> None:
    table = db.metadata.tables[table_name]
    pk = list(table.primary_key.columns)
    for batch in collector._chunks(keys):
        if len(pk) == 1:
            condition = pk[0].in_([k[0] for k in batch])
        else:
            condition = or_(*[and_(*[c == v for c, v in zip(pk, k, strict=True)]) for k in batch])
        db.session.execute(update(table).where(condition).values(**values))


def _erase(found: collector.Collected, *, retained: set[str], reason: str) -> dict[str, int]:
    """Delete, pseudonymise and detach the collected rows except the retained tables'."""
    from coaching.media.service import schedule_deletion

    counts: dict[str, int] = {}
    pseudonym = new_id()  # stored nowhere: the events stay together, but no longer point back
    # Children before parents, so that foreign keys never see a dangling row.
    for table in reversed(found.tables()):
        if table == collector.ROOT_TABLE:
            continue
        mentioned = found.mentions.get(table, {})
        for key, (_, columns) in mentioned.items():
            _update_rows(table, [key], dict.fromkeys(columns))
        if mentioned:
            counts[f"{table}.detached"] = len(mentioned)
        rows = found.rows.get(table, {})
        if not rows:
            continue
        keys = list(rows)
        if table in collector.KEPT_TABLES or table in retained:
            counts[f"{table}.kept"] = len(keys)
            continue
        if table in collector.PSEUDONYMISED_COLUMNS:
            values = dict.fromkeys(collector.PSEUDONYMISED_COLUMNS[table], pseudonym)
            _update_rows(table, keys, values)
            counts[f"{table}.pseudonymised"] = len(keys)
            continue
        if table in collector.CLEARED_COLUMNS:
            _update_rows(table, keys, dict.fromkeys(collector.CLEARED_COLUMNS[table]))
            counts[f"{table}.detached"] = len(keys)
            continue
        for row in rows.values():
            for column, value in row.items():
                if _is_media_key(column, value):
                    schedule_deletion(key=value, reason=reason)
        _delete_rows(table, keys)
        counts[f"{table}.deleted"] = len(keys)
    return counts


def _close_account(patient_id: str, now: datetime) -> None:
    # The closed account keeps only what identifies the retained record to the practice: the
    # name, the therapist and the practice. It cannot sign in (no valid hash, no e-mail
    # address). The other columns cannot be empty: they get the defaults (locale, timezone) and
    # the time the account was closed (`created_at`: when the patient joined goes too).
    db.session.execute(
        update(Account)
        .where(Account.id == patient_id)
        .values(
            email=f"erased-{patient_id}@erased.invalid",
            password_hash="!erased",
            is_active=False,
            last_login_at=None,
            locale=Account.__table__.c.locale.default.arg,
            timezone=Account.__table__.c.timezone.default.arg,
            created_at=now,
        )
    )


def erase_patient(
    *,
    patient: Account,
    requested_by: Account,
    reason: str | None = None,
    destroy_medical_record: bool = False,
) -> ErasureRecord:
    """Returns the record of a patient's erasure, done in this transaction (media after it)."""
    now = clock.now()
    patient_id = patient.id
    audit.record(
        actor=requested_by,
        patient_id=patient_id,
        action="delete",
        resource_type="patient",
        resource_id=patient_id,
    )
    db.session.flush()
    found = collector.collect(patient_id)
    years = int(current_app.config["MEDICAL_RECORD_RETENTION_YEARS"])
    retained: set[str] = set()
    if not destroy_medical_record and years > 0:
        configured = {t for t in retained_tables_setting() if found.rows.get(t)}
        if configured:
            retained = _retention_closure(found, configured)
    # Core statements below: forget the ORM's copies so that nothing stale is flushed later.
    db.session.expunge_all()
    counts = _erase(found, retained=retained, reason="erasure")
    if retained:
        _close_account(patient_id, now)
        counts["accounts.closed"] = 1
    else:
        _delete_rows(collector.ROOT_TABLE, [(patient_id,)])
        counts["accounts.deleted"] = 1
    record = ErasureRecord(
        account_id=patient_id,
        requested_by_id=requested_by.id,
        requested_by_role="patient" if requested_by.id == patient_id else requested_by.role,
        reason=reason,
        requested_at=now,
        is_medical_record_destroyed=bool(destroy_medical_record),
        retained_tables=sorted(retained),
        retain_until=_years_later(now, years) if retained else None,
        purged_at=None if retained else now,
        counts=counts,
    )
    db.session.add(record)
    db.session.flush()
    log.info("erased account %s: %s", patient_id[:8], counts)
    return record


def _years_later(at: datetime, years: int) -> datetime:
    try:
        return at.replace(year=at.year + years)
    except ValueError:  # 29 February
        return at.replace(year=at.year + years, day=28)


def purge_expired_retention(now: datetime, *, limit: int = 50) -> int:
    """Erase what was kept of closed accounts whose retention period has ended; returns how many."""
    records = (
        db.session.execute(
            select(ErasureRecord)
            .where(ErasureRecord.retain_until <= now, ErasureRecord.purged_at.is_(None))
            .order_by(ErasureRecord.retain_until)
            .limit(limit)
        )
        .scalars()
        .all()
    )
    purged = 0
    for record in records:
        record_id = record.id
        found = collector.collect(record.account_id)
        db.session.expunge_all()
        counts = _erase(found, retained=set(), reason="retention_ended")
        if found.rows.get(collector.ROOT_TABLE):
            _delete_rows(collector.ROOT_TABLE, [(found.patient_id,)])
            counts["accounts.deleted"] = 1
        record = db.session.get(ErasureRecord, record_id)
        record.purged_at = now
        record.counts = {**(record.counts or {}), **{f"purge.{k}": v for k, v in counts.items()}}
        db.session.commit()
        purged += 1
    return purged


def erasure_view(record: ErasureRecord) -> dict:
    """Returns what the caller is told about an erasure."""
    return {
        "id": record.id,
        "patient_id": record.account_id,
        "status": "closed_retained" if record.purged_at is None else "erased",
        "requested_at": record.requested_at,
        "requested_by_role": record.requested_by_role,
        "retained": list(record.retained_tables or []),
        "retained_until": record.retain_until,
    }
