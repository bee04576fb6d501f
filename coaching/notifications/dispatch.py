"""Delivering due notifications: claim a small batch in a short transaction, check the
recipient's current settings, send after the commit, record each outcome.

A claim moves the row's `due_at` to the end of a lease and sets a `claim_token`; results are
written only under that token. A dispatcher that dies mid-batch leaves its rows to be claimed
again when the lease runs out; the idempotency key travels as the collapse id, so a repeat
replaces the first push on the phone instead of showing twice. Any number of dispatchers may run
at once: PostgreSQL hands each its own rows (`FOR UPDATE SKIP LOCKED`), and on SQLite the claim
is a single conditional UPDATE (SQLite serialises writers).
"""

from __future__ import annotations

import logging
import random
import time as _time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

from flask import current_app
from sqlalchemy import bindparam, func, select

from coaching import clock
from coaching.accounts.models import Account
from coaching.appointments import service as appointments
from coaching.db import new_id
from coaching.extensions import db
from coaching.notifications.models import (
    PAUSABLE_CATEGORIES,
    Device,
    Notification,
    ReminderSettings,
)
from coaching.notifications.senders import (
    LEASE_DEFAULT_SECONDS,
    PushMessage,
    PushResult,
    PushSender,
    get_sender,
)
from coaching.notifications.timing import Prefs, at_local, decide

log = logging.getLogger(__name__)

DEFAULTS = {
    "PUSH_BATCH_SIZE": 100,
    "PUSH_LEASE_SECONDS": LEASE_DEFAULT_SECONDS,
    "PUSH_MAX_ATTEMPTS": 6,
    "PUSH_BACKOFF_BASE_SECONDS": 30,
    "PUSH_BACKOFF_MAX_SECONDS": 3600,
}
QUOTA_WAIT_SECONDS = 60  # FCM: after QUOTA_EXCEEDED wait at least a minute


def setting(name: str) -> int:
    """Returns a dispatch setting from the app config, or its default."""
    value = current_app.config.get(name)
    return int(value) if value is not None else DEFAULTS[name]


def backoff_seconds(
    attempts: int, *, retry_after: float | None = None, quota: bool = False
) -> float:
    """Returns how long to wait before the next try: exponential in the attempts, with jitter,
    never shorter than the service's Retry-After (or a minute after a quota error)."""
    base = setting("PUSH_BACKOFF_BASE_SECONDS")
    ceiling = setting("PUSH_BACKOFF_MAX_SECONDS")
    delay = min(base * 2 ** max(attempts - 1, 0), ceiling)
    # "Equal jitter": half fixed, half random, so retries of one batch spread out.
    delay = delay / 2 + random.uniform(0, delay / 2)
    if quota:
        delay = max(delay, QUOTA_WAIT_SECONDS)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


def claim_batch(size: int | None = None) -> list:
    """Claim up to `size` due rows for this dispatcher and commit; returns them."""
    size = size or setting("PUSH_BATCH_SIZE")
    now = clock.now()
    token = new_id()
    values = {
        "due_at": now + timedelta(seconds=setting("PUSH_LEASE_SECONDS")),
        "claim_token": token,
        "attempts": Notification.__table__.c.attempts + 1,
    }
    due = (Notification.status == "scheduled", Notification.due_at <= now)
    table = Notification.__table__
    # Plain rows from RETURNING (not ORM objects): they stay readable after later commits.
    claim = table.update().values(**values).returning(*table.c)
    try:
        if db.session.get_bind().dialect.name == "postgresql":
            ids = (
                db.session.execute(
                    select(Notification.id)
                    .where(*due)
                    .order_by(Notification.due_at)
                    .limit(size)
                    .with_for_update(skip_locked=True)
                )
                .scalars()
                .all()
            )
            rows = db.session.execute(claim.where(table.c.id.in_(ids))).all() if ids else []
        else:
            ids_due = select(Notification.id).where(*due).order_by(Notification.due_at).limit(size)
            rows = db.session.execute(
                claim.where(table.c.id.in_(ids_due.scalar_subquery()), *due)
            ).all()
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    return list(rows)


class _Outcomes:
    """Results of one batch, written together (one executemany per kind of change) and only for
    rows whose lease this dispatcher still holds."""

    def __init__(self) -> None:
        self.pending: dict[tuple[str, ...], list[dict]] = defaultdict(list)

    def add(self, row, **values) -> None:
        values["claim_token"] = None
        self.pending[tuple(sorted(values))].append(
            {"_id": row.id, "_token": row.claim_token, **values}
        )

    def write(self) -> None:
        table = Notification.__table__
        for columns, params in self.pending.items():
            stmt = (
                table.update()
                .where(table.c.id == bindparam("_id"), table.c.claim_token == bindparam("_token"))
                .values({c: bindparam(c) for c in columns})
            )
            db.session.execute(stmt, params)
        self.pending.clear()


def _recipients(rows: list) -> dict[str, tuple[Account, Prefs]]:
    ids = {r.recipient_id for r in rows}
    result = db.session.execute(
        select(Account, ReminderSettings)
        .outerjoin(ReminderSettings, ReminderSettings.account_id == Account.id)
        .where(Account.id.in_(ids))
    ).all()
    return {
        account.id: (
            account,
            Prefs.of(timezone=account.timezone, locale=account.locale, settings=settings),
        )
        for account, settings in result
    }


def _devices(recipient_ids: set[str]) -> dict[str, list]:
    devices: dict[str, list] = defaultdict(list)
    if recipient_ids:
        for device in db.session.execute(
            select(Device.id, Device.account_id, Device.token, Device.platform)
            .where(Device.account_id.in_(recipient_ids), Device.is_active.is_(True))
            .order_by(Device.created_at)
        ):
            devices[device.account_id].append(device)
    return devices


def _last_activity(patient_ids: set[str]) -> dict[str, datetime]:
    from coaching.metrics.models import PatientActivity

    if not patient_ids:
        return {}
    rows = db.session.execute(
        select(PatientActivity.patient_id, func.max(PatientActivity.occurred_at))
        .where(PatientActivity.patient_id.in_(patient_ids))
        .group_by(PatientActivity.patient_id)
    ).all()
    return dict(rows)


def _other_reminders_on_day(rows: list) -> dict[tuple[str, object], set[str]]:
    """Returns the categories of the non-practice reminders of each (recipient, local date)."""
    days = {(r.recipient_id, r.local_date) for r in rows if r.category == "practice"}
    if not days:
        return {}
    found = db.session.execute(
        select(Notification.recipient_id, Notification.local_date, Notification.category).where(
            Notification.recipient_id.in_({d[0] for d in days}),
            Notification.local_date.in_({d[1] for d in days}),
            Notification.category.in_([c for c in PAUSABLE_CATEGORIES if c != "practice"]),
            Notification.status.in_(("scheduled", "sent")),
        )
    ).all()
    others: dict[tuple[str, object], set[str]] = defaultdict(set)
    for pid, day, category in found:
        if (pid, day) in days:
            others[(pid, day)].add(category)
    return others


def _check(row, account, prefs, last_active, others, now) -> tuple[str, object]:
    """Returns ("skip", reason), ("postpone", until) or ("send", None) for one claimed row."""
    if account is None or not account.is_active:
        return "skip", "recipient account is not active"
    max_attempts = setting("PUSH_MAX_ATTEMPTS")
    if row.attempts > max_attempts:
        return "fail", f"gave up after {max_attempts} attempts: {row.last_error or 'lease expired'}"
    day = row.local_date
    if row.category == "practice" and day is not None:
        # The daily time or time zone may have changed since planning: go by today's settings.
        target = at_local(day, prefs.daily_time, prefs.timezone)
        if target > now + timedelta(seconds=30):
            return "postpone", target
        if last_active is not None and last_active >= at_local(day, _midnight(), prefs.timezone):
            return "skip", "the patient has already been active today"
        # Only one the patient still receives stands in for this one (a category switched off
        # since planning skips its reminder at dispatch).
        if any(prefs.allows(c) for c in others.get((row.recipient_id, day), ())):
            return "skip", "another reminder goes out that day"
    if (
        row.skip_if_active_since is not None
        and last_active is not None
        and last_active > row.skip_if_active_since
    ):
        return "skip", "the patient has been active since this was planned"
    starts_at = None
    if row.category == "appointment":
        if not _appointment_still_on(row.idempotency_key):
            return "skip", "the appointment was cancelled or moved"
        starts_at = _appointment_start(row.idempotency_key)
    decision = decide(category=row.category, at=now, prefs=prefs, day=day)
    if decision.action == "skip":
        return "skip", decision.reason
    # A reminder of an appointment is of no use once it has begun: not after quiet hours that
    # last until then (a 07:30 appointment's 2-hour reminder), nor after a delay in sending.
    sends_at = decision.until if decision.action == "postpone" else now
    if starts_at is not None and sends_at >= starts_at:
        return "skip", "the appointment will have begun by the time it could be sent"
    if decision.action == "postpone":
        return "postpone", decision.until
    return "send", None


def _appointment_start(key: str) -> datetime | None:
    """Returns the start in a reminder's key (appointment:<id>:<start epoch>:<label>)."""
    parts = key.split(":")
    if len(parts) != 4 or not parts[2].isdigit():
        return None
    return datetime.fromtimestamp(int(parts[2]), tz=UTC)


def _appointment_still_on(key: str) -> bool:
    """Returns whether the appointment of a reminder is still planned at the start in its key."""
    starts_at = _appointment_start(key)
    if starts_at is None:
        return True
    found = appointments.appointments_between(starts_at, starts_at + timedelta(seconds=1))
    return any(appointment.id == key.split(":")[1] for appointment in found)


def _midnight():
    from datetime import time

    return time(0, 0)


def process_batch(rows: list, sender: PushSender) -> Counter:
    """Check, send and record one claimed batch; returns counts per outcome."""
    counts: Counter = Counter()
    now = clock.now()
    recipients = _recipients(rows)
    last_active = _last_activity({r.recipient_id for r in rows})
    others = _other_reminders_on_day(rows)
    devices = _devices({r.recipient_id for r in rows})
    to_send: list[tuple] = []
    outcomes = _Outcomes()
    for row in rows:
        account, prefs = recipients.get(row.recipient_id, (None, None))
        action, detail = _check(row, account, prefs, last_active.get(row.recipient_id), others, now)
        if action == "send" and not devices.get(row.recipient_id):
            action, detail = "skip", "no active device"
        if action == "skip":
            outcomes.add(row, status="skipped", last_error=detail)
        elif action == "fail":
            outcomes.add(row, status="failed", last_error=detail)
        elif action == "postpone":
            # Waiting out quiet hours is no failed attempt.
            outcomes.add(row, scheduled_for=detail, due_at=detail, attempts=row.attempts - 1)
        else:
            to_send.append((row, devices[row.recipient_id], prefs))
            continue
        counts[{"skip": "skipped", "fail": "failed", "postpone": "postponed"}[action]] += 1
    outcomes.write()
    db.session.commit()  # record the checks; nothing is held open while sending

    messages: list[PushMessage] = []
    for row, row_devices, prefs in to_send:
        english = prefs.locale == "en"
        for device in row_devices:
            messages.append(
                PushMessage(
                    notification_id=row.id,
                    key=row.idempotency_key,
                    device_id=device.id,
                    token=device.token,
                    platform=device.platform,
                    title=row.title_en if english else row.title_nl,
                    body=row.body_en if english else row.body_nl,
                    data=dict(row.data or {}),
                )
            )
    if not messages:
        return counts
    try:
        results = sender.send(messages)
    except Exception as exc:  # a sender that raises loses nothing: every row is retried
        log.exception("push sender %s failed for a batch of %d", sender.name, len(messages))
        results = [PushResult("transient", f"{type(exc).__name__}: {exc}"[:500])] * len(messages)
    counts += _record(to_send, messages, results)
    return counts


def _record(to_send, messages: list[PushMessage], results: list[PushResult]) -> Counter:
    counts: Counter = Counter()
    now = clock.now()
    per_row: dict[str, list[tuple[PushMessage, PushResult]]] = defaultdict(list)
    for message, result in zip(messages, results, strict=True):
        per_row[message.notification_id].append((message, result))
    dead_devices: dict[str, str] = {}
    outcomes = _Outcomes()
    for row, *_ in to_send:
        answers = per_row[row.id]
        for message, result in answers:
            if result.kind == "unregistered" and message.device_id:
                dead_devices[message.device_id] = result.error or "unregistered"
        results_ = [r for _, r in answers]
        errors = "; ".join(sorted({r.error for r in results_ if r.error}))[:1000] or None
        if any(r.ok for r in results_):
            outcomes.add(row, status="sent", sent_at=now, last_error=errors)
            counts["sent"] += 1
        elif all(r.kind == "unregistered" for r in results_):
            outcomes.add(row, status="skipped", last_error=f"no active device ({errors})")
            counts["skipped"] += 1
        elif all(r.kind in ("unregistered", "permanent") for r in results_):
            outcomes.add(row, status="failed", last_error=errors)
            counts["failed"] += 1
        elif row.attempts >= setting("PUSH_MAX_ATTEMPTS"):
            outcomes.add(
                row, status="failed", last_error=f"gave up after {row.attempts} attempts: {errors}"
            )
            counts["failed"] += 1
        else:
            retry_after = max((r.retry_after or 0 for r in results_), default=0) or None
            quota = any(r.kind == "quota" for r in results_)
            delay = backoff_seconds(row.attempts, retry_after=retry_after, quota=quota)
            outcomes.add(row, due_at=now + timedelta(seconds=delay), last_error=errors)
            counts["retry"] += 1
    outcomes.write()
    if dead_devices:
        from coaching.notifications.service import deactivate_devices

        deactivate_devices(dead_devices)
    db.session.commit()
    return counts


def dispatch_due(
    *,
    sender: PushSender | None = None,
    batch_size: int | None = None,
    max_seconds: float | None = None,
) -> dict[str, int]:
    """Claim, send and record due notifications batch by batch until none is due (or the time
    budget is spent); returns counts per outcome."""
    sender = sender or get_sender()
    counts: Counter = Counter()
    started = _time.monotonic()
    while True:
        rows = claim_batch(batch_size)
        if not rows:
            break
        counts["claimed"] += len(rows)
        try:
            counts += process_batch(rows, sender)
        except BaseException:
            # The claimed rows stay leased and are picked up again when the lease runs out.
            db.session.rollback()
            raise
        if max_seconds is not None and _time.monotonic() - started > max_seconds:
            break
    return dict(counts)
