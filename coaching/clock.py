"""Time, injected: the app holds a clock that tests can set and move."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import current_app


class Clock:
    """The real wall clock."""

    def now(self) -> datetime:
        """Return the current time, timezone-aware in UTC."""
        return datetime.now(UTC)


class FrozenClock(Clock):
    """A clock that stands still until it is set or advanced (for tests and `scheduler tick --now`)."""

    def __init__(self, at: datetime | None = None) -> None:
        self._at = at or datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self._at

    def set(self, at: datetime) -> None:
        """Move the clock to a given aware time."""
        if at.tzinfo is None:
            raise ValueError("FrozenClock needs an aware datetime")
        self._at = at.astimezone(UTC)

    def advance(self, **kwargs: float) -> datetime:
        """Move the clock forward by a timedelta's keyword arguments; return the new time."""
        self._at = self._at + timedelta(**kwargs)
        return self._at


def now() -> datetime:
    """Return the current time from the app's clock."""
    return current_app.extensions["clock"].now()
