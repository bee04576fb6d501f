"""The FHIR R4 export, validated with the `fhir.resources` R4B models."""

from __future__ import annotations

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.questionnaire import Questionnaire
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse

from coaching.outcomes import definitions
from tests.conftest import assert_error
from tests.outcomes.conftest import BASELINE_ANSWERS
from tests.outcomes.test_api import MONTH3

API = "/api/v1"


@pytest.mark.parametrize("key", definitions.KEYS)
def test_every_questionnaire_is_a_valid_fhir_questionnaire(world, client, key):
    response = client.get(f"{API}/fhir/Questionnaire/{key}?locale=en", headers=world.h["therapist"])
    assert response.status_code == 200
    assert response.mimetype == "application/fhir+json"
    resource = response.get_json()
    questionnaire = Questionnaire.model_validate(resource)
    assert questionnaire.id == key
    assert questionnaire.url.endswith(f"/api/v1/fhir/Questionnaire/{key}")
    link_ids = [item.linkId for item in questionnaire.item]
    assert link_ids == [i.link_id for i in definitions.get(key).items]
    assert questionnaire.copyright


def test_questionnaire_details(world, client):
    q = client.get(f"{API}/fhir/Questionnaire/odi?locale=en", headers=world.h["patient"]).get_json()
    lifting = q["item"][2]
    assert lifting["text"] == "ODI section 3 — lifting"
    assert lifting["type"] == "choice"
    assert [o["valueCoding"]["code"] for o in lifting["answerOption"]] == list("012345")
    nrs = client.get(f"{API}/fhir/Questionnaire/nrs", headers=world.h["patient"]).get_json()
    assert nrs["item"][0]["type"] == "integer"
    assert {e["url"].rsplit("/", 1)[1]: e["valueInteger"] for e in nrs["item"][0]["extension"]} == {
        "minValue": 0,
        "maxValue": 10,
    }
    assert_error(client.get(f"{API}/fhir/Questionnaire/nope", headers=world.h["patient"]), 404)


def test_patient_bundle_validates_and_links_scores_to_responses(world, client, clock, make, submit):
    submit.baseline(world.h["patient"])
    clock.set(MONTH3)
    h = make.headers(world.patient)
    submit(h, "nrs", {"back_pain": 4, "leg_pain": 1})
    submit(h, "psfs", {"rating1": 5, "rating2": 6, "rating3": 4})

    response = client.get(
        f"{API}/patients/{world.patient.id}/fhir", headers=make.headers(world.therapist)
    )
    assert response.status_code == 200
    assert response.mimetype == "application/fhir+json"
    assert response.headers["Cache-Control"] == "no-store"
    data = response.get_json()
    bundle = Bundle.model_validate(data)
    assert bundle.type == "collection"

    responses = [
        e["resource"]
        for e in data["entry"]
        if e["resource"]["resourceType"] == "QuestionnaireResponse"
    ]
    observations = [
        e["resource"] for e in data["entry"] if e["resource"]["resourceType"] == "Observation"
    ]
    assert len(responses) == 9
    expected_scores = sum(len(definitions.get(k).scores) for k in BASELINE_ANSWERS) + 2 + 1
    assert len(observations) == expected_scores
    for resource in responses:
        QuestionnaireResponse.model_validate(resource)
        assert resource["subject"] == {"reference": f"Patient/{world.patient.id}"}
        assert resource["status"] == "completed"
    response_ids = {r["id"] for r in responses}
    for resource in observations:
        Observation.model_validate(resource)
        (derived,) = resource["derivedFrom"]
        kind, _, rid = derived["reference"].partition("/")
        assert kind == "QuestionnaireResponse" and rid in response_ids
    full_urls = [e["fullUrl"] for e in data["entry"]]
    assert len(set(full_urls)) == len(full_urls)

    pain = [o for o in observations if o["code"]["coding"][0]["code"] == "72514-3"]
    assert len(pain) == 4  # back and leg pain at baseline and month 3
    assert all(o["code"]["coding"][0]["system"] == "http://loinc.org" for o in pain)
    month3 = next(
        r
        for r in responses
        if r["extension"][0]["valueCode"] == "month3" and r["item"][0]["linkId"] == "back_pain"
    )
    back = next(
        o
        for o in pain
        if o["derivedFrom"][0]["reference"] == f"QuestionnaireResponse/{month3['id']}"
        and o["code"]["coding"][1]["code"] == "nrs.back_pain"
    )
    assert back["valueInteger"] == 4
    odi = next(o for o in observations if o["code"]["coding"][0]["code"] == "odi.odi_percent")
    assert odi["valueQuantity"] == {
        "value": 32.0,
        "unit": "%",
        "system": "http://unitsofmeasure.org",
        "code": "%",
    }
    index = next(o for o in observations if o["code"]["coding"][0]["code"] == "eq5d5l.index")
    assert index["valueQuantity"]["value"] == 0.669
    risk = next(o for o in observations if o["code"]["coding"][0]["code"] == "startback.risk")
    assert risk["valueString"] == "medium"
    psfs_follow_up = next(
        r
        for r in responses
        if r["extension"][0]["valueCode"] == "month3" and r["item"][0]["linkId"] == "activity1"
    )
    assert psfs_follow_up["item"][0]["answer"] == [{"valueString": "Tuinieren"}]
    odi_response = next(r for r in responses if r["item"][0]["linkId"] == "odi1")
    assert odi_response["item"][0]["answer"][0]["valueCoding"]["code"] == "2"
    assert odi_response["questionnaire"].endswith("/fhir/Questionnaire/odi|2.1a")


def test_empty_bundle_is_valid(world, client):
    data = client.get(
        f"{API}/patients/{world.patient.id}/fhir", headers=world.h["therapist"]
    ).get_json()
    assert Bundle.model_validate(data).type == "collection"
    assert "entry" not in data
