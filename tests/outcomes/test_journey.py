"""Tried as a new user would, through the HTTP API only: a patient registers, fills in the
baseline set, later the month-3 follow-up; patient and therapist see the change and whether it
is meaningful; the therapist downloads a FHIR bundle that validates. Plus random valid answers
through the API score exactly as the published rules."""

from __future__ import annotations

from datetime import UTC, datetime
from fractions import Fraction

from fhir.resources.R4B.bundle import Bundle
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete

from coaching.extensions import db
from coaching.outcomes.models import QuestionnaireResponse
from coaching.outcomes.scoring import EQ5D_DIMENSIONS, ODI_ITEMS, eq5d_index
from tests.conftest import PASSWORD
from tests.outcomes.conftest import BASELINE_ANSWERS

API = "/api/v1"


def _login(client, email):
    response = client.post(API + "/auth/token", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.get_json()
    return {"Authorization": f"Bearer {response.get_json()['access_token']}"}


def test_new_patient_baseline_then_month3_seen_by_both(client, clock, make):
    therapist = make.therapist()
    th = _login(client, therapist.email)
    invite = client.post(
        API + "/invites", json={"referral_source": "gp", "channel": "email"}, headers=th
    )
    tokens = client.post(
        API + "/patients",
        json={
            "invite_code": invite.get_json()["code"],
            "email": "sanne@example.test",
            "password": PASSWORD,
            "display_name": "Sanne",
            "locale": "nl",
            "timezone": "Europe/Amsterdam",
        },
    ).get_json()
    me = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert client.get(API + "/me/questionnaires/due", headers=me).status_code == 403  # consent
    version = client.get(API + "/consent").get_json()["version"]
    assert (
        client.post(API + "/me/consent", json={"version": version}, headers=me).status_code == 201
    )
    patient_id = client.get(API + "/me", headers=me).get_json()["id"]

    due = client.get(API + "/me/questionnaires/due", headers=me).get_json()
    assert [d["key"] for d in due] == list(BASELINE_ANSWERS)
    for item in due:
        form = client.get(f"{API}/questionnaires/{item['key']}", headers=me).get_json()
        answers = dict(BASELINE_ANSWERS[item["key"]])
        assert set(answers) <= {i["link_id"] for i in form["items"]}
        response = client.post(
            f"{API}/me/questionnaires/{item['key']}/responses",
            json={"answers": answers},
            headers=me,
        )
        assert response.status_code == 201
        assert response.get_json()["timepoint"] == "baseline"
    assert client.get(API + "/me/questionnaires/due", headers=me).get_json() == []

    clock.set(datetime(2026, 6, 1, 18, tzinfo=UTC))
    me = _login(client, "sanne@example.test")
    due = client.get(API + "/me/questionnaires/due", headers=me).get_json()
    assert {(d["timepoint"], d["status"]) for d in due} == {("month3", "due")}
    psfs = client.get(API + "/questionnaires/psfs", headers=me).get_json()
    assert [i.get("initial") for i in psfs["items"] if i["link_id"].startswith("activity")] == [
        "Tuinieren",
        "Fietsen naar het werk",
        "Met de kleinkinderen spelen",
    ]
    follow_up = {
        "odi": dict.fromkeys(ODI_ITEMS, 1),  # 32 → 20
        "nrs": {"back_pain": 3, "leg_pain": 2},  # 6 → 3
        "eq5d5l": dict.fromkeys(EQ5D_DIMENSIONS, 2) | {"vas": 75},
        "psfs": {"rating1": 6, "rating2": 7, "rating3": 5},  # 3 → 6
        "cpaq8": BASELINE_ANSWERS["cpaq8"] | {"cpaq1": 5, "cpaq4": 1},
        "careuse": BASELINE_ANSWERS["careuse"] | {"work_status": "working", "sick_leave_days": 0},
    }
    for item in due:
        response = client.post(
            f"{API}/me/questionnaires/{item['key']}/responses",
            json={"answers": follow_up[item["key"]]},
            headers=me,
        )
        assert response.status_code == 201, response.get_json()
        assert response.get_json()["timepoint"] == "month3"

    mine = client.get(API + "/me/outcomes", headers=me).get_json()
    by = {(s["key"], s["score"]): s for s in mine["scores"]}
    assert by[("odi", "odi_percent")]["change"] == -12.0
    assert by[("odi", "odi_percent")]["mic_absolute_reached"] is True
    assert by[("nrs", "back_pain")]["change"] == -3
    assert by[("nrs", "back_pain")]["mic_relative_reached"] is True
    assert by[("psfs", "mean")]["mic_absolute_reached"] is True
    assert by[("careuse", "sick_leave_days")]["change"] == -12

    th = _login(client, therapist.email)
    theirs = client.get(f"{API}/patients/{patient_id}/outcomes", headers=th)
    assert theirs.get_json() == mine
    bundle = client.get(f"{API}/patients/{patient_id}/fhir", headers=th)
    assert Bundle.model_validate(bundle.get_json()).type == "collection"


settings_api = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@settings_api
@given(
    odi=st.tuples(*[st.integers(0, 5)] * 10),
    left_out=st.sets(st.sampled_from(ODI_ITEMS), max_size=2),
    eq=st.tuples(*[st.integers(1, 5)] * 5),
    vas=st.integers(0, 100),
)
def test_random_valid_answers_score_exactly_through_the_api(world, client, odi, left_out, eq, vas):
    h = world.h["patient"]
    answers = {k: v for k, v in zip(ODI_ITEMS, odi, strict=True) if k not in left_out}
    body = client.post(
        f"{API}/me/questionnaires/odi/responses", json={"answers": answers}, headers=h
    ).get_json()
    exact = Fraction(100 * sum(answers.values()), 5 * len(answers))
    assert body["scores"]["odi_percent"] == float(exact)
    eq_answers = dict(zip(EQ5D_DIMENSIONS, eq, strict=True)) | {"vas": vas}
    body = client.post(
        f"{API}/me/questionnaires/eq5d5l/responses", json={"answers": eq_answers}, headers=h
    ).get_json()
    assert body["scores"] == {
        "state": "".join(map(str, eq)),
        "index": float(eq5d_index(eq)),
        "vas": vas,
    }
    db.session.execute(delete(QuestionnaireResponse))
    db.session.commit()
