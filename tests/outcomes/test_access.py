"""Who may call each outcomes endpoint: anonymous 401, wrong role 403, another patient's or another
therapist's data 404 (never 403), owners only aggregates (403 here); staff reads are audited."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from coaching.audit.models import AuditEntry
from coaching.extensions import db
from tests.conftest import assert_error
from tests.outcomes.conftest import BASELINE_ANSWERS

API = "/api/v1"

# Endpoints any signed-in account may call.
SHARED = [
    ("get", "/questionnaires"),
    ("get", "/questionnaires/odi"),
    ("get", "/fhir/Questionnaire/odi"),
]
# Patient-only endpoints about the caller themself.
PATIENT_ONLY = [
    ("get", "/me/questionnaires/due", None),
    ("get", "/me/questionnaires/schedule", None),
    ("post", "/me/questionnaires/nrs/responses", {"answers": BASELINE_ANSWERS["nrs"]}),
    ("get", "/me/outcomes", None),
    ("get", "/me/decision-aid", None),
    ("get", "/me/checkins", None),
    ("post", "/me/checkins", {"back_pain": 4}),
]
# Therapist endpoints about one patient: {pid} is replaced by a patient id.
ABOUT_PATIENT = [
    "/patients/{pid}/outcomes",
    "/patients/{pid}/fhir",
    "/patients/{pid}/decision-aid",
    "/patients/{pid}/checkins",
    "/patients/{pid}/alerts",
]
PATIENT_MAY_SEE_THEMSELF = {"/patients/{pid}/decision-aid"}


def _call(client, method, path, headers=None, body=None):
    kwargs = {"headers": headers or {}}
    if method == "post":
        kwargs["json"] = body if body is not None else {}
    return getattr(client, method)(API + path, **kwargs)


@pytest.mark.parametrize(("method", "path"), SHARED)
def test_shared_endpoints(world, client, make, method, path):
    assert_error(_call(client, method, path), 401)
    for name in ("patient", "therapist", "owner"):
        assert _call(client, method, path, world.h[name]).status_code == 200, name
    unconsented = make.patient(world.therapist, consented=False)
    assert_error(_call(client, method, path, make.headers(unconsented)), 403, contains="consent")


@pytest.mark.parametrize(("method", "path", "body"), PATIENT_ONLY)
def test_patient_endpoints(world, client, make, method, path, body):
    assert_error(_call(client, method, path, body=body), 401)
    assert_error(_call(client, method, path, world.h["therapist"], body), 403)
    assert_error(_call(client, method, path, world.h["owner"], body), 403)
    unconsented = make.patient(world.therapist, consented=False)
    assert_error(
        _call(client, method, path, make.headers(unconsented), body), 403, contains="consent"
    )
    response = _call(client, method, path, world.h["patient"], body)
    assert response.status_code == (201 if method == "post" else 200), response.get_json()


@pytest.mark.parametrize("template", ABOUT_PATIENT)
def test_endpoints_about_a_patient(world, client, template):
    path = template.format(pid=world.patient.id)
    assert_error(_call(client, "get", path), 401)
    assert_error(_call(client, "get", path, world.h["owner"]), 403)
    if template in PATIENT_MAY_SEE_THEMSELF:
        assert _call(client, "get", path, world.h["patient"]).status_code == 200
        assert_error(_call(client, "get", path, world.h["other_patient"]), 404)
    else:
        assert_error(_call(client, "get", path, world.h["patient"]), 403)
    # A colleague in the same practice and a therapist elsewhere: the patient does not exist.
    assert_error(_call(client, "get", path, world.h["colleague"]), 404)
    assert_error(_call(client, "get", path, world.h["other_therapist"]), 404)
    for pid in ("no-such-patient", world.therapist.id, world.foreign_patient.id):
        assert_error(_call(client, "get", template.format(pid=pid), world.h["therapist"]), 404)
    assert _call(client, "get", path, world.h["therapist"]).status_code == 200


@pytest.mark.parametrize("template", ABOUT_PATIENT)
def test_therapist_reads_are_audited(world, client, template):
    response = _call(client, "get", template.format(pid=world.patient.id), world.h["therapist"])
    assert response.status_code == 200
    entries = db.session.execute(select(AuditEntry)).scalars().all()
    assert len(entries) == 1
    entry = entries[0]
    assert (entry.actor_id, entry.patient_id) == (world.therapist.id, world.patient.id)
    assert entry.action == ("export" if template.endswith("/fhir") else "read")
    # Refused reads leave no trace of the patient.
    _call(client, "get", template.format(pid=world.patient.id), world.h["colleague"])
    assert len(db.session.execute(select(AuditEntry)).scalars().all()) == 1


def test_patients_reading_their_own_data_are_not_audited(world, client):
    own = _call(client, "get", f"/patients/{world.patient.id}/decision-aid", world.h["patient"])
    assert own.status_code == 200
    assert _call(client, "get", "/me/outcomes", world.h["patient"]).status_code == 200
    assert db.session.execute(select(AuditEntry)).first() is None


def _open_alert(world, make, submit, client):
    submit.baseline(world.h["patient"], skip=("odi", "eq5d5l", "psfs", "cpaq8", "careuse"))
    response = client.post(API + "/me/checkins", json={"back_pain": 9}, headers=world.h["patient"])
    assert response.status_code == 201
    alerts = client.get(API + "/alerts", headers=world.h["therapist"]).get_json()
    assert len(alerts) == 1
    return alerts[0]["id"]


def test_the_alert_list_is_an_audited_read(world, client, make, submit):
    alert_id = _open_alert(world, make, submit, client)  # lists the alerts once
    entries = db.session.execute(select(AuditEntry)).scalars().all()
    assert [
        (e.actor_id, e.patient_id, e.action, e.resource_type, e.resource_id) for e in entries
    ] == [(world.therapist.id, world.patient.id, "read", "outcome_alerts", alert_id)]
    # A colleague's empty list shows nobody's data.
    assert client.get(API + "/alerts", headers=world.h["colleague"]).get_json() == []
    assert len(db.session.execute(select(AuditEntry)).scalars().all()) == 1


def test_alert_list_and_acknowledge(world, client, make, submit):
    alert_id = _open_alert(world, make, submit, client)
    assert_error(client.get(API + "/alerts"), 401)
    assert_error(client.get(API + "/alerts", headers=world.h["patient"]), 403)
    assert_error(client.get(API + "/alerts", headers=world.h["owner"]), 403)
    for name in ("colleague", "other_therapist"):
        assert client.get(API + "/alerts", headers=world.h[name]).get_json() == []
    assert_error(client.get(API + "/alerts?status=closed", headers=world.h["therapist"]), 422)

    url = f"{API}/alerts/{alert_id}/acknowledge"
    assert_error(client.post(url, json={}), 401)
    assert_error(client.post(url, json={}, headers=world.h["patient"]), 403)
    assert_error(client.post(url, json={}, headers=world.h["owner"]), 403)
    assert_error(client.post(url, json={}, headers=world.h["colleague"]), 404)
    assert_error(client.post(url, json={}, headers=world.h["other_therapist"]), 404)
    assert_error(
        client.post(f"{API}/alerts/nope/acknowledge", json={}, headers=world.h["therapist"]), 404
    )
    assert_error(
        client.post(url, json={"note": "x" * 501}, headers=world.h["therapist"]), 422, "note"
    )
    assert_error(client.post(url, json={"extra": 1}, headers=world.h["therapist"]), 422, "extra")
    assert_error(
        client.post(url, data="{", content_type="application/json", headers=world.h["therapist"]),
        400,
    )
    done = client.post(url, json={"note": "Gebeld"}, headers=world.h["therapist"])
    assert done.status_code == 200
    assert done.get_json()["status"] == "acknowledged"


def test_checkin_bodies(world, client):
    h = world.h["patient"]
    url = API + "/me/checkins"
    assert_error(client.post(url, json={}, headers=h), 422, field="back_pain")
    assert_error(client.post(url, json={"back_pain": 11}, headers=h), 422, field="back_pain")
    assert_error(client.post(url, json={"back_pain": "5"}, headers=h), 422, field="back_pain")
    assert_error(client.post(url, json={"back_pain": 5.5}, headers=h), 422, field="back_pain")
    for flag in ("yes", 1, 0, 1.0):  # JSON true/false only (1 == True in Python)
        assert_error(
            client.post(url, json={"back_pain": 5, "did_committed_action": flag}, headers=h),
            422,
            field="did_committed_action",
        )
    assert_error(client.post(url, json={"back_pain": 5, "x": 1}, headers=h), 422, field="x")
    assert_error(client.post(url, data="[", content_type="application/json", headers=h), 400)
    response = client.post(url, json={"back_pain": 5, "did_committed_action": None}, headers=h)
    assert response.status_code == 201
