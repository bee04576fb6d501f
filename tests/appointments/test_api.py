"""Appointments: a therapist plans them for their own patient, the patient sees them, either
side cancels; everyone else gets 404 (owners 403), and bad input is 422 naming the field."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from coaching.audit.models import AuditEntry
from coaching.db import utc_iso
from coaching.extensions import db
from coaching.notifications.models import Notification
from tests.appointments.conftest import API, in_hours
from tests.conftest import assert_error


def _audits(patient_id):
    return [
        (a.action, a.resource_type)
        for a in db.session.execute(
            select(AuditEntry).where(AuditEntry.patient_id == patient_id).order_by(AuditEntry.seq)
        ).scalars()
    ]


def test_therapist_plans_and_the_patient_sees_it(client, world, plan, clock):
    response = plan(world.h["therapist"], world.patient.id, note="Oefeningen meenemen")
    assert response.status_code == 201, response.get_json()
    appointment = response.get_json()
    assert appointment == {
        "id": appointment["id"],
        "patient_id": world.patient.id,
        "therapist_id": world.therapist.id,
        "starts_at": utc_iso(clock.now() + timedelta(hours=48)),
        "ends_at": utc_iso(clock.now() + timedelta(hours=48, minutes=45)),
        "duration_minutes": 45,
        "kind": "in_person",
        "note": "Oefeningen meenemen",
        "status": "planned",
        "created_at": utc_iso(clock.now()),
        "cancelled_at": None,
        "cancelled_by": None,
        "cancel_reason": None,
    }
    mine = client.get(f"{API}/me/appointments", headers=world.h["patient"])
    assert mine.status_code == 200 and [a["id"] for a in mine.get_json()] == [appointment["id"]]
    assert json.loads(mine.headers["X-Pagination"])["total"] == 1
    listed = client.get(
        f"{API}/patients/{world.patient.id}/appointments", headers=world.h["therapist"]
    )
    assert [a["id"] for a in listed.get_json()] == [appointment["id"]]
    own = client.get(f"{API}/patients/{world.patient.id}/appointments", headers=world.h["patient"])
    assert own.status_code == 200 and len(own.get_json()) == 1
    one = client.get(f"{API}/appointments/{appointment['id']}", headers=world.h["patient"])
    assert one.status_code == 200 and one.get_json() == appointment
    assert client.get(f"{API}/me/appointments", headers=world.h["other_patient"]).get_json() == []
    # The therapist's accesses are audited.
    assert ("create", "appointment") in _audits(world.patient.id)
    assert ("read", "appointments") in _audits(world.patient.id)


def test_scopes(client, world, plan, clock, make):
    soon = plan(world.h["therapist"], world.patient.id, starts_at=in_hours(2)).get_json()
    later = plan(world.h["therapist"], world.patient.id, starts_at=in_hours(72)).get_json()
    cancelled = plan(world.h["therapist"], world.patient.id, starts_at=in_hours(100)).get_json()
    client.post(f"{API}/appointments/{cancelled['id']}/cancel", json={}, headers=world.h["patient"])
    clock.advance(hours=4)
    headers = make.headers(world.patient)

    def ids(scope):
        response = client.get(f"{API}/me/appointments?scope={scope}", headers=headers)
        return [a["id"] for a in response.get_json()]

    assert ids("all") == [soon["id"], later["id"], cancelled["id"]]
    assert ids("upcoming") == [later["id"]]
    assert ids("past") == [soon["id"]]
    assert_error(client.get(f"{API}/me/appointments?scope=soon", headers=headers), 422, "scope")


def test_idempotency_key_creates_once(client, world):
    body = {"starts_at": in_hours(24), "kind": "video_call"}
    headers = {**world.h["therapist"], "Idempotency-Key": "plan-1"}
    first = client.post(
        f"{API}/patients/{world.patient.id}/appointments", json=body, headers=headers
    )
    second = client.post(
        f"{API}/patients/{world.patient.id}/appointments", json=body, headers=headers
    )
    assert first.status_code == second.status_code == 201
    assert first.get_json()["id"] == second.get_json()["id"]
    assert first.get_json()["duration_minutes"] == 45


def test_overlapping_appointments_of_a_therapist_conflict(world, plan):
    assert plan(world.h["therapist"], world.patient.id, starts_at=in_hours(24)).status_code == 201
    response = plan(world.h["therapist"], world.other_patient.id, starts_at=in_hours(24.5))
    assert_error(response, 409)
    assert (
        plan(world.h["therapist"], world.other_patient.id, starts_at=in_hours(24.75)).status_code
        == 201
    )
    # Another therapist at the same time is fine.
    assert (
        plan(
            world.h["other_therapist"], world.foreign_patient.id, starts_at=in_hours(24)
        ).status_code
        == 201
    )


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"starts_at": "2026-03-05T10:00:00"}, "starts_at"),
        ({"starts_at": "tomorrow"}, "starts_at"),
        ({"starts_at": "2026-03-01T10:00:00Z"}, "starts_at"),
        ({"starts_at": "2028-03-01T10:00:00Z"}, "starts_at"),
        ({"starts_at": "0001-01-01T00:00:00+01:00"}, "starts_at"),
        ({"kind": "phone"}, "kind"),
        ({"duration_minutes": 0}, "duration_minutes"),
        ({"duration_minutes": 241}, "duration_minutes"),
        ({"duration_minutes": "45"}, "duration_minutes"),
        ({"note": "x" * 1001}, "note"),
        ({"note": "   "}, "note"),
        ({"therapist_id": "x"}, "therapist_id"),
    ],
)
def test_bad_input_is_422_naming_the_field(world, plan, changes, field):
    assert_error(plan(world.h["therapist"], world.patient.id, **changes), 422, field=field)


def test_missing_fields_and_malformed_json(client, world):
    url = f"{API}/patients/{world.patient.id}/appointments"
    response = client.post(url, json={"kind": "in_person"}, headers=world.h["therapist"])
    assert_error(response, 422, field="starts_at")
    response = client.post(
        url, data="{", content_type="application/json", headers=world.h["therapist"]
    )
    assert_error(response, 400)


def test_who_may_plan_and_list(client, world, plan):
    url = f"{API}/patients/{world.patient.id}/appointments"
    assert_error(client.get(url), 401)
    assert_error(plan({}, world.patient.id), 401)
    for name in ("colleague", "other_therapist"):
        assert_error(plan(world.h[name], world.patient.id), 404)
        assert_error(client.get(url, headers=world.h[name]), 404)
    assert_error(client.get(url, headers=world.h["other_patient"]), 404)
    assert_error(client.get(url, headers=world.h["owner"]), 403)
    assert_error(plan(world.h["owner"], world.patient.id), 403)
    assert_error(plan(world.h["patient"], world.patient.id), 403)
    assert_error(plan(world.h["therapist"], "no-such-patient"), 404)
    assert_error(plan(world.h["therapist"], world.therapist.id), 404)
    assert_error(client.get(f"{API}/me/appointments", headers=world.h["therapist"]), 403)
    assert_error(client.get(f"{API}/me/appointments"), 401)


def test_who_may_see_and_cancel_one(client, world, plan):
    appointment = plan(world.h["therapist"], world.patient.id).get_json()
    url = f"{API}/appointments/{appointment['id']}"
    assert_error(client.get(url), 401)
    assert_error(client.post(f"{url}/cancel", json={}), 401)
    for name in ("other_patient", "foreign_patient", "colleague", "other_therapist"):
        assert_error(client.get(url, headers=world.h[name]), 404)
        assert_error(client.post(f"{url}/cancel", json={}, headers=world.h[name]), 404)
        assert_error(client.delete(url, headers=world.h[name]), 404)
    assert_error(client.get(url, headers=world.h["owner"]), 403)
    assert_error(client.post(f"{url}/cancel", json={}, headers=world.h["owner"]), 403)
    assert_error(client.get(f"{API}/appointments/nope", headers=world.h["patient"]), 404)
    assert client.get(url, headers=world.h["therapist"]).status_code == 200
    assert client.get(url, headers=world.h["patient"]).get_json()["status"] == "planned"


def test_patient_cancels_and_the_therapist_is_told(client, world, plan, clock):
    appointment = plan(world.h["therapist"], world.patient.id).get_json()
    url = f"{API}/appointments/{appointment['id']}/cancel"
    response = client.post(url, json={"reason": "Ziek"}, headers=world.h["patient"])
    assert response.status_code == 200
    cancelled = response.get_json()
    assert cancelled["status"] == "cancelled"
    assert cancelled["cancelled_at"] == utc_iso(clock.now())
    assert cancelled["cancelled_by"] == world.patient.id
    assert cancelled["cancel_reason"] == "Ziek"
    clock.advance(minutes=1)
    # Cancelling again changes nothing.
    again = client.post(url, json={}, headers=world.h["therapist"])
    assert again.status_code == 200 and again.get_json() == cancelled
    told = db.session.execute(
        select(Notification).where(Notification.recipient_id == world.therapist.id)
    ).scalar_one()
    assert told.category == "appointment" and told.data == {
        "link": f"/appointments/{appointment['id']}"
    }
    assert world.patient.display_name not in told.body_nl + told.body_en
    today = client.get(f"{API}/me/today", headers=world.h["patient"])
    assert today.status_code == 200 and today.get_json()["next_appointment"] is None


def test_therapist_cancels_with_delete(client, world, plan):
    appointment = plan(world.h["therapist"], world.patient.id).get_json()
    response = client.delete(
        f"{API}/appointments/{appointment['id']}", headers=world.h["therapist"]
    )
    assert response.status_code == 204
    got = client.get(f"{API}/appointments/{appointment['id']}", headers=world.h["patient"])
    assert got.get_json()["status"] == "cancelled"
    assert got.get_json()["cancelled_by"] == world.therapist.id
    assert ("update", "appointment") in _audits(world.patient.id)
    told = db.session.execute(
        select(Notification.idempotency_key).where(Notification.recipient_id == world.patient.id)
    ).scalars()
    assert [k.split(":")[0] for k in told] == ["appointment-cancelled_by_therapist"]


def test_a_past_appointment_cannot_be_cancelled(client, world, plan, clock, make):
    appointment = plan(world.h["therapist"], world.patient.id, starts_at=in_hours(1)).get_json()
    clock.advance(hours=1, minutes=45)
    response = client.post(
        f"{API}/appointments/{appointment['id']}/cancel",
        json={},
        headers=make.headers(world.patient),
    )
    assert_error(response, 409)


@pytest.mark.parametrize(("body", "field"), [({"reason": "x" * 501}, "reason"), ({"x": 1}, "x")])
def test_bad_cancel_bodies(client, world, plan, body, field):
    appointment = plan(world.h["therapist"], world.patient.id).get_json()
    response = client.post(
        f"{API}/appointments/{appointment['id']}/cancel", json=body, headers=world.h["patient"]
    )
    assert_error(response, 422, field=field)
