"""Planning notifications, devices, reminder settings and the notification history.

Other domains call `enqueue(...)`; rules.py plans reminders in bulk through `insert_ignore`;
dispatch.py delivers them. Every function only flushes: the caller commits.
"""

from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta

from flask import current_app
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from coaching import clock
from coaching.accounts.models import Account
from coaching.db import dialect_insert
from coaching.errors import NotFound, ValidationFailed
from coaching.extensions import db
from coaching.notifications.models import (
    CATEGORIES,
    DEFAULT_DAILY_TIME,
    DEFAULT_QUIET_END,
    DEFAULT_QUIET_START,
    PLATFORMS,
    SETTING_CATEGORIES,
    Device,
    Notification,
    PushLogEntry,
    ReminderSettings,
)
from coaching.notifications.timing import Prefs, at_local, decide

# FCM refuses data payloads over 4 KB; the title, body and options take their share as well.
MAX_DATA_BYTES = 2048


def _check_data(data: dict) -> dict:
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise ValueError("notification data must map strings to strings (a deep link)")
    if len(json.dumps(data).encode()) > MAX_DATA_BYTES:
        raise ValueError(f"notification data is larger than {MAX_DATA_BYTES} bytes")
    return data


def prefs_for(account: Account) -> Prefs:
    """Returns the effective reminder preferences of an account."""
    settings = db.session.get(ReminderSettings, account.id)
    return Prefs.of(timezone=account.timezone, locale=account.locale, settings=settings)


def new_row(
    *,
    recipient_id: str,
    category: str,
    key: str,
    title: dict[str, str],
    body: dict[str, str],
    data: dict | None,
    scheduled_for: datetime,
    prefs: Prefs,
    now: datetime,
    day: date | None = None,
    skip_if_active_since: datetime | None = None,
) -> dict:
    """Returns the column values of a new queue row, with the recipient's settings applied:
    skipped when the category is off or reminders are paused, postponed past quiet hours."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown notification category {category!r}")
    from coaching.db import new_id

    status, last_error = "scheduled", None
    decision = decide(category=category, at=max(scheduled_for, now), prefs=prefs, day=day)
    if decision.action == "skip":
        status, last_error = "skipped", decision.reason
    elif decision.action == "postpone":
        scheduled_for = decision.until
    return {
        "id": new_id(),
        "recipient_id": recipient_id,
        "category": category,
        "idempotency_key": key,
        "title_nl": title["nl"][:200],
        "title_en": title["en"][:200],
        "body_nl": body["nl"],
        "body_en": body["en"],
        "data": _check_data(data or {}),
        "scheduled_for": scheduled_for,
        "due_at": scheduled_for,
        "status": status,
        "attempts": 0,
        "last_error": last_error,
        "created_at": now,
        "local_date": day,
        "skip_if_active_since": skip_if_active_since,
    }


def insert_ignore(rows: list[dict]) -> int:
    """Insert queue rows, leaving alone any whose idempotency key is planned already.

    Returns how many were new. Safe when several planners run at once.
    """
    if not rows:
        return 0
    stmt = dialect_insert(Notification).on_conflict_do_nothing(index_elements=["idempotency_key"])
    result = db.session.execute(stmt.returning(Notification.id), rows)
    return len(result.all())


def enqueue(
    *,
    recipient_id: str,
    category: str,
    key: str,
    title: dict[str, str],
    body: dict[str, str],
    data: dict | None = None,
    scheduled_for: datetime | None = None,
    local_date: date | None = None,
    skip_if_active_since: datetime | None = None,
) -> Notification:
    """Returns the notification planned under `key`, creating it if it does not exist yet.

    `title` and `body` hold the Dutch (`nl`) and English (`en`) text; `data` carries the deep
    link only (no health details: it travels through Google's and Apple's servers). The
    recipient's settings apply: a category switched off records the row as `skipped`, and a time
    in their quiet hours moves to the end of them.
    """
    existing = _by_key(key)
    if existing is not None:
        return existing
    recipient = db.session.get(Account, recipient_id)
    if recipient is None:
        raise ValueError(f"unknown recipient {recipient_id!r}")
    now = clock.now()
    row = new_row(
        recipient_id=recipient_id,
        category=category,
        key=key,
        title=title,
        body=body,
        data=data,
        scheduled_for=scheduled_for or now,
        prefs=prefs_for(recipient),
        now=now,
        day=local_date,
        skip_if_active_since=skip_if_active_since,
    )
    db.session.flush()
    insert_ignore([row])
    return _by_key(key)


def _by_key(key: str) -> Notification | None:
    return db.session.execute(
        select(Notification).where(Notification.idempotency_key == key)
    ).scalar_one_or_none()


# --- devices -----------------------------------------------------------------------------------


def register_device(*, account: Account, token: str, platform: str) -> tuple[Device, bool]:
    """Returns the device for a push token and whether it was new.

    The same token again is the same device (seen now); a token that another account registered
    moves to this one, since an app installation has one signed-in account at a time.
    """
    if platform not in PLATFORMS:
        raise ValidationFailed.field("platform", f"Must be one of: {', '.join(PLATFORMS)}.")
    now = clock.now()
    device = _device_with_token(token)
    if device is None:
        device = Device(
            account_id=account.id,
            token=token,
            platform=platform,
            is_active=True,
            created_at=now,
            last_seen_at=now,
        )
        try:
            with db.session.begin_nested():
                db.session.add(device)
                db.session.flush()
            return device, True
        except IntegrityError:
            # A parallel request (the app retrying on a flaky network) registered it a moment
            # ago: it is the same device, so answer as for the same token again.
            device = _device_with_token(token)
    device.account_id = account.id
    device.platform = platform
    device.is_active = True
    device.deactivated_at = None
    device.deactivation_reason = None
    device.last_seen_at = now
    db.session.flush()
    return device, False


def _device_with_token(token: str) -> Device | None:
    return db.session.execute(
        select(Device).where(Device.token == token).with_for_update()
    ).scalar_one_or_none()


def delete_device(*, account: Account, device_id: str) -> None:
    """Forget one of the account's devices (another account's device is not found)."""
    device = db.session.execute(
        select(Device).where(Device.id == device_id, Device.account_id == account.id)
    ).scalar_one_or_none()
    if device is None:
        raise NotFound("Device not found")
    db.session.delete(device)
    db.session.flush()


def deactivate_devices(device_reasons: dict[str, str]) -> None:
    """Mark devices whose token the push service refused as inactive, with the reason."""
    now = clock.now()
    for device_id, reason in device_reasons.items():
        db.session.execute(
            update(Device)
            .where(Device.id == device_id)
            .values(is_active=False, deactivated_at=now, deactivation_reason=reason[:200])
            .execution_options(synchronize_session=False)
        )


def prune_devices(now: datetime) -> int:
    """Delete devices not seen for DEVICE_PRUNE_DAYS days; returns how many."""
    days = int(current_app.config.get("DEVICE_PRUNE_DAYS") or 60)
    result = db.session.execute(
        delete(Device)
        .where(Device.last_seen_at < now - timedelta(days=days))
        .execution_options(synchronize_session=False)
    )
    return result.rowcount or 0


def prune_push_log(now: datetime) -> int:
    """Delete the log sender's records older than PUSH_LOG_KEEP_DAYS (30); returns how many."""
    days = int(current_app.config.get("PUSH_LOG_KEEP_DAYS") or 30)
    result = db.session.execute(
        delete(PushLogEntry)
        .where(PushLogEntry.sent_at < now - timedelta(days=days))
        .execution_options(synchronize_session=False)
    )
    return result.rowcount or 0


# --- reminder settings -------------------------------------------------------------------------


def _fmt(value: time | None) -> str | None:
    return value.strftime("%H:%M") if value is not None else None


def settings_view(account: Account) -> dict:
    """Returns the account's reminder settings in the contract's shape."""
    prefs = prefs_for(account)
    quiet = None
    if prefs.quiet_start is not None and prefs.quiet_end is not None:
        quiet = {"start": _fmt(prefs.quiet_start), "end": _fmt(prefs.quiet_end)}
    return {
        "daily_time": _fmt(prefs.daily_time),
        "quiet_hours": quiet,
        "categories": {c: prefs.allows(c) for c in SETTING_CATEGORIES},
        "pause_until": prefs.pause_until,
        "timezone": account.timezone,
    }


def _in_window(at: time, start: time, end: time) -> bool:
    if start == end:
        return False
    if start < end:
        return start <= at < end
    return at >= start or at < end


def _settings_for_update(account: Account) -> ReminderSettings:
    """Returns the account's settings row, locked, created with the defaults if it had none.

    Two first changes at once (the app saving two switches quickly) both find no row: the
    INSERT that does nothing on a conflict lets the second wait for the first and then change
    the row the first wrote, instead of colliding with it (409) or overwriting its change.
    """
    db.session.execute(
        dialect_insert(ReminderSettings)
        .values(
            account_id=account.id,
            daily_time=DEFAULT_DAILY_TIME,
            quiet_start=DEFAULT_QUIET_START,
            quiet_end=DEFAULT_QUIET_END,
            categories=dict.fromkeys(SETTING_CATEGORIES, True),
            pause_until=None,
            updated_at=clock.now(),
        )
        .on_conflict_do_nothing(index_elements=["account_id"])
    )
    return db.session.execute(
        select(ReminderSettings)
        .where(ReminderSettings.account_id == account.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one()


def update_settings(account: Account, changes: dict) -> dict:
    """Change the account's reminder settings (fields left out stay as they are); returns them.

    A new daily time or time zone moves the account's daily reminders that are still to come.
    """
    from coaching.accounts.service import check_timezone

    timezone = check_timezone(changes["timezone"]) if "timezone" in changes else None
    settings = _settings_for_update(account)
    if timezone is not None:
        account.timezone = timezone
    if "daily_time" in changes:
        settings.daily_time = changes["daily_time"]
    if "quiet_hours" in changes:
        quiet = changes["quiet_hours"]
        settings.quiet_start = quiet["start"] if quiet else None
        settings.quiet_end = quiet["end"] if quiet else None
    if "categories" in changes:
        settings.categories = {
            c: bool(changes["categories"].get(c, (settings.categories or {}).get(c, True)))
            for c in SETTING_CATEGORIES
        }
    if "pause_until" in changes:
        settings.pause_until = changes["pause_until"]
    if (
        settings.quiet_start is not None
        and settings.quiet_end is not None
        and _in_window(settings.daily_time, settings.quiet_start, settings.quiet_end)
    ):
        # Name what the request changed: quiet hours sent alone are what does not fit.
        if "daily_time" in changes:
            raise ValidationFailed.field("daily_time", "The daily time falls in the quiet hours.")
        raise ValidationFailed.field("quiet_hours", "The quiet hours cover the daily time.")
    settings.updated_at = clock.now()
    db.session.flush()
    retime_daily_reminders(account)
    return settings_view(account)


def retime_daily_reminders(account: Account) -> int:
    """Move the account's unclaimed daily reminders to its current daily time and time zone.

    Returns how many moved. One whose new time has passed is due at once (the dispatcher then
    decides whether its day is over).
    """
    prefs = prefs_for(account)
    now = clock.now()
    rows = db.session.execute(
        select(Notification).where(
            Notification.recipient_id == account.id,
            Notification.status == "scheduled",
            Notification.claim_token.is_(None),
            Notification.local_date.is_not(None),
            Notification.scheduled_for >= now - timedelta(days=1),
        )
    ).scalars()
    moved = 0
    for row in rows:
        target = max(at_local(row.local_date, prefs.daily_time, prefs.timezone), now)
        if target != row.scheduled_for:
            row.scheduled_for = row.due_at = target
            moved += 1
    db.session.flush()
    return moved


# --- history -----------------------------------------------------------------------------------


def history_query(account: Account):
    """Returns a select() of the account's notifications, newest first."""
    return (
        select(Notification)
        .where(Notification.recipient_id == account.id)
        .order_by(Notification.scheduled_for.desc(), Notification.id)
    )


def view(notification: Notification, locale: str) -> dict:
    """Returns a notification in the contract's shape, in the reader's language."""
    english = locale == "en"
    return {
        "id": notification.id,
        "category": notification.category,
        "title": notification.title_en if english else notification.title_nl,
        "body": notification.body_en if english else notification.body_nl,
        "data": notification.data or {},
        "scheduled_for": notification.scheduled_for,
        "sent_at": notification.sent_at,
        "opened_at": notification.opened_at,
        "status": notification.status,
    }


def mark_opened(*, account: Account, notification_id: str) -> Notification:
    """Record that the account opened a push (the first time counts); returns the notification."""
    notification = db.session.execute(
        select(Notification).where(
            Notification.id == notification_id, Notification.recipient_id == account.id
        )
    ).scalar_one_or_none()
    if notification is None:
        raise NotFound("Notification not found")
    if notification.opened_at is None:
        notification.opened_at = clock.now()
        db.session.flush()
    return notification
