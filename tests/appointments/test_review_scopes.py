"""An appointment going on is still upcoming, not past: the patient who opens the app a few
minutes into a session finds it where /me/today and the therapist's view (service.upcoming) show
it, until it has ended."""

from __future__ import annotations

from tests.appointments.conftest import API, in_hours


def test_an_appointment_going_on_is_upcoming_until_it_ends(client, world, plan, clock, make):
    going_on = plan(
        world.h["therapist"], world.patient.id, starts_at=in_hours(1), duration_minutes=60
    ).get_json()
    later = plan(world.h["therapist"], world.patient.id, starts_at=in_hours(24)).get_json()
    ended = plan(
        world.h["therapist"], world.patient.id, starts_at=in_hours(0.25), duration_minutes=30
    ).get_json()
    clock.advance(minutes=70)  # ten minutes into the session; the short one ended at 45
    headers = make.headers(world.patient)

    def ids(scope, path="/me/appointments"):
        response = client.get(f"{API}{path}?scope={scope}", headers=headers)
        assert response.status_code == 200, response.get_json()
        return [a["id"] for a in response.get_json()]

    assert ids("upcoming") == [going_on["id"], later["id"]]
    assert ids("past") == [ended["id"]]
    assert ids("upcoming", f"/patients/{world.patient.id}/appointments") == ids("upcoming")
    today = client.get(f"{API}/me/today", headers=headers).get_json()
    assert today["next_appointment"]["id"] == going_on["id"]

    clock.advance(minutes=50)  # the session has ended
    headers = make.headers(world.patient)
    assert ids("upcoming") == [later["id"]]
    assert ids("past") == [going_on["id"], ended["id"]]


def test_a_cancelled_appointment_going_on_is_past(client, world, plan, clock, make):
    cancelled = plan(world.h["therapist"], world.patient.id, starts_at=in_hours(1)).get_json()
    cancel = client.post(
        f"{API}/appointments/{cancelled['id']}/cancel", json={}, headers=world.h["patient"]
    )
    assert cancel.status_code == 200
    clock.advance(minutes=70)
    headers = make.headers(world.patient)
    past = client.get(f"{API}/me/appointments?scope=past", headers=headers).get_json()
    upcoming = client.get(f"{API}/me/appointments?scope=upcoming", headers=headers).get_json()
    assert [a["id"] for a in past] == [cancelled["id"]] and upcoming == []
