"""Questionnaires through the HTTP API: every INSTRUMENTS.md example, bad input naming the item,
the schedule with its windows, time points, PSFS follow-ups, outcomes and meaningful change."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from coaching.extensions import db
from coaching.metrics.models import PatientActivity, UptakeEvent
from coaching.outcomes.models import QuestionnaireResponse, QuestionnaireScore
from tests.conftest import assert_error
from tests.outcomes.conftest import BASELINE_ANSWERS, ODI_EXAMPLE

MONTH3 = datetime(2026, 6, 2, 9, 0, tzinfo=UTC)  # enrolment started on 2026-03-02


def _count(model) -> int:
    return db.session.execute(select(func.count()).select_from(model)).scalar_one()


def _stored_scores(response_id: str) -> dict:
    rows = db.session.execute(
        select(QuestionnaireScore).where(QuestionnaireScore.response_id == response_id)
    ).scalars()
    return {r.name: r.typed_value() for r in rows}


# --- every example of INSTRUMENTS.md through the API ----------------------------------------------


def test_odi_example_gives_32_moderate_and_is_stored_unrounded(world, submit):
    response = submit(world.h["patient"], "odi", ODI_EXAMPLE)
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["key"] == "odi"
    assert body["timepoint"] == "baseline"
    assert body["submitted_at"] == "2026-03-02T09:00:00Z"
    assert body["scores"] == {"odi_percent": 32.0, "band": "moderate"}
    assert _stored_scores(body["id"]) == {"odi_percent": 32.0, "band": "moderate"}


def test_odi_with_missing_sections_is_stored_unrounded(world, submit):
    answers = {f"odi{n}": v for n, v in zip(range(1, 10), [1, 1, 1, 1, 1, 1, 1, 0, 0], strict=True)}
    body = submit(world.h["patient"], "odi", answers | {"odi10": None}).get_json()
    assert body["scores"] == {"odi_percent": 700 / 45, "band": "minimal"}
    assert _stored_scores(body["id"])["odi_percent"] == 700 / 45  # 15.555…, not 15.6


@pytest.mark.parametrize(
    ("levels", "index"),
    [((1, 1, 1, 1, 1), 1.0), ((5, 5, 5, 5, 5), -0.446), ((2, 1, 3, 3, 2), 0.669)],
)
def test_eq5d5l_anchors_with_the_dutch_value_set(world, submit, levels, index):
    dims = ["mobility", "self_care", "usual_activities", "pain_discomfort", "anxiety_depression"]
    answers = dict(zip(dims, levels, strict=True)) | {"vas": 73}
    body = submit(world.h["patient"], "eq5d5l", answers).get_json()
    state = "".join(map(str, levels))
    assert body["scores"] == {"state": state, "index": index, "vas": 73}
    assert _stored_scores(body["id"]) == {"state": state, "index": index, "vas": 73}


def test_nrs_psfs_cpaq8_startback_and_careuse_examples(world, submit):
    scores = submit.baseline(world.h["patient"], skip=("odi", "eq5d5l"))
    assert scores["nrs"] == {"back_pain": 6, "leg_pain": 3}
    assert scores["psfs"] == {"mean": 3.0}
    assert scores["cpaq8"] == {"total": 23, "activity_engagement": 12, "pain_willingness": 11}
    assert scores["startback"] == {"total": 4, "psychosocial": 1, "risk": "medium"}
    assert scores["careuse"] == BASELINE_ANSWERS["careuse"] | {"total_visits": 9}


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        ([1, 1, 1, 0, 0, 0, 0, 0, 2], {"total": 3, "psychosocial": 0, "risk": "low"}),
        ([0, 0, 0, 0, 1, 1, 1, 0, 4], {"total": 4, "psychosocial": 4, "risk": "high"}),
        ([1, 1, 1, 1, 0, 0, 0, 0, 3], {"total": 5, "psychosocial": 1, "risk": "medium"}),
    ],
)
def test_startback_risk_groups(world, submit, answers, expected):
    items = {f"sbt{n}": v for n, v in zip(range(1, 10), answers, strict=True)}
    assert submit(world.h["patient"], "startback", items).get_json()["scores"] == expected


def test_psfs_mean_with_five_activities_is_unrounded(world, submit):
    answers = {}
    for n, rating in zip(range(1, 6), [1, 2, 2, 3, 3], strict=True):
        answers |= {f"activity{n}": f"Activiteit {n}", f"rating{n}": rating}
    assert submit(world.h["patient"], "psfs", answers).get_json()["scores"] == {"mean": 2.2}
    # Three pairs with a repeating mean.
    other = {f"activity{n}": "x" for n in (1, 2, 3)} | {"rating1": 1, "rating2": 1, "rating3": 2}
    h = world.h["other_patient"]
    assert submit(h, "psfs", other).get_json()["scores"] == {"mean": 4 / 3}


# --- bad input: 422 naming the item, nothing stored ------------------------------------------------


@pytest.mark.parametrize(
    ("key", "answers", "field"),
    [
        ("odi", ODI_EXAMPLE | {"odi3": 6}, "answers.odi3"),
        ("odi", ODI_EXAMPLE | {"odi3": -1}, "answers.odi3"),
        ("odi", ODI_EXAMPLE | {"odi3": "2"}, "answers.odi3"),
        ("odi", ODI_EXAMPLE | {"odi3": 2.5}, "answers.odi3"),
        ("odi", ODI_EXAMPLE | {"odi3": True}, "answers.odi3"),
        ("odi", ODI_EXAMPLE | {"odi3": [2]}, "answers.odi3"),
        ("odi", ODI_EXAMPLE | {"odi11": 2}, "answers.odi11"),
        ("odi", {f"odi{n}": 1 for n in range(1, 8)}, "answers.odi8"),
        ("nrs", {"back_pain": 5}, "answers.leg_pain"),
        ("nrs", {"back_pain": 11, "leg_pain": 2}, "answers.back_pain"),
        ("nrs", {"back_pain": 4, "leg_pain": None}, "answers.leg_pain"),
        ("eq5d5l", BASELINE_ANSWERS["eq5d5l"] | {"vas": 101}, "answers.vas"),
        ("eq5d5l", BASELINE_ANSWERS["eq5d5l"] | {"mobility": 0}, "answers.mobility"),
        ("psfs", BASELINE_ANSWERS["psfs"] | {"rating2": 11}, "answers.rating2"),
        ("psfs", BASELINE_ANSWERS["psfs"] | {"activity1": "x" * 201}, "answers.activity1"),
        ("psfs", BASELINE_ANSWERS["psfs"] | {"activity1": "   "}, "answers.activity1"),
        ("psfs", BASELINE_ANSWERS["psfs"] | {"activity4": "Lopen"}, "answers.rating4"),
        ("psfs", {"activity1": "a", "rating1": 2, "activity2": "b"}, "answers.rating2"),
        ("cpaq8", BASELINE_ANSWERS["cpaq8"] | {"cpaq4": 7}, "answers.cpaq4"),
        ("startback", BASELINE_ANSWERS["startback"] | {"sbt9": 5}, "answers.sbt9"),
        ("startback", BASELINE_ANSWERS["startback"] | {"sbt1": 2}, "answers.sbt1"),
        ("careuse", BASELINE_ANSWERS["careuse"] | {"medication": "morphine"}, "answers.medication"),
        (
            "careuse",
            BASELINE_ANSWERS["careuse"] | {"sick_leave_days": 93},
            "answers.sick_leave_days",
        ),
        ("careuse", BASELINE_ANSWERS["careuse"] | {"imaging": "yes"}, "answers.imaging"),
    ],
)
def test_bad_answers_are_refused_naming_the_item(world, submit, key, answers, field):
    response = submit(world.h["patient"], key, answers)
    body = assert_error(response, 422, field=field)
    assert field.removeprefix("answers.") in body["message"]
    assert _count(QuestionnaireResponse) == 0
    assert _count(QuestionnaireScore) == 0
    assert _count(PatientActivity) == 0


def test_too_few_odi_sections_names_every_missing_section(world, submit):
    response = submit(world.h["patient"], "odi", {f"odi{n}": 1 for n in range(1, 8)})
    body = assert_error(response, 422)
    assert set(body["errors"]) == {"answers.odi8", "answers.odi9", "answers.odi10"}


def test_psfs_needs_three_pairs(world, submit):
    answers = {"activity1": "a", "rating1": 1, "activity2": "b", "rating2": 4}
    answers |= {"activity3": None, "rating3": None}
    assert_error(submit(world.h["patient"], "psfs", answers), 422, field="answers.activity3")


def test_bad_bodies(world, client, submit):
    h = world.h["patient"]
    url = "/api/v1/me/questionnaires/nrs/responses"
    assert_error(client.post(url, data="{", headers=h, content_type="application/json"), 400)
    assert_error(client.post(url, json={}, headers=h), 422, field="answers")
    assert_error(client.post(url, json={"answers": [1, 2]}, headers=h), 422, field="answers")
    assert_error(client.post(url, json={"answers": "x"}, headers=h), 422, field="answers")
    nrs = BASELINE_ANSWERS["nrs"]
    assert_error(client.post(url, json={"answers": nrs, "extra": 1}, headers=h), 422, field="extra")
    assert_error(submit(h, "nrs", nrs, timepoint="month5"), 422, field="timepoint")
    assert_error(submit(h, "nrs", nrs | {"x" * 41: 1}), 422, field="answers." + "x" * 41)
    too_many = nrs | {f"item{n}": 1 for n in range(40)}
    assert_error(submit(h, "nrs", too_many), 422, field="answers")
    assert_error(submit(h, "nope", nrs), 404)
    assert _count(QuestionnaireResponse) == 0


def test_idempotency_key_replays_the_first_answer(world, submit):
    h = world.h["patient"]
    first = submit(h, "nrs", BASELINE_ANSWERS["nrs"], **{"Idempotency-Key": "k-1"})
    again = submit(h, "nrs", BASELINE_ANSWERS["nrs"], **{"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 201
    assert first.get_json() == again.get_json()
    assert _count(QuestionnaireResponse) == 1


# --- questionnaires -------------------------------------------------------------------------------


def test_list_and_show_questionnaires_in_the_account_locale(world, client, make):
    listed = client.get("/api/v1/questionnaires", headers=world.h["patient"]).get_json()
    assert [q["key"] for q in listed] == [
        "odi",
        "nrs",
        "eq5d5l",
        "psfs",
        "cpaq8",
        "startback",
        "careuse",
    ]
    assert {"key", "title", "version"} <= set(listed[0])
    odi = client.get("/api/v1/questionnaires/odi", headers=world.h["therapist"]).get_json()
    assert odi["items"][2]["text"] == "ODI onderdeel 3 — tillen"
    assert odi["items"][2]["options"][0] == {"value": 0, "label": "0"}
    assert odi["items"][2]["type"] == "choice"
    assert "Fairbank" in odi["copyright"]
    english = client.get("/api/v1/questionnaires/odi?locale=en", headers=world.h["owner"])
    assert english.get_json()["items"][2]["text"] == "ODI section 3 — lifting"
    en_patient = make.patient(world.therapist, locale="en")
    nrs = client.get("/api/v1/questionnaires/nrs", headers=make.headers(en_patient)).get_json()
    assert nrs["items"][0] == {
        "link_id": "back_pain",
        "text": nrs["items"][0]["text"],
        "type": "integer",
        "min": 0,
        "max": 10,
        "required": True,
    }
    assert nrs["items"][0]["text"].startswith("How much pain")
    careuse = client.get("/api/v1/questionnaires/careuse", headers=world.h["patient"]).get_json()
    medication = next(i for i in careuse["items"] if i["link_id"] == "medication")
    assert [o["value"] for o in medication["options"]] == ["none", "simple", "opioid"]
    assert_error(client.get("/api/v1/questionnaires/nope", headers=world.h["patient"]), 404)
    assert_error(client.get("/api/v1/questionnaires?locale=fr", headers=world.h["patient"]), 422)


# --- schedule and time points ---------------------------------------------------------------------


def test_due_list_follows_the_schedule_and_windows(world, client, clock, make, submit):
    patient = world.patient

    def due():
        response = client.get("/api/v1/me/questionnaires/due", headers=make.headers(patient))
        assert response.status_code == 200
        return response.get_json()

    baseline = due()
    assert [d["key"] for d in baseline] == list(BASELINE_ANSWERS)
    assert {(d["timepoint"], d["due_on"], d["status"]) for d in baseline} == {
        ("baseline", "2026-03-02", "due")
    }
    clock.set(datetime(2026, 3, 16, 9, tzinfo=UTC))  # day 14: overdue
    assert {d["status"] for d in due()} == {"overdue"}
    submit.baseline(make.headers(patient))
    assert due() == []
    clock.set(datetime(2026, 5, 18, 9, tzinfo=UTC))  # the day before month3 opens
    assert due() == []
    clock.set(datetime(2026, 5, 19, 9, tzinfo=UTC))
    month3 = due()
    assert [d["key"] for d in month3] == ["odi", "nrs", "eq5d5l", "psfs", "cpaq8", "careuse"]
    assert {(d["timepoint"], d["due_on"], d["status"]) for d in month3} == {
        ("month3", "2026-06-02", "due")
    }
    clock.set(datetime(2026, 6, 17, 9, tzinfo=UTC))
    assert {d["status"] for d in due()} == {"overdue"}
    clock.set(datetime(2026, 7, 15, 9, tzinfo=UTC))  # 43 days late: missed, no longer due
    assert due() == []
    schedule = client.get("/api/v1/me/questionnaires/schedule", headers=make.headers(patient))
    statuses = {(e["key"], e["timepoint"]): e["status"] for e in schedule.get_json()}
    assert statuses[("odi", "baseline")] == "completed"
    assert statuses[("odi", "month3")] == "missed"
    assert statuses[("odi", "month6")] == "upcoming"
    assert ("startback", "month3") not in statuses
    month12 = next(e for e in schedule.get_json() if e["timepoint"] == "month12")
    assert (month12["due_on"], month12["opens_on"], month12["closes_on"]) == (
        "2027-03-02",
        "2027-02-16",
        "2027-04-13",
    )


def test_missed_baseline_is_refused(world, clock, make, submit):
    clock.set(datetime(2026, 3, 30, 9, tzinfo=UTC))  # day 28
    response = submit(make.headers(world.patient), "nrs", BASELINE_ANSWERS["nrs"])
    assert_error(response, 422, field="timepoint", contains="no time point")


def test_timepoint_is_inferred_or_checked(world, clock, make, submit):
    submit.baseline(world.h["patient"])
    assert_error(submit(world.h["patient"], "nrs", {"back_pain": 5, "leg_pain": 2}), 409)
    clock.set(MONTH3)
    h = make.headers(world.patient)
    nrs = {"back_pain": 5, "leg_pain": 2}
    assert_error(submit(h, "nrs", nrs, timepoint="baseline"), 409)
    assert_error(submit(h, "nrs", nrs, timepoint="month6"), 422, field="timepoint")
    assert_error(submit(h, "startback", BASELINE_ANSWERS["startback"]), 422, field="timepoint")
    assert_error(
        submit(h, "startback", BASELINE_ANSWERS["startback"], timepoint="month3"),
        422,
        field="timepoint",
    )
    inferred = submit(h, "nrs", nrs)
    assert inferred.status_code == 201
    assert inferred.get_json()["timepoint"] == "month3"
    given = submit(h, "odi", ODI_EXAMPLE, timepoint="month3")
    assert given.get_json()["timepoint"] == "month3"
    assert_error(submit(h, "odi", ODI_EXAMPLE), 409)


def test_psfs_follow_up_presents_the_baseline_activities(world, client, clock, make, submit):
    baseline = BASELINE_ANSWERS["psfs"] | {"activity4": "Autorijden", "rating4": 5}
    assert submit(world.h["patient"], "psfs", baseline).status_code == 201
    clock.set(MONTH3)
    h = make.headers(world.patient)
    shown = client.get("/api/v1/questionnaires/psfs", headers=h).get_json()
    assert [i["link_id"] for i in shown["items"]] == [
        f"{kind}{n}" for n in range(1, 5) for kind in ("activity", "rating")
    ]
    assert shown["items"][0]["initial"] == "Tuinieren"
    assert shown["items"][0]["read_only"] is True
    assert all(i["required"] for i in shown["items"])
    assert_error(
        submit(h, "psfs", {"rating1": 6, "rating2": 7, "rating3": 5}), 422, field="answers.rating4"
    )
    assert_error(
        submit(
            h,
            "psfs",
            {"activity1": "Hardlopen", "rating1": 6, "rating2": 7, "rating3": 5, "rating4": 6},
        ),
        422,
        field="answers.activity1",
    )
    assert_error(
        submit(
            h,
            "psfs",
            {"rating1": 6, "rating2": 7, "rating3": 5, "rating4": 6}
            | {"activity5": "Zwemmen", "rating5": 3},
        ),
        422,
        field="answers.activity5",
    )
    ratings = {"activity1": "tuinieren ", "rating1": 6, "rating2": 7, "rating3": 5, "rating4": 6}
    response = submit(h, "psfs", ratings)
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["scores"] == {"mean": 6.0}
    stored = db.session.get(QuestionnaireResponse, response.get_json()["id"])
    assert stored.answers["activity1"] == "Tuinieren"
    assert stored.answers["activity4"] == "Autorijden"


def test_baseline_completed_is_recorded_once_every_baseline_instrument_is_in(world, submit):
    def events():
        return db.session.execute(
            select(UptakeEvent).where(
                UptakeEvent.patient_id == world.patient.id,
                UptakeEvent.name == "baseline_completed",
            )
        ).all()

    submit.baseline(world.h["patient"], skip=("careuse",))
    assert events() == []
    activities = db.session.execute(
        select(func.count()).where(
            PatientActivity.patient_id == world.patient.id, PatientActivity.kind == "questionnaire"
        )
    ).scalar_one()
    assert activities == 6
    assert submit(world.h["patient"], "careuse", BASELINE_ANSWERS["careuse"]).status_code == 201
    assert len(events()) == 1


# --- outcomes ------------------------------------------------------------------------------------


def _score(body, key, name):
    return next(s for s in body["scores"] if s["key"] == key and s["score"] == name)


def test_patient_and_therapist_see_change_and_meaningful_change(world, client, clock, make, submit):
    submit.baseline(world.h["patient"])  # ODI 32, back pain 6, leg pain 3, PSFS 3.0
    clock.set(MONTH3)
    h = make.headers(world.patient)
    better_odi = dict.fromkeys(ODI_EXAMPLE, 1)  # 20.0: 12 points and 37.5 % better
    assert submit(h, "odi", better_odi).status_code == 201
    assert submit(h, "nrs", {"back_pain": 5, "leg_pain": 1}).status_code == 201
    psfs = {"rating1": 5, "rating2": 6, "rating3": 4}  # mean 5.0: +2
    assert submit(h, "psfs", psfs).status_code == 201

    mine = client.get("/api/v1/me/outcomes", headers=h).get_json()
    odi = _score(mine, "odi", "odi_percent")
    assert [p["timepoint"] for p in odi["series"]] == ["baseline", "month3"]
    assert [p["value"] for p in odi["series"]] == [32.0, 20.0]
    assert odi["series"][1]["submitted_at"] == "2026-06-02T09:00:00Z"
    assert odi["baseline"] == 32.0
    assert odi["latest"] == 20.0
    assert odi["latest_timepoint"] == "month3"
    assert odi["change"] == -12.0
    assert odi["relative_change_percent"] == -37.5
    assert odi["mic"] == {"absolute": 10.0, "relative_percent": 30.0}
    assert (odi["mic_absolute_reached"], odi["mic_relative_reached"]) == (True, True)
    back = _score(mine, "nrs", "back_pain")
    assert back["change"] == -1
    assert (back["mic_absolute_reached"], back["mic_relative_reached"]) == (False, False)
    leg = _score(mine, "nrs", "leg_pain")
    # 3 → 1: 2 points (absolute reached) and 66.7 % (relative reached)
    assert (leg["mic_absolute_reached"], leg["mic_relative_reached"]) == (True, True)
    psfs_mean = _score(mine, "psfs", "mean")
    assert psfs_mean["change"] == 2.0
    assert (psfs_mean["mic_absolute_reached"], psfs_mean["mic_relative_reached"]) == (True, None)
    band = _score(mine, "odi", "band")
    assert [p["value"] for p in band["series"]] == ["moderate", "minimal"]
    assert band["change"] is None
    risk = _score(mine, "startback", "risk")
    assert [p["value"] for p in risk["series"]] == ["medium"]
    index = _score(mine, "eq5d5l", "index")
    assert index["series"][0]["value"] == 0.669
    assert index["latest"] is None

    theirs = client.get(
        f"/api/v1/patients/{world.patient.id}/outcomes", headers=make.headers(world.therapist)
    )
    assert theirs.status_code == 200
    assert theirs.get_json() == mine


def test_relative_and_absolute_criteria_are_reported_separately(world, clock, make, submit, client):
    def odi(total):
        levels = [min(5, max(0, total - 5 * n)) for n in range(10)]
        return {f"odi{n}": v for n, v in zip(range(1, 11), levels, strict=True)}

    submit(world.h["patient"], "odi", odi(6))  # 12 %
    submit(world.h["other_patient"], "odi", odi(20))  # 40 %
    clock.set(MONTH3)
    h, other = make.headers(world.patient), make.headers(world.other_patient)
    submit(h, "odi", odi(2))  # 4 %: 8 points (under 10) but 66.7 % better
    submit(other, "odi", odi(15))  # 30 %: exactly 10 points, but only 25 % better
    mine = _score(client.get("/api/v1/me/outcomes", headers=h).get_json(), "odi", "odi_percent")
    assert mine["change"] == -8.0
    assert (mine["mic_absolute_reached"], mine["mic_relative_reached"]) == (False, True)
    theirs = _score(
        client.get("/api/v1/me/outcomes", headers=other).get_json(), "odi", "odi_percent"
    )
    assert theirs["change"] == -10.0
    assert (theirs["mic_absolute_reached"], theirs["mic_relative_reached"]) == (True, False)


def test_relative_change_from_a_negative_baseline_keeps_the_direction(
    world, client, clock, make, submit
):
    """The EQ-5D-5L index can start below 0 (55555 is -0.446): going up to 1.0 is a change of
    +1.446, and relative to the baseline's size +324 %, not -324 %."""
    dims = ["mobility", "self_care", "usual_activities", "pain_discomfort", "anxiety_depression"]
    assert (
        submit(world.h["patient"], "eq5d5l", dict.fromkeys(dims, 5) | {"vas": 10}).status_code
        == 201
    )
    clock.set(MONTH3)
    h = make.headers(world.patient)
    assert submit(h, "eq5d5l", dict.fromkeys(dims, 1) | {"vas": 90}).status_code == 201
    index = _score(client.get("/api/v1/me/outcomes", headers=h).get_json(), "eq5d5l", "index")
    assert index["baseline"] == -0.446 and index["latest"] == 1.0
    assert index["change"] == pytest.approx(1.446)
    assert index["relative_change_percent"] == pytest.approx(100 * 1.446 / 0.446)


def test_the_questionnaire_lists_are_paginated_as_every_list(world, client):
    """API.md: lists are paginated with ?page=&page_size= (default 20, max 100) and X-Pagination."""
    h = world.h["patient"]
    for path in ("/questionnaires", "/me/questionnaires/due", "/me/questionnaires/schedule"):
        whole = client.get(f"/api/v1{path}?page_size=100", headers=h)
        assert whole.status_code == 200, path
        items = whole.get_json()
        total = len(items)
        pages = max(1, -(-total // 20))
        assert json.loads(whole.headers["X-Pagination"])["total"] == total
        collected = []
        for number in range(1, pages + 1):
            page = client.get(f"/api/v1{path}?page={number}", headers=h)
            assert json.loads(page.headers["X-Pagination"]) == {
                "total": total,
                "total_pages": pages,
                "page": number,
                "page_size": 20,
            }
            collected += page.get_json()
        assert collected == items
        if total >= 2:
            first = client.get(f"/api/v1{path}?page=1&page_size=1", headers=h)
            assert first.get_json() == items[:1]
            assert json.loads(first.headers["X-Pagination"])["total_pages"] == total
        assert_error(client.get(f"/api/v1{path}?page_size=101", headers=h), 422, "page_size")
