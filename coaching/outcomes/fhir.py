"""FHIR R4 views of the questionnaires and of a patient's responses and scores.

- `Questionnaire/<key>`: the definition with its items; choice answers as Codings of a code system
  per item (`<base>/CodeSystem/<key>-<link_id>`), integer ranges as the standard `minValue` /
  `maxValue` extensions, text items as `string` with `maxLength`.
- `patient_bundle()`: a `Bundle` of type `collection` with each `QuestionnaireResponse` (its time
  point in the extension `<base>/StructureDefinition/timepoint`) and one `Observation` per computed
  score, `derivedFrom` that response. The NRS pain scores carry LOINC 72514-3 (pain severity 0–10
  numeric rating) besides the local code `<key>.<score>` of `<base>/CodeSystem/scores`.

`<base>` is `FHIR_BASE_URL` from the config, or this server's `/api/v1/fhir`. Resources are plain
dicts; the tests validate them with the `fhir.resources` R4B models.
"""

from __future__ import annotations

import uuid

from flask import current_app, request

from coaching import clock
from coaching.accounts.models import Account
from coaching.db import utc_iso
from coaching.outcomes import definitions
from coaching.outcomes.definitions import Definition, pick

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
PAIN_NRS_LOINC = {
    "system": LOINC,
    "code": "72514-3",
    "display": "Pain severity - 0-10 verbal numeric rating [Score] - Reported",
}
BODY_SITES = {
    "back_pain": {"nl": "Rug", "en": "Back"},
    "leg_pain": {"nl": "Been", "en": "Leg"},
}
SURVEY = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "survey",
            "display": "Survey",
        }
    ]
}
ITEM_TYPES = {"choice": "choice", "integer": "integer", "text": "string"}


def base_url() -> str:
    """Returns the base of this server's FHIR URLs."""
    configured = current_app.config.get("FHIR_BASE_URL")
    if configured:
        return configured.rstrip("/")
    return request.url_root.rstrip("/") + "/api/v1/fhir"


def _answer_system(base: str, key: str, link_id: str) -> str:
    return f"{base}/CodeSystem/{key}-{link_id}"


def questionnaire_url(base: str, key: str) -> str:
    """Returns the canonical URL of a questionnaire."""
    return f"{base}/Questionnaire/{key}"


def questionnaire_resource(definition: Definition, locale: str, base: str) -> dict:
    """Returns a FHIR R4 Questionnaire of a definition, its text in a locale."""
    items = []
    for item in definition.items:
        entry = {
            "linkId": item.link_id,
            "text": pick(item.text, locale),
            "type": ITEM_TYPES[item.type],
            "required": item.required,
        }
        if item.options:
            system = _answer_system(base, definition.key, item.link_id)
            entry["answerOption"] = [
                {
                    "valueCoding": {
                        "system": system,
                        "code": str(o.value),
                        "display": pick(o.label, locale),
                    }
                }
                for o in item.options
            ]
        if item.type == "integer":
            entry["extension"] = [
                {
                    "url": "http://hl7.org/fhir/StructureDefinition/minValue",
                    "valueInteger": item.min,
                },
                {
                    "url": "http://hl7.org/fhir/StructureDefinition/maxValue",
                    "valueInteger": item.max,
                },
            ]
        if item.max_length is not None:
            entry["maxLength"] = item.max_length
        items.append(entry)
    return {
        "resourceType": "Questionnaire",
        "id": definition.key,
        "url": questionnaire_url(base, definition.key),
        "version": definition.version,
        "name": definition.key.upper(),
        "title": pick(definition.title, locale),
        "status": "active",
        "subjectType": ["Patient"],
        "language": locale,
        "description": pick(definition.description, locale),
        "copyright": pick(definition.copyright, locale),
        "item": items,
    }


def _answer(definition: Definition, link_id: str, value, base: str, locale: str) -> dict:
    item = definition.by_link_id[link_id]
    if item.type == "choice":
        label = next(o.label for o in item.options if o.value == value)
        return {
            "valueCoding": {
                "system": _answer_system(base, definition.key, link_id),
                "code": str(value),
                "display": pick(label, locale),
            }
        }
    if item.type == "integer":
        return {"valueInteger": value}
    return {"valueString": value}


def response_resource(response, patient: Account, base: str, locale: str) -> dict:
    """Returns a FHIR R4 QuestionnaireResponse of a stored response."""
    definition = definitions.get(response.questionnaire_key)
    items = [
        {
            "linkId": item.link_id,
            "text": pick(item.text, locale),
            "answer": [
                _answer(definition, item.link_id, response.answers[item.link_id], base, locale)
            ],
        }
        for item in definition.items
        if response.answers.get(item.link_id) is not None
    ]
    return {
        "resourceType": "QuestionnaireResponse",
        "id": response.id,
        "extension": [
            {"url": f"{base}/StructureDefinition/timepoint", "valueCode": response.timepoint}
        ],
        "questionnaire": f"{questionnaire_url(base, definition.key)}|{response.questionnaire_version}",
        "status": "completed",
        "subject": {"reference": f"Patient/{patient.id}"},
        "authored": utc_iso(response.submitted_at),
        "item": items,
    }


def observation_id(response_id: str, name: str) -> str:
    """Returns a stable FHIR id for one score of one response."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"questionnaire-score:{response_id}:{name}"))


def observation_resource(response, score, patient: Account, base: str, locale: str) -> dict:
    """Returns a FHIR R4 Observation of one stored score, derived from its response."""
    definition = definitions.get(response.questionnaire_key)
    score_def = definition.score(score.name)
    local = {
        "system": f"{base}/CodeSystem/scores",
        "code": f"{definition.key}.{score.name}",
        "display": pick(score_def.label, "en"),
    }
    codings = [local]
    resource = {
        "resourceType": "Observation",
        "id": observation_id(response.id, score.name),
        "status": "final",
        "category": [SURVEY],
        "code": {"coding": codings, "text": pick(score_def.label, locale)},
        "subject": {"reference": f"Patient/{patient.id}"},
        "effectiveDateTime": utc_iso(response.submitted_at),
        "issued": utc_iso(response.submitted_at),
        "derivedFrom": [{"reference": f"QuestionnaireResponse/{response.id}"}],
    }
    if definition.key == "nrs":
        codings.insert(0, PAIN_NRS_LOINC)
        resource["bodySite"] = {"text": pick(BODY_SITES[score.name], locale)}
    value = score.typed_value()
    if score_def.type == "text":
        resource["valueString"] = value
    elif score_def.unit == "%":
        resource["valueQuantity"] = {"value": value, "unit": "%", "system": UCUM, "code": "%"}
    elif score_def.type == "integer":
        resource["valueInteger"] = value
    else:
        resource["valueQuantity"] = {
            "value": value,
            "unit": "score",
            "system": UCUM,
            "code": "{score}",
        }
    return resource


def patient_bundle(patient: Account, responses, locale: str, base: str) -> dict:
    """Returns a FHIR R4 collection Bundle of a patient's responses and an Observation per score."""
    entries = []
    for response in responses:
        entries.append(
            {
                "fullUrl": f"{base}/QuestionnaireResponse/{response.id}",
                "resource": response_resource(response, patient, base, locale),
            }
        )
        for score in response.scores:
            observation = observation_resource(response, score, patient, base, locale)
            entries.append(
                {"fullUrl": f"{base}/Observation/{observation['id']}", "resource": observation}
            )
    bundle = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "type": "collection",
        "timestamp": utc_iso(clock.now()),
    }
    if entries:  # FHIR JSON never holds empty arrays
        bundle["entry"] = entries
    return bundle
