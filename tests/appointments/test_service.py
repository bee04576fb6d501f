"""What the reminders and /me/today read: appointments_between and next_appointment."""

from __future__ import annotations

from datetime import timedelta

from coaching.appointments import service
from coaching.extensions import db


def _plan(world, clock, hours, minutes=45, patient=None, therapist=None):
    appointment = service.plan_appointment(
        therapist=therapist or world.therapist,
        patient_id=(patient or world.patient).id,
        starts_at=clock.now() + timedelta(hours=hours),
        duration_minutes=minutes,
        kind="in_person",
    )
    db.session.commit()
    return appointment


def test_appointments_between_leaves_out_cancelled_ones(world, clock):
    first = _plan(world, clock, 2)
    second = _plan(world, clock, 30)
    cancelled = _plan(world, clock, 5)
    service.cancel(account=world.patient, appointment_id=cancelled.id)
    db.session.commit()
    start = clock.now()
    assert service.appointments_between(start, start + timedelta(days=2)) == [first, second]
    assert service.appointments_between(start, start + timedelta(hours=2)) == []
    assert service.appointments_between(start + timedelta(hours=2), start + timedelta(hours=3)) == [
        first
    ]
    assert {a.status for a in service.appointments_between(start, start + timedelta(days=2))} == {
        "planned"
    }


def test_next_appointment_includes_one_going_on(world, clock):
    first = _plan(world, clock, 1, minutes=60)
    second = _plan(world, clock, 24)
    _plan(world, clock, 1, patient=world.foreign_patient, therapist=world.other_therapist)
    assert service.next_appointment(patient_id=world.patient.id) == first
    clock.advance(minutes=90)  # halfway through the first one
    assert service.next_appointment(patient_id=world.patient.id) == first
    clock.advance(minutes=31)
    assert service.next_appointment(patient_id=world.patient.id) == second
    # The other patient's one (a session of 45 minutes) has ended.
    assert service.next_appointments([world.patient.id, world.foreign_patient.id]).keys() == {
        world.patient.id
    }


def test_the_model_has_what_the_reminders_need(world, clock):
    appointment = _plan(world, clock, 2)
    for name in ("patient_id", "therapist_id", "starts_at", "duration_minutes", "kind", "note"):
        assert hasattr(appointment, name)
    assert appointment.cancelled_at is None and appointment.cancelled_by is None
    assert appointment.starts_at.tzinfo is not None
    assert appointment.ends_at == appointment.starts_at + timedelta(minutes=45)


def test_reminders_are_planned_from_appointments(world, clock):
    from coaching.notifications.rules import plan_appointments

    appointment = _plan(world, clock, 24)
    counts = plan_appointments(clock.now())
    assert counts["appointment"] == 1
    assert appointment.id
