"""The rules that read other domains, against those domains' real functions (each test skips
while its domain does not offer the function yet)."""

from __future__ import annotations

import importlib
from datetime import date, timedelta

import pytest

from coaching.extensions import db
from tests.notifications.conftest import local


def _require(module: str, name: str):
    try:
        function = getattr(importlib.import_module(module), name, None)
    except ModuleNotFoundError:
        function = None
    if function is None:
        pytest.skip(f"{module}.{name} does not exist (yet)")
    return function


def test_baseline_questionnaires_due_give_one_reminder_then_one_more(make, h):
    due = _require("coaching.outcomes.service", "due_questionnaires")
    patient = make.patient()  # registered 2 March: the baseline is due at once
    h.device(patient)
    items = due(patient)
    if not items:
        pytest.skip("no questionnaire is due for a new patient in this programme")
    first_due = min(item["due_on"] for item in items)
    day = max(first_due, date(2026, 3, 2))
    h.tick(local(day.year, day.month, day.day, 18, 30))
    h.tick(local(day.year, day.month, day.day, 19, 0))
    rows = h.rows(category="questionnaire")
    assert len(rows) == len({item["timepoint"] for item in items if item["due_on"] <= day})
    assert rows[0].status == "sent" and rows[0].data == {"link": "/questionnaires"}
    later = day + timedelta(days=3)
    h.activity(patient, local(later.year, later.month, later.day, 8) - timedelta(days=1))
    h.tick(local(later.year, later.month, later.day, 18, 30))
    if due(patient):  # still open: a second reminder, and no third
        assert [r.idempotency_key[-2:] for r in h.rows(category="questionnaire")][-1] == ":2"
    after = later + timedelta(days=3)
    h.tick(local(after.year, after.month, after.day, 18, 30))
    assert len(h.rows(category="questionnaire")) <= 2 * len(rows)


def test_a_patient_message_waiting_36_hours_reminds_the_therapist(make, h):
    awaiting = _require("coaching.messaging.service", "messages_awaiting_reply")
    from coaching.messaging import service as messaging

    therapist = make.therapist()
    patient = make.patient(therapist)
    h.device(therapist, platform="ios")
    conversation = messaging.ensure_conversation(patient_id=patient.id, therapist_id=therapist.id)
    messaging.post_message(account=patient, conversation=conversation, kind="text", body="Hoi")
    db.session.commit()
    assert len(awaiting(h.clock.now())) == 1
    h.tick(h.clock.now() + timedelta(hours=35))
    assert [
        r for r in h.rows(recipient_id=therapist.id) if r.idempotency_key.startswith("reply:")
    ] == []
    for _ in range(3):
        h.tick(h.clock.now() + timedelta(hours=1, minutes=30))
    reminders = [
        r for r in h.rows(recipient_id=therapist.id) if r.idempotency_key.startswith("reply:")
    ]
    assert len(reminders) == 1
    assert reminders[0].category == "message"
    assert reminders[0].data == {"link": f"/patients/{patient.id}/messages"}


def test_lesson_unlocks_from_the_content_domain(make, h):
    unlock_dates = _require("coaching.content.service", "module_unlock_dates")
    patient = make.patient()
    h.device(patient)
    from coaching.notifications.rules import _unlocks

    pairs = [(slug, on) for slug, on in _unlocks(unlock_dates(patient)) if on is not None]
    later = [on for _, on in pairs if on > date(2026, 3, 2)]
    if not later:
        pytest.skip("no module unlocks after the start in this programme")
    day = min(later)
    h.activity(patient, local(day.year, day.month, day.day, 8) - timedelta(days=1))
    h.tick(local(day.year, day.month, day.day, 18, 30))
    keys = {r.idempotency_key for r in h.rows(category="lesson")}
    assert {f"lesson:{patient.id}:{slug}" for slug, on in pairs if on == day} <= keys


def test_appointment_reminders_from_the_appointments_domain(make, h):
    _require("coaching.appointments.service", "appointments_between")
    from coaching.appointments import service as appointments

    therapist = make.therapist()
    patient = make.patient(therapist)
    kept_patient = make.patient(therapist)
    h.device(patient)
    h.device(kept_patient)
    starts = local(2026, 3, 12, 10, 0)
    cancelled = appointments.plan_appointment(
        therapist=therapist,
        patient_id=patient.id,
        starts_at=starts,
        duration_minutes=30,
        kind="in_person",
    )
    appointments.plan_appointment(
        therapist=therapist,
        patient_id=kept_patient.id,
        # Right after the first (one therapist's appointments may not overlap), so both 24-hour
        # reminders fall inside the hour the planner looks ahead.
        starts_at=starts + timedelta(minutes=30),
        duration_minutes=30,
        kind="in_person",
    )
    db.session.commit()
    h.tick(starts - timedelta(hours=24, minutes=15))  # both 24-hour reminders are planned
    assert len(h.rows(category="appointment")) == 2
    appointments.cancel(account=therapist, appointment_id=cancelled.id)
    db.session.commit()
    for minutes in range(0, 26 * 60, 30):
        h.tick(starts - timedelta(hours=24, minutes=30) + timedelta(minutes=minutes))
    rows = {
        (r.recipient_id, r.idempotency_key.rsplit(":", 1)[1]): r
        for r in h.rows(category="appointment")
    }
    assert rows[(patient.id, "24h")].status == "skipped"
    assert (patient.id, "2h") not in rows
    assert rows[(kept_patient.id, "24h")].status == "sent"
    assert rows[(kept_patient.id, "2h")].status == "sent"
