"""GET /me/access-log (patients) and GET /audit (owners)."""

from coaching.audit import service
from coaching.extensions import db
from tests.conftest import assert_error


def _reads(world):
    service.record(
        actor=world.therapist, patient_id=world.patient.id, action="read", resource_type="outcomes"
    )
    service.record(
        actor=world.other_therapist,
        patient_id=world.foreign_patient.id,
        action="read",
        resource_type="profile",
    )
    db.session.commit()


def test_patient_sees_who_looked_at_their_data(client, world):
    _reads(world)
    r = client.get("/api/v1/me/access-log", headers=world.h["patient"])
    assert r.status_code == 200
    body = r.get_json()
    assert len(body) == 1
    assert body[0]["actor_name"] == world.therapist.display_name
    assert body[0]["actor_role"] == "therapist"
    assert body[0]["resource_type"] == "outcomes"
    assert body[0]["occurred_at"].endswith("Z")
    # Another patient sees nothing of this.
    assert client.get("/api/v1/me/access-log", headers=world.h["other_patient"]).get_json() == []


def test_access_log_authorisation(client, world):
    assert_error(client.get("/api/v1/me/access-log"), 401)
    assert_error(client.get("/api/v1/me/access-log", headers=world.h["therapist"]), 403)
    assert_error(client.get("/api/v1/me/access-log", headers=world.h["owner"]), 403)


def test_owner_queries_audit_log(client, world, clock):
    _reads(world)
    r = client.get(f"/api/v1/audit?patient_id={world.patient.id}", headers=world.h["owner"])
    assert r.status_code == 200
    assert [e["patient_id"] for e in r.get_json()] == [world.patient.id]
    r = client.get(f"/api/v1/audit?actor_id={world.other_therapist.id}", headers=world.h["owner"])
    assert [e["actor_id"] for e in r.get_json()] == [world.other_therapist.id]
    r = client.get("/api/v1/audit?from=2026-03-03T00:00:00Z", headers=world.h["owner"])
    assert r.get_json() == []
    r = client.get(
        "/api/v1/audit?from=2026-03-01T00:00:00Z&to=2026-03-03T00:00:00Z", headers=world.h["owner"]
    )
    assert len(r.get_json()) == 2


def test_audit_log_authorisation_and_bad_input(client, world):
    assert_error(client.get("/api/v1/audit"), 401)
    for who in ("therapist", "patient"):
        assert_error(client.get("/api/v1/audit", headers=world.h[who]), 403)
    assert_error(client.get("/api/v1/audit?from=yesterday", headers=world.h["owner"]), 422, "from")
    assert_error(
        client.get(
            "/api/v1/audit?from=2026-03-05T00:00:00Z&to=2026-03-01T00:00:00Z",
            headers=world.h["owner"],
        ),
        422,
        "from",
    )


def test_audit_rows_cannot_be_changed_through_the_service(client, world):
    _reads(world)
    for method in ("put", "patch", "delete"):
        r = getattr(client, method)("/api/v1/audit", headers=world.h["owner"])
        assert r.status_code == 405


def test_audit_times_outside_what_utc_can_write_are_refused(client, world):
    h = world.h["owner"]
    r = client.get("/api/v1/audit?to=9999-12-31T23:59:59-12:00", headers=h)
    assert_error(r, 422, "to")
    r = client.get("/api/v1/audit?from=0001-01-01T00:00:00%2B01:00", headers=h)
    assert_error(r, 422, "from")
    # The last instant UTC can write is still a valid bound.
    r = client.get("/api/v1/audit?from=0001-01-01T00:00:00Z&to=9999-12-31T23:59:59Z", headers=h)
    assert r.status_code == 200, r.get_json()
