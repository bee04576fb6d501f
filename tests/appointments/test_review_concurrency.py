"""Appointment requests arriving at once: one therapist's appointments never overlap, and a
cancellation by both sides at once is one cancellation (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading

from sqlalchemy import func, select

from coaching.appointments import service as appointments_service
from coaching.appointments.models import Appointment
from coaching.extensions import db
from coaching.notifications.models import Notification
from tests.appointments.conftest import API, in_hours


def _meet_where_plans_race(monkeypatch, is_postgres: bool, n: int = 2) -> None:
    """Makes n plans wait for each other where they would race: on SQLite after each has checked
    for an overlap before writing (nothing stops them there), on PostgreSQL just before the
    therapist's lock (which lets one through at a time; a meeting after it would never happen)."""
    name = "_lock_therapist" if is_postgres else "_overlapping"
    barrier, original = threading.Barrier(n), getattr(appointments_service, name)

    def synchronised(*args, **kwargs):
        if is_postgres:
            barrier.wait(timeout=10)
            return original(*args, **kwargs)
        result = original(*args, **kwargs)
        if kwargs.get("besides") is None:
            barrier.wait(timeout=10)
        return result

    monkeypatch.setattr(appointments_service, name, synchronised)


def _at_once(calls) -> list[tuple[int, dict | None]]:
    """Runs each call (returning a response) in its own thread; returns (status, body) each."""
    answers: list[tuple[int, dict | None]] = []

    def run(call):
        response = call()
        answers.append((response.status_code, response.get_json(silent=True)))

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return answers


def _planned(therapist_id: str) -> int:
    return db.session.execute(
        select(func.count())
        .select_from(Appointment)
        .where(Appointment.therapist_id == therapist_id, Appointment.cancelled_at.is_(None))
    ).scalar_one()


def test_two_overlapping_plans_at_once_give_one_appointment_and_one_409(
    app, world, monkeypatch, is_postgres
):
    starts_at = in_hours(48)

    def plan(patient, minutes):
        url = f"{API}/patients/{patient.id}/appointments"
        return lambda: app.test_client().post(
            url,
            json={"starts_at": starts_at, "duration_minutes": minutes, "kind": "in_person"},
            headers=world.h["therapist"],
        )

    _meet_where_plans_race(monkeypatch, is_postgres)
    answers = _at_once([plan(world.patient, 45), plan(world.other_patient, 30)])
    monkeypatch.undo()
    assert sorted(status for status, _ in answers) == [201, 409], answers
    assert _planned(world.therapist.id) == 1


def test_plans_of_two_therapists_at_once_do_not_wait_for_each_other(
    app, make, world, monkeypatch, is_postgres
):
    starts_at = in_hours(48)
    colleague_patient = make.patient(world.colleague)
    colleague_headers = make.headers(world.colleague)

    def plan(patient, headers):
        url = f"{API}/patients/{patient.id}/appointments"
        return lambda: app.test_client().post(
            url,
            json={"starts_at": starts_at, "kind": "video_call"},
            headers=headers,
        )

    _meet_where_plans_race(monkeypatch, is_postgres)
    answers = _at_once(
        [
            plan(world.patient, world.h["therapist"]),
            plan(colleague_patient, colleague_headers),
        ]
    )
    monkeypatch.undo()
    assert [status for status, _ in answers] == [201, 201], answers


def test_patient_and_therapist_cancelling_at_once_is_one_cancellation(
    app, client, world, plan, monkeypatch
):
    appointment = plan(world.h["therapist"], world.patient.id).get_json()
    barrier, original = threading.Barrier(2), appointments_service.get_for

    def synchronised(*args, **kwargs):
        # Both have read the appointment as planned before either writes.
        found = original(*args, **kwargs)
        barrier.wait(timeout=10)
        return found

    monkeypatch.setattr(appointments_service, "get_for", synchronised)

    def cancel(who):
        return lambda: app.test_client().post(
            f"{API}/appointments/{appointment['id']}/cancel",
            json={"reason": f"by {who}"},
            headers=world.h[who],
        )

    answers = _at_once([cancel("patient"), cancel("therapist")])
    monkeypatch.undo()
    assert [status for status, _ in answers] == [200, 200], answers
    # Both answers tell the same story: the one cancellation that happened.
    bodies = [body for _, body in answers]
    assert bodies[0]["cancelled_by"] == bodies[1]["cancelled_by"]
    assert bodies[0]["cancel_reason"] == bodies[1]["cancel_reason"]
    stored = client.get(f"{API}/appointments/{appointment['id']}", headers=world.h["patient"])
    assert stored.get_json()["cancelled_by"] == bodies[0]["cancelled_by"]
    # Only the side that did not cancel is told about it.
    told = db.session.execute(
        select(Notification.recipient_id).where(
            Notification.idempotency_key.like("appointment-cancelled%")
        )
    ).scalars()
    canceller = bodies[0]["cancelled_by"]
    other = world.therapist.id if canceller == world.patient.id else world.patient.id
    assert list(told) == [other]
