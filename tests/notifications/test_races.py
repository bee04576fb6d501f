"""Requests of one account arriving at once, and quiet hours on the night clocks go back: each
answered as if it came alone (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, time

from sqlalchemy import func, select

from coaching.accounts import service as accounts_service
from coaching.extensions import db
from coaching.notifications import service
from coaching.notifications.dispatch import claim_batch, process_batch
from coaching.notifications.models import Notification, ReminderSettings
from coaching.notifications.senders import LogSender
from coaching.notifications.timing import quiet_end

SETTINGS = "/api/v1/me/reminder-settings"


def _at_once(app, requests: list[tuple[str, str, dict, dict]]) -> list[int]:
    """Sends each (method, path, body, headers) from its own thread; returns the statuses."""
    statuses: list[int] = []

    def send(method, path, body, headers):
        response = app.test_client().open(path, method=method, json=body, headers=headers)
        statuses.append(response.status_code)

    threads = [threading.Thread(target=send, args=r) for r in requests]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return statuses


def test_the_first_two_settings_changes_at_once_are_both_200(app, world, monkeypatch):
    """Neither request finds a settings row; both must not try to create it (409)."""
    barrier, original = threading.Barrier(2), accounts_service.check_timezone

    def synchronised(name):
        # Both have looked for the row (and found none) before this check.
        barrier.wait(timeout=10)
        return original(name)

    monkeypatch.setattr(accounts_service, "check_timezone", synchronised)
    headers = world.h["patient"]
    bodies = [
        {"timezone": "Europe/Amsterdam", "daily_time": "18:00"},
        {"timezone": "Europe/Amsterdam", "categories": {"lesson": False}},
    ]
    statuses = _at_once(app, [("PUT", SETTINGS, body, headers) for body in bodies])
    assert statuses == [200, 200]
    monkeypatch.undo()
    db.session.expire_all()
    settings = db.session.get(ReminderSettings, world.patient.id)
    # Each change applied to what the other left: none is lost.
    assert settings.daily_time == time(18, 0)
    assert settings.categories["lesson"] is False


# --- quiet hours on the night the clocks go back (Europe/Amsterdam, 25 October 2026) -----------

# 03:00 CEST becomes 02:00 CET: 02:00-03:00 happens twice, first at 00:00-01:00 UTC (CEST) and
# again at 01:00-02:00 UTC (CET).
SECOND_0215 = datetime(2026, 10, 25, 1, 15, tzinfo=UTC)  # 02:15 CET, the second time round
SECOND_0230 = datetime(2026, 10, 25, 1, 30, tzinfo=UTC)


def test_quiet_hours_ending_in_the_repeated_hour_end_after_now():
    """At 02:15 the second time round, quiet hours until 02:30 end at the 02:30 still to come,
    not at the one an hour ago."""
    end = quiet_end(SECOND_0215, time(22, 0), time(2, 30), "Europe/Amsterdam")
    assert end == SECOND_0230
    assert quiet_end(SECOND_0215, time(1, 0), time(2, 30), "Europe/Amsterdam") == SECOND_0230


def test_a_message_in_the_repeated_hour_waits_for_the_end_still_to_come(make, h, clock):
    patient = make.patient()
    h.device(patient)
    h.settings(patient, quiet_hours={"start": time(22, 0), "end": time(2, 30)})
    clock.set(SECOND_0215)
    service.enqueue(
        recipient_id=patient.id,
        category="message",
        key="message:dst",
        title={"nl": "Nieuw bericht", "en": "New message"},
        body={"nl": "Open de app.", "en": "Open the app."},
    )
    db.session.commit()
    (row,) = h.rows(idempotency_key="message:dst")
    assert row.scheduled_for == SECOND_0230
    # A postponement into the past would be due again at once: the dispatcher would claim and
    # postpone it over and over, for half an hour, in one dispatch run.
    db.session.execute(
        Notification.__table__.update().values(scheduled_for=clock.now(), due_at=clock.now())
    )
    db.session.commit()
    counts = process_batch(claim_batch(), LogSender())
    assert counts["postponed"] == 1
    assert claim_batch() == []
    (row,) = h.rows(idempotency_key="message:dst")
    assert row.due_at == SECOND_0230
    assert db.session.execute(select(func.count()).select_from(Notification)).scalar_one() == 1
