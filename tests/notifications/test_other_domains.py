"""The rules that read other domains, against those domains' real functions."""

from __future__ import annotations

from datetime import date, timedelta

from coaching.appointments import service as appointments
from coaching.content import service as content
from coaching.extensions import db
from coaching.messaging import service as messaging
from coaching.outcomes.service import due_questionnaires as due
from tests.content.conftest import load
from tests.notifications.conftest import local


def test_baseline_questionnaires_due_give_one_reminder_then_one_more(make, h):
    patient = make.patient()  # registered 2 March: the baseline is due at once
    h.device(patient)
    items = due(patient)
    # The questionnaire definitions and schedule live in the code: nothing to load.
    assert {item["timepoint"] for item in items} == {"baseline"}
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
    assert due(patient)  # nothing answered: still open, so a second reminder
    assert [r.idempotency_key for r in h.rows(category="questionnaire")] == [
        f"questionnaire:{patient.id}:baseline:1",
        f"questionnaire:{patient.id}:baseline:2",
    ]
    after = later + timedelta(days=3)
    h.tick(local(after.year, after.month, after.day, 18, 30))
    assert len(h.rows(category="questionnaire")) == 2  # and no third


def test_a_patient_message_waiting_36_hours_reminds_the_therapist(make, h):
    therapist = make.therapist()
    patient = make.patient(therapist)
    h.device(therapist, platform="ios")
    conversation = messaging.ensure_conversation(patient_id=patient.id, therapist_id=therapist.id)
    messaging.post_message(account=patient, conversation=conversation, kind="text", body="Hoi")
    db.session.commit()
    assert len(messaging.messages_awaiting_reply(h.clock.now())) == 1
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
    load()  # the test programme: two modules of two lessons, one module a week
    patient = make.patient()  # registered 2 March
    h.device(patient)
    first, second = content.programme_state(patient)
    assert content.module_unlock_dates(patient) == [(first.module.slug, date(2026, 3, 2))]
    # Module 2 gets its date once module 1 is completed: a week after the start.
    for lesson_state in first.lessons:
        content.save_progress(patient=patient, lesson_id=lesson_state.lesson.id, status="completed")
    db.session.commit()
    unlocks = dict(content.module_unlock_dates(patient))
    assert unlocks == {first.module.slug: date(2026, 3, 2), second.module.slug: date(2026, 3, 9)}
    key = f"lesson:{patient.id}:{second.module.slug}"
    for d in range(2, 9):
        h.tick(local(2026, 3, d, 18, 30))
        assert key not in {r.idempotency_key for r in h.rows(category="lesson")}, d
    h.tick(local(2026, 3, 9, 18, 30))
    rows = h.rows(idempotency_key=key)
    assert len(rows) == 1
    assert rows[0].local_date == date(2026, 3, 9)
    assert rows[0].scheduled_for == local(2026, 3, 9, 19, 0)
    assert rows[0].data == {"link": "/programme"}


def test_appointment_reminders_from_the_appointments_domain(make, h):
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


def test_an_early_appointments_reminder_is_not_sent_after_it_has_begun(make, h):
    """A 07:30 appointment's 2-hour reminder falls in the default quiet hours (22:00–08:00):
    waiting them out would bring it half an hour into the appointment, so it is skipped. The
    24-hour reminder, at 07:30 the day before, waits until 08:00 and goes."""
    therapist = make.therapist()
    patient = make.patient(therapist)
    h.device(patient)
    starts = local(2026, 3, 12, 7, 30)
    appointments.plan_appointment(
        therapist=therapist,
        patient_id=patient.id,
        starts_at=starts,
        duration_minutes=30,
        kind="in_person",
    )
    db.session.commit()
    for minutes in range(0, 27 * 60, 15):
        h.tick(starts - timedelta(hours=25) + timedelta(minutes=minutes))
    rows = {r.idempotency_key.rsplit(":", 1)[1]: r for r in h.rows(category="appointment")}
    assert rows["2h"].status == "skipped"
    assert rows["2h"].sent_at is None
    assert "begun" in rows["2h"].last_error
    assert rows["24h"].status == "sent"
    assert rows["24h"].sent_at == local(2026, 3, 11, 8, 0)
