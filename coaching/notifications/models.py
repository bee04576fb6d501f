"""The notification queue (one row per logical notification, unique by its idempotency key), the
devices push goes to, each account's reminder settings, and the log sender's record of sends.

The queue is the only place a reminder lives: the scheduler plans rows and dispatchers claim due
rows with a lease (`due_at` moved forward plus a `claim_token`), so a dispatcher that dies leaves
its rows to be claimed again once the lease has run out.
"""

from __future__ import annotations

from datetime import date, datetime, time

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    Time,
)
from sqlalchemy.orm import Mapped, mapped_column

from coaching.db import Base, UTCDateTime, id_column

CATEGORIES = (
    "lesson",
    "practice",
    "questionnaire",
    "message",
    "inactivity",
    "appointment",
    "alert",
)
# The categories an account can switch off in its reminder settings (API.md).
SETTING_CATEGORIES = ("lesson", "practice", "questionnaire", "message", "inactivity", "appointment")
# Silenced while reminders are paused (holidays); messages and appointments still come through.
PAUSABLE_CATEGORIES = ("lesson", "practice", "questionnaire", "inactivity")
STATUSES = ("scheduled", "sent", "failed", "skipped")
PLATFORMS = ("ios", "android", "web")

DEFAULT_DAILY_TIME = time(19, 0)
DEFAULT_QUIET_START = time(22, 0)
DEFAULT_QUIET_END = time(8, 0)


class Notification(Base):
    __tablename__ = "notifications"
    __table_args__ = (
        # The dispatchers' claim: status = 'scheduled' AND due_at <= now, oldest first.
        Index("ix_notifications_status_due_at", "status", "due_at"),
        Index("ix_notifications_recipient_id_scheduled_for", "recipient_id", "scheduled_for"),
    )

    id: Mapped[str] = id_column()
    recipient_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    category: Mapped[str] = mapped_column(String(20))
    # e.g. "practice:<patient id>:2026-03-02": the same logical reminder is planned only once.
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    title_nl: Mapped[str] = mapped_column(String(200))
    title_en: Mapped[str] = mapped_column(String(200))
    body_nl: Mapped[str] = mapped_column(Text)
    body_en: Mapped[str] = mapped_column(Text)
    data: Mapped[dict] = mapped_column(JSON, default=dict)  # deep link; never health details
    scheduled_for: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16), default="scheduled")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # When a dispatcher may take the row next: the planned time, a retry's time, or the end of
    # the lease of the dispatcher that claimed it.
    due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Set by the dispatcher holding the lease; a result is recorded only under the same token.
    claim_token: Mapped[str | None] = mapped_column(String(36))
    # The recipient's local date a daily reminder belongs to (one practice reminder a day).
    local_date: Mapped[date | None] = mapped_column(Date)
    # Skip the row if the patient did anything since this time (inactivity nudges).
    skip_if_active_since: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Device(Base):
    """A push token of one app installation; a token belongs to one account at a time."""

    __tablename__ = "devices"

    id: Mapped[str] = id_column()
    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    token: Mapped[str] = mapped_column(String(1024), unique=True)
    platform: Mapped[str] = mapped_column(String(10))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    deactivated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    deactivation_reason: Mapped[str | None] = mapped_column(String(200))


class ReminderSettings(Base):
    """An account's reminder preferences; an account without a row has the defaults."""

    __tablename__ = "reminder_settings"

    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    # Local times of day in the account's IANA time zone (accounts.timezone).
    daily_time: Mapped[time] = mapped_column(Time)
    quiet_start: Mapped[time | None] = mapped_column(Time)
    quiet_end: Mapped[time | None] = mapped_column(Time)
    categories: Mapped[dict] = mapped_column(JSON, default=dict)  # {category: bool}
    pause_until: Mapped[date | None] = mapped_column(Date)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PushLogEntry(Base):
    """One push the `log` sender would have sent (the embedded default's record of sends)."""

    __tablename__ = "push_log"

    id: Mapped[str] = id_column()
    notification_id: Mapped[str] = mapped_column(String(36), index=True)
    idempotency_key: Mapped[str] = mapped_column(String(200))
    device_id: Mapped[str | None] = mapped_column(String(36))
    platform: Mapped[str | None] = mapped_column(String(10))
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    data: Mapped[dict] = mapped_column(JSON, default=dict)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
