"""Fixtures for the outcomes tests: complete answer sets and a submit helper."""

from __future__ import annotations

import pytest

ODI_EXAMPLE = dict(
    zip([f"odi{n}" for n in range(1, 11)], [2, 1, 3, 2, 1, 2, 1, 0, 2, 2], strict=True)
)

BASELINE_ANSWERS = {
    "odi": ODI_EXAMPLE,
    "nrs": {"back_pain": 6, "leg_pain": 3},
    "eq5d5l": {
        "mobility": 2,
        "self_care": 1,
        "usual_activities": 3,
        "pain_discomfort": 3,
        "anxiety_depression": 2,
        "vas": 55,
    },
    "psfs": {
        "activity1": "Tuinieren",
        "rating1": 3,
        "activity2": "Fietsen naar het werk",
        "rating2": 4,
        "activity3": "Met de kleinkinderen spelen",
        "rating3": 2,
    },
    "cpaq8": {f"cpaq{n}": v for n, v in zip(range(1, 9), [3, 4, 2, 3, 4, 3, 2, 4], strict=True)},
    "startback": {
        "sbt1": 1,
        "sbt2": 0,
        "sbt3": 1,
        "sbt4": 1,
        "sbt5": 1,
        "sbt6": 0,
        "sbt7": 0,
        "sbt8": 0,
        "sbt9": 2,
    },
    "careuse": {
        "gp_visits": 2,
        "physio_visits": 6,
        "specialist_visits": 1,
        "other_visits": 0,
        "imaging": 1,
        "medication": "simple",
        "work_status": "sick_leave",
        "sick_leave_days": 12,
    },
}


class Submitter:
    def __init__(self, client):
        self.client = client

    def __call__(self, headers, key, answers, timepoint=None, **extra_headers):
        body = {"answers": answers}
        if timepoint is not None:
            body["timepoint"] = timepoint
        return self.client.post(
            f"/api/v1/me/questionnaires/{key}/responses",
            json=body,
            headers={**headers, **extra_headers},
        )

    def baseline(self, headers, skip=()):
        """Submit every baseline questionnaire (except those in `skip`); return the scores."""
        scores = {}
        for key, answers in BASELINE_ANSWERS.items():
            if key in skip:
                continue
            response = self(headers, key, answers)
            assert response.status_code == 201, response.get_json()
            scores[key] = response.get_json()["scores"]
        return scores


@pytest.fixture
def submit(client):
    return Submitter(client)
