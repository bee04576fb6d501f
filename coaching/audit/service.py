"""Writing, reading and verifying audit rows. The service offers no update or delete."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from datetime import datetime

from flask import current_app, has_request_context, request
from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError

from coaching import clock
from coaching.audit.models import GENESIS_HASH, AuditChainHead, AuditEntry
from coaching.db import dialect_insert, utc_iso
from coaching.errors import ServiceUnavailable
from coaching.extensions import db

ACTIONS = ("read", "create", "update", "delete", "export")
log = logging.getLogger(__name__)


def _key() -> bytes:
    """Returns the chain's HMAC key: AUDIT_HMAC_KEY, or one derived from SECRET_KEY."""
    key = current_app.extensions.get("audit_hmac_key")
    if key is None:
        configured = current_app.config.get("AUDIT_HMAC_KEY")
        if configured:
            key = configured.encode()
        else:
            if current_app.config["ENV"] == "production":
                log.warning(
                    "AUDIT_HMAC_KEY is not set: the audit chain's key is derived from SECRET_KEY,"
                    " so rotating SECRET_KEY will make `audit verify` fail"
                )
            secret = current_app.config["SECRET_KEY"].encode()
            key = hmac.new(secret, b"coaching audit chain", hashlib.sha256).digest()
        current_app.extensions["audit_hmac_key"] = key
    return key


def _payload(entry: AuditEntry) -> bytes:
    fields = {
        "seq": entry.seq,
        "id": entry.id,
        "occurred_at": utc_iso(entry.occurred_at),
        "actor_id": entry.actor_id,
        "actor_role": entry.actor_role,
        "patient_id": entry.patient_id,
        "action": entry.action,
        "resource_type": entry.resource_type,
        "resource_id": entry.resource_id,
        "client_address": entry.client_address,
    }
    return (entry.prev_hash + json.dumps(fields, sort_keys=True, separators=(",", ":"))).encode()


def _digest(entry: AuditEntry) -> str:
    # Keyed with a secret the database does not hold: with plain SHA-256, anyone who could write
    # to the database could change a row, recompute every later hash and move the head.
    return hmac.new(_key(), _payload(entry), hashlib.sha256).hexdigest()


def _legacy_digest(entry: AuditEntry) -> str:
    """Returns the plain SHA-256 of rows written before the key (up to AUDIT_LEGACY_LAST_SEQ)."""
    return hashlib.sha256(_payload(entry)).hexdigest()


def _lock_head() -> int:
    # A no-op UPDATE takes the row lock (PostgreSQL) or the write lock (SQLite) before the head is
    # read, so concurrent writers queue here instead of forking the chain.
    return db.session.execute(
        update(AuditChainHead)
        .where(AuditChainHead.id == 1)
        .values(last_seq=AuditChainHead.last_seq)
    ).rowcount


def _take_head() -> AuditChainHead:
    if _lock_head() == 0:
        # The very first row: create the head once, whoever gets there first.
        db.session.execute(
            dialect_insert(AuditChainHead)
            .values(id=1, last_seq=0, last_hash=GENESIS_HASH)
            .on_conflict_do_nothing(index_elements=["id"])
        )
        _lock_head()
    return db.session.execute(
        select(AuditChainHead)
        .where(AuditChainHead.id == 1)
        .execution_options(populate_existing=True)
    ).scalar_one()


def record(
    *, actor, patient_id: str, action: str, resource_type: str, resource_id: str | None = None
) -> AuditEntry | None:
    """Returns the audit row added for an access to a patient's data by someone else.

    Returns None when patients look at their own data (not audited). A failure to write raises
    ServiceUnavailable (503) after rolling the request's work back, so the request fails instead
    of returning unaudited patient data.
    """
    if actor is not None and actor.id == patient_id:
        return None
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    try:
        return _write(actor, patient_id, action, resource_type, resource_id)
    except SQLAlchemyError as error:
        db.session.rollback()
        log.error("audit row could not be written (%s): request refused", type(error).__name__)
        raise ServiceUnavailable(
            "The access log could not be written, so no patient data is shown. Try again later."
        ) from error


def _write(actor, patient_id, action, resource_type, resource_id) -> AuditEntry:
    head = _take_head()
    entry = AuditEntry(
        seq=head.last_seq + 1,
        occurred_at=clock.now(),
        actor_id=actor.id if actor is not None else None,
        actor_role=actor.role if actor is not None else "system",
        patient_id=patient_id,
        action=action,
        resource_type=resource_type,
        resource_id=str(resource_id) if resource_id is not None else None,
        client_address=request.remote_addr if has_request_context() else None,
        prev_hash=head.last_hash,
    )
    from coaching.db import new_id

    entry.id = new_id()
    entry.row_hash = _digest(entry)
    head.last_seq = entry.seq
    head.last_hash = entry.row_hash
    db.session.add(entry)
    db.session.flush()
    return entry


def entries_query(
    *, patient_id=None, actor_id=None, since: datetime | None = None, until: datetime | None = None
):
    """Returns a select() of audit rows, newest first, filtered as given."""
    stmt = select(AuditEntry)
    if patient_id is not None:
        stmt = stmt.where(AuditEntry.patient_id == patient_id)
    if actor_id is not None:
        stmt = stmt.where(AuditEntry.actor_id == actor_id)
    if since is not None:
        stmt = stmt.where(AuditEntry.occurred_at >= since)
    if until is not None:
        stmt = stmt.where(AuditEntry.occurred_at < until)
    return stmt.order_by(AuditEntry.seq.desc())


@dataclass
class VerifyResult:
    checked: int
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(progress=None, batch: int = 5000) -> VerifyResult:
    """Returns the result of recomputing the whole chain in order of `seq`.

    Rows up to AUDIT_LEGACY_LAST_SEQ are checked with the plain SHA-256 they were written with;
    every later row must carry the keyed digest. The boundary is a setting, not a row: the
    database could otherwise call a chain it rewrote without the key "legacy".
    """
    legacy_last = current_app.config.get("AUDIT_LEGACY_LAST_SEQ", 0)
    problems: list[str] = []
    expected_prev = GENESIS_HASH
    expected_seq = 1
    checked = 0
    last_seq = 0
    while True:
        rows = (
            db.session.execute(
                select(AuditEntry)
                .where(AuditEntry.seq > last_seq)
                .order_by(AuditEntry.seq)
                .limit(batch)
            )
            .scalars()
            .all()
        )
        if not rows:
            break
        for entry in rows:
            if entry.seq != expected_seq:
                problems.append(f"rows {expected_seq}..{entry.seq - 1} are missing")
            if entry.prev_hash != expected_prev:
                problems.append(f"row {entry.seq}: does not follow the previous row")
            if entry.seq <= legacy_last:
                if _legacy_digest(entry) != entry.row_hash:
                    problems.append(f"row {entry.seq}: its contents were changed")
            elif _digest(entry) != entry.row_hash:
                if _legacy_digest(entry) == entry.row_hash:
                    problems.append(
                        f"row {entry.seq}: hashed without the audit key: rewritten, or written"
                        " before the key (then set AUDIT_LEGACY_LAST_SEQ to the last such row)"
                    )
                else:
                    problems.append(f"row {entry.seq}: its contents were changed")
            expected_prev = entry.row_hash
            expected_seq = entry.seq + 1
            last_seq = entry.seq
            checked += 1
        if progress is not None:
            progress.update(len(rows))
        db.session.expunge_all()
    head = db.session.get(AuditChainHead, 1)
    if head is None and checked:
        problems.append(f"the chain has {checked} rows but no head row: it was removed")
    if head is not None and (head.last_seq != last_seq or head.last_hash != expected_prev):
        problems.append(
            f"the chain ends at row {last_seq} but its head says {head.last_seq}: rows were removed"
        )
    return VerifyResult(checked=checked, problems=problems)
