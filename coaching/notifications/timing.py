"""Local times of day in a person's IANA time zone, quiet hours, and the decision whether a
notification may go out now, later, or not at all.

Every function takes aware datetimes and returns aware UTC datetimes; local times are only ever
built through `zoneinfo`, so daylight-saving changes are handled by the tz database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

from coaching.notifications.models import (
    DEFAULT_DAILY_TIME,
    DEFAULT_QUIET_END,
    DEFAULT_QUIET_START,
    PAUSABLE_CATEGORIES,
    SETTING_CATEGORIES,
)


def at_local(day: date, at: time, timezone: str) -> datetime:
    """Returns the UTC instant of a local date and time of day in a time zone.

    A time that does not exist (the hour skipped in spring) falls after the gap; an ambiguous
    one (the hour repeated in autumn) is its first occurrence.
    """
    local = datetime.combine(day, at, tzinfo=ZoneInfo(timezone))
    return local.astimezone(UTC)


def local_date(at: datetime, timezone: str) -> date:
    """Returns the local calendar date of an instant in a time zone."""
    return at.astimezone(ZoneInfo(timezone)).date()


def quiet_end(at: datetime, start: time | None, end: time | None, timezone: str) -> datetime | None:
    """Returns when the quiet hours around `at` end (UTC), or None if `at` is not in them.

    Quiet hours may run over midnight (22:00–08:00); equal start and end mean none.
    """
    if start is None or end is None or start == end:
        return None
    zone = ZoneInfo(timezone)
    local = at.astimezone(zone)
    now_t = local.time().replace(tzinfo=None)
    today = local.date()
    if start < end:
        if start <= now_t < end:
            return _end_after(at, today, end, zone)
        return None
    if now_t >= start:
        return at_local(date.fromordinal(today.toordinal() + 1), end, timezone)
    if now_t < end:
        return _end_after(at, today, end, zone)
    return None


def _end_after(at: datetime, day: date, end: time, zone: ZoneInfo) -> datetime:
    """Returns the end of quiet hours on `day` still to come at `at`.

    On the night the clocks go back an end in the repeated hour (02:30) happens twice: at 02:15
    the second time round the first 02:30 is an hour ago, and a postponement to it would be due
    again at once (the dispatcher would claim and postpone the row over and over).
    """
    first = datetime.combine(day, end, tzinfo=zone).astimezone(UTC)
    if first > at:
        return first
    return datetime.combine(day, end, tzinfo=zone).replace(fold=1).astimezone(UTC)


@dataclass
class Prefs:
    """An account's effective reminder settings (the defaults where it has none)."""

    timezone: str = "Europe/Amsterdam"
    locale: str = "nl"
    daily_time: time = DEFAULT_DAILY_TIME
    quiet_start: time | None = DEFAULT_QUIET_START
    quiet_end: time | None = DEFAULT_QUIET_END
    categories: dict = field(default_factory=dict)
    pause_until: date | None = None

    @classmethod
    def of(cls, *, timezone: str, locale: str, settings=None) -> Prefs:
        """Returns the preferences of an account from its time zone, locale and settings row."""
        if settings is None:
            return cls(timezone=timezone, locale=locale)
        return cls(
            timezone=timezone,
            locale=locale,
            daily_time=settings.daily_time,
            quiet_start=settings.quiet_start,
            quiet_end=settings.quiet_end,
            categories=dict(settings.categories or {}),
            pause_until=settings.pause_until,
        )

    def allows(self, category: str) -> bool:
        """Returns whether the account receives this category (unlisted ones are on)."""
        if category not in SETTING_CATEGORIES:
            return True
        return bool(self.categories.get(category, True))


@dataclass(frozen=True)
class Decision:
    action: str  # "send", "postpone" or "skip"
    until: datetime | None = None
    reason: str | None = None


SEND = Decision("send")


def decide(*, category: str, at: datetime, prefs: Prefs, day: date | None = None) -> Decision:
    """Returns whether a notification may go out at `at`: send, postpone to the end of the quiet
    hours, or skip (category off, paused, or a daily reminder whose local day is over)."""
    if not prefs.allows(category):
        return Decision("skip", reason="category switched off")
    today = local_date(at, prefs.timezone)
    if (
        category in PAUSABLE_CATEGORIES
        and prefs.pause_until is not None
        and (day or today) <= prefs.pause_until
    ):
        return Decision("skip", reason=f"reminders paused until {prefs.pause_until.isoformat()}")
    if day is not None and today > day:
        return Decision("skip", reason="the day of this reminder is over")
    end = quiet_end(at, prefs.quiet_start, prefs.quiet_end, prefs.timezone)
    if end is not None:
        if day is not None and local_date(end, prefs.timezone) != day:
            return Decision("skip", reason="quiet hours last until the day is over")
        return Decision("postpone", until=end)
    return SEND
