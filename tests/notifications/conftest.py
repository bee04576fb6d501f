"""Fixtures of the notification tests: devices, settings, and a scheduler tick."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from coaching.extensions import db
from coaching.notifications import service
from coaching.notifications.dispatch import dispatch_due
from coaching.notifications.models import Notification, PushLogEntry
from coaching.notifications.rules import plan

AMS = ZoneInfo("Europe/Amsterdam")


def local(y, m, d, hh=0, mm=0, tz=AMS) -> datetime:
    """Return the UTC instant of a wall-clock time in a zone."""
    return datetime(y, m, d, hh, mm, tzinfo=tz).astimezone(UTC)


class Helpers:
    def __init__(self, clock):
        self.clock = clock

    def device(self, account, token=None, platform="android"):
        device, _ = service.register_device(
            account=account, token=token or f"token-{account.id}", platform=platform
        )
        db.session.commit()
        return device

    def settings(self, account, **changes):
        view = service.update_settings(account, changes)
        db.session.commit()
        return view

    def tick(self, at: datetime | None = None) -> dict:
        """Move the clock (if given), then plan and dispatch as one scheduler tick would."""
        if at is not None:
            self.clock.set(at)
        planned = plan(self.clock.now())
        sent = dispatch_due()
        db.session.commit()
        return {"planned": planned, "dispatched": sent}

    def rows(self, **filters) -> list[Notification]:
        db.session.expire_all()
        stmt = select(Notification).filter_by(**filters).order_by(Notification.scheduled_for)
        return list(db.session.execute(stmt).scalars())

    def pushes(self, **filters) -> list[PushLogEntry]:
        stmt = select(PushLogEntry).filter_by(**filters).order_by(PushLogEntry.sent_at)
        return list(db.session.execute(stmt).scalars())

    def push_count(self) -> int:
        return db.session.execute(select(func.count()).select_from(PushLogEntry)).scalar_one()

    def activity(self, patient, at: datetime, kind="app_opened"):
        from coaching.metrics.service import record_activity

        record_activity(patient_id=patient.id, kind=kind, occurred_at=at)
        db.session.commit()


@pytest.fixture
def h(clock):
    return Helpers(clock)
