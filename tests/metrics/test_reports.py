"""The outcome benchmark and the coaching response times, with numbers worked out by hand."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from coaching.extensions import db
from coaching.messaging import service as messaging
from coaching.outcomes import service as outcomes
from tests.conftest import START, assert_error

# --- outcomes ----------------------------------------------------------------------------------


def odi(total: int) -> dict:
    """Returns ODI answers to all ten sections summing to `total` (percent = 2 × total)."""
    answers = {}
    for n in range(1, 11):
        answers[f"odi{n}"] = min(5, total)
        total -= answers[f"odi{n}"]
    return answers


def psfs(*ratings: int) -> dict:
    answers = {}
    for n, rating in enumerate(ratings, start=1):
        answers[f"activity{n}"], answers[f"rating{n}"] = f"activity {n}", rating
    return answers


def careuse(gp: int) -> dict:
    return {
        "gp_visits": gp,
        "physio_visits": 0,
        "specialist_visits": 0,
        "other_visits": 0,
        "imaging": 0,
        "medication": "none",
        "work_status": "working",
        "sick_leave_days": 0,
    }


def submit(patient, key, answers, timepoint, days=0):
    outcomes.submit_response(
        patient=patient,
        key=key,
        answers=answers,
        timepoint=timepoint,
        submitted_at=START + timedelta(days=days),
    )


@pytest.fixture
def scored(world, make):
    """Practice A: p1–p5 of `therapist`, p6 of `colleague`; practice B: three patients.

    | patient | ODI % b → m3 | NRS back b → m3 | PSFS mean b → m3 | care use GP b → m3 |
    |---|---|---|---|---|
    | p1 | 40 → 20 | 8 → 5 | 10/3 → 16/3 | 2 → 1 |
    | p2 | 30 → 24 | 6 → 5 | 4 → 5 | 2 → 1 |
    | p3 | 50 → 38 | 7 → 5 | 5 → 7 | 2 → 1 |
    | p4 | 20 → 12 | 3 → 2 | 6 → 5 | 2 → 1 |
    | p5 | 0 → 10 | 0 → 1 | 3 → 6 | – |
    | p6 | – | 10 → 7 | – | – |
    """
    a = [world.patient, world.other_patient] + [make.patient(world.therapist) for _ in range(3)]
    a.append(make.patient(world.colleague))
    b = [world.foreign_patient] + [make.patient(world.other_therapist) for _ in range(2)]
    odi_pairs = [(20, 10), (15, 12), (25, 19), (10, 6), (0, 5)]  # answer sums: percent / 2
    nrs_pairs = [(8, 5), (6, 5), (7, 5), (3, 2), (0, 1), (10, 7)]
    psfs_pairs = [((3, 3, 4), (5, 5, 6)), ((4, 4, 4), (5, 5, 5)), ((5, 5, 5), (7, 7, 7))]
    psfs_pairs += [((6, 6, 6), (5, 5, 5)), ((3, 3, 3), (6, 6, 6))]
    for patient, (before, after) in zip(a, odi_pairs, strict=False):
        submit(patient, "odi", odi(before), "baseline")
        submit(patient, "odi", odi(after), "month3", days=90)
    for patient, (before, after) in zip(a, nrs_pairs, strict=True):
        submit(patient, "nrs", {"back_pain": before, "leg_pain": 0}, "baseline")
        submit(patient, "nrs", {"back_pain": after, "leg_pain": 0}, "month3", days=90)
    for patient, (before, after) in zip(a, psfs_pairs, strict=False):
        submit(patient, "psfs", psfs(*before), "baseline")
        submit(patient, "psfs", psfs(*after), "month3", days=90)
    for patient in a[:4]:
        submit(patient, "careuse", careuse(2), "baseline")
        submit(patient, "careuse", careuse(1), "month3", days=90)
    # p1 also has month 6, and p2 a baseline only (not a pair).
    submit(a[0], "odi", odi(5), "month6", days=180)
    submit(
        a[1],
        "eq5d5l",
        {**dict.fromkeys(outcomes.scoring.EQ5D_DIMENSIONS, 2), "vas": 60},
        "baseline",
    )
    for patient in b:
        submit(patient, "odi", odi(20), "baseline")
        submit(patient, "odi", odi(5), "month3", days=90)
    db.session.commit()
    return a, b


def _score(practice: dict, key: str, name: str) -> dict:
    return next(s for s in practice["scores"] if s["key"] == key and s["score"] == name)


def test_outcomes_per_practice_by_hand(client, world, scored):
    r = client.get("/api/v1/metrics/outcomes", headers=world.h["owner"])
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["timepoint"] == "month3" and body["min_group_size"] == 5
    assert [p["label"] for p in body["practices"]] == ["Practice A", "Practice B"]
    a, b = body["practices"]
    assert a["practice_id"] == world.practice_a.id
    assert a["patients"] == 6 and a["suppressed"] is False
    # Practice B has 3 patients: nothing but that it is suppressed.
    assert b == {
        "practice_id": world.practice_b.id,
        "label": "Practice B",
        "patients": None,
        "suppressed": True,
        "scores": [],
    }

    odi_ = _score(a, "odi", "odi_percent")
    assert odi_ == {
        "key": "odi",
        "score": "odi_percent",
        "label": "ODI (%)",
        "better": "lower",
        "patients": 5,
        "suppressed": False,
        "mean_baseline": 28.0,  # (40 + 30 + 50 + 20 + 0) / 5
        "mean_follow_up": 20.8,  # (20 + 24 + 38 + 12 + 10) / 5
        "mean_change": -7.2,
        "mic_absolute": 10,
        "mic_relative_percent": 30,
        "share_mic_absolute": 0.4,  # p1 (20 points) and p3 (12)
        "share_mic_relative": 0.5,  # p1 (50 %) and p4 (40 %) of p1–p4; p5 starts at 0
    }
    back = _score(a, "nrs", "back_pain")
    assert back["patients"] == 6
    assert back["mean_baseline"] == round(34 / 6, 3)
    assert back["mean_follow_up"] == round(25 / 6, 3)
    assert back["mean_change"] == -1.5
    assert back["share_mic_absolute"] == 0.5  # p1 (3), p3 (exactly 2), p6 (3)
    assert back["share_mic_relative"] == 0.6  # p1 37.5 %, p4 33 %, p6 exactly 30 % of 5
    # PSFS (higher is better, 2 points on the mean): p1 10/3 → 16/3 is 1.9999999999999996 in
    # floating point and still counts, p3 +2, p5 +3.
    mean = _score(a, "psfs", "mean")
    assert mean["patients"] == 5 and mean["better"] == "higher"
    assert mean["mean_change"] == 1.4
    assert (mean["share_mic_absolute"], mean["share_mic_relative"]) == (0.6, None)
    assert mean["mic_relative_percent"] is None
    # Care use: four patients are fewer than five, so the score is suppressed in a shown practice.
    gp = _score(a, "careuse", "gp_visits")
    assert gp["suppressed"] is True and gp["patients"] is None and gp["mean_change"] is None
    # EQ-5D: one baseline, no follow-up.
    assert _score(a, "eq5d5l", "index")["suppressed"] is True
    # STarT Back is not asked at month 3; text scores are never compared.
    keys = {(s["key"], s["score"]) for s in a["scores"]}
    assert ("startback", "total") not in keys and ("odi", "band") not in keys
    assert ("careuse", "total_visits") in keys and ("careuse", "sick_leave_days") in keys


def test_outcomes_therapist_sees_own_patients(client, world, scored, make):
    r = client.get("/api/v1/metrics/outcomes", headers=world.h["therapist"])
    body = r.get_json()
    assert [p["practice_id"] for p in body["practices"]] == [world.practice_a.id]
    (a,) = body["practices"]
    assert a["patients"] == 5  # p6 belongs to the colleague
    back = _score(a, "nrs", "back_pain")
    assert (back["patients"], back["mean_baseline"], back["mean_follow_up"]) == (5, 4.8, 3.6)
    assert back["share_mic_absolute"] == 0.4  # p1, p3
    assert back["share_mic_relative"] == 0.5  # p1, p4 of p1–p4
    colleague = client.get("/api/v1/metrics/outcomes", headers=make.headers(world.colleague))
    assert colleague.get_json()["practices"][0]["suppressed"] is True


def test_outcomes_filters(client, world, scored):
    h = world.h["owner"]
    month6 = client.get("/api/v1/metrics/outcomes?timepoint=month6", headers=h).get_json()
    assert month6["timepoint"] == "month6"
    assert [(p["label"], p["suppressed"]) for p in month6["practices"]] == [("Practice A", True)]
    url = "/api/v1/metrics/outcomes?practice_id=" + world.practice_b.id
    assert [p["label"] for p in client.get(url, headers=h).get_json()["practices"]] == [
        "Practice B"
    ]
    # Dates select patients by the day their programme started (all on 2 March).
    later = client.get("/api/v1/metrics/outcomes?from=2026-03-03", headers=h).get_json()
    assert later["practices"] == []
    same = client.get("/api/v1/metrics/outcomes?from=2026-03-02&to=2026-03-02", headers=h)
    assert len(same.get_json()["practices"]) == 2
    assert_error(
        client.get("/api/v1/metrics/outcomes?timepoint=baseline", headers=h), 422, "timepoint"
    )
    assert_error(
        client.get("/api/v1/metrics/outcomes?timepoint=year5", headers=h), 422, "timepoint"
    )


def _nrs_back(client, headers, query):
    r = client.get(f"/api/v1/metrics/outcomes?{query}", headers=headers)
    assert r.status_code == 200, r.get_json()
    (practice,) = r.get_json()["practices"]
    if practice["suppressed"]:
        return None
    return _score(practice, "nrs", "back_pain")


def _recovered(whole: dict, most: dict | None) -> tuple | None:
    """Returns the one remaining patient's NRS (baseline, follow-up) an owner could work out."""
    if most is None or most["suppressed"]:
        return None
    n, m = whole["patients"], most["patients"]
    return (
        round(whole["mean_baseline"] * n - most["mean_baseline"] * m),
        round(whole["mean_follow_up"] * n - most["mean_follow_up"] * m),
    )


def test_owner_cannot_recover_one_patients_scores_by_differencing(client, world, scored):
    h, pa = world.h["owner"], world.practice_a.id
    whole = _nrs_back(client, h, f"practice_id={pa}")
    assert whole["patients"] == 6
    # The colleague's one patient is under 5 anyway.
    assert _nrs_back(client, h, f"practice_id={pa}&therapist_id={world.colleague.id}") is None
    # p1-p5 of `therapist` are 5 of the practice's 6: shown, they would give away p6's 10 -> 7.
    most = _nrs_back(client, h, f"practice_id={pa}&therapist_id={world.therapist.id}")
    assert _recovered(whole, most) != (10, 7), "one patient's NRS baseline and follow-up recovered"
    assert most is None
    # The therapist sees the same 5 (their own patients) and cannot see the practice's 6.
    own = _nrs_back(client, world.h["therapist"], f"practice_id={pa}")
    assert (own["patients"], own["mean_baseline"], own["mean_follow_up"]) == (5, 4.8, 3.6)


def test_owner_cannot_recover_one_patients_scores_by_narrowing_dates(client, world, scored):
    from coaching.enrolment.models import Enrollment

    a, _ = scored
    # p6 started a day later than p1-p5.
    enrollment = db.session.execute(
        select(Enrollment).where(Enrollment.patient_id == a[5].id)
    ).scalar_one()
    enrollment.started_on = enrollment.started_on + timedelta(days=1)
    db.session.commit()
    day = (enrollment.started_on - timedelta(days=1)).isoformat()
    h, pa = world.h["owner"], world.practice_a.id
    whole = _nrs_back(client, h, f"practice_id={pa}")
    assert whole["patients"] == 6
    for query in (f"to={day}", f"from={day}&to={day}", f"from=2000-01-01&to={day}"):
        most = _nrs_back(client, h, f"practice_id={pa}&{query}")
        assert _recovered(whole, most) != (10, 7), query
        assert most is None, query
    # A range that leaves the practice whole answers the whole practice's numbers.
    later = (enrollment.started_on + timedelta(days=30)).isoformat()
    assert _nrs_back(client, h, f"practice_id={pa}&from={day}&to={later}") == whole
    assert _nrs_back(client, h, f"practice_id={pa}&from={day}") == whole


def test_outcomes_labels_follow_the_callers_locale(client, world, scored, make):
    world.owner.locale = "nl"
    db.session.commit()
    body = client.get("/api/v1/metrics/outcomes", headers=world.h["owner"]).get_json()
    assert _score(body["practices"][0], "nrs", "back_pain")["label"] == "Rugpijn (0–10)"


# --- coaching ----------------------------------------------------------------------------------

H = 3600


def at(clock, days=0, hours=0, microseconds=0):
    clock.set(START + timedelta(days=days, hours=hours, microseconds=microseconds))


def say(account, conversation, cycle_id=None):
    messaging.post_message(
        account=account, conversation=conversation, kind="text", body="…", cycle_id=cycle_id
    )
    db.session.commit()


@pytest.fixture
def chats(world, clock):
    """Messages and cycles in three conversations (START is Monday 2 March, 09:00 UTC).

    therapist ↔ patient: patient 09:00 and 10:00, reply 13:00 (wait 4 h); patient day 1 09:00,
    reply day 3 10:00 (49 h); the therapist again at 11:00 (no wait); patient day 4 09:00, open.
    therapist ↔ other_patient: patient 09:30:00.2, reply 09:30:00.9 (same second: 0 h); patient
    day 2 12:00, reply day 2 14:00 (2 h).
    other_therapist ↔ foreign_patient: patient 09:00, reply 21:00 (12 h); patient day 1 08:00,
    open. Now is day 5 09:00.
    Cycles: patient's opened day 1 09:00 (waits on the therapist: 96 h); therapist's in the second
    conversation opened day 2 10:00, answered day 2 14:00 (waits on the patient: 67 h); one in
    the third conversation, closed.
    """
    one = messaging.ensure_conversation(
        patient_id=world.patient.id, therapist_id=world.therapist.id
    )
    two = messaging.ensure_conversation(
        patient_id=world.other_patient.id, therapist_id=world.therapist.id
    )
    three = messaging.ensure_conversation(
        patient_id=world.foreign_patient.id, therapist_id=world.other_therapist.id
    )
    db.session.commit()
    at(clock)
    say(world.patient, one)
    say(world.foreign_patient, three)
    at(clock, hours=0.5, microseconds=200_000)
    say(world.other_patient, two)
    at(clock, hours=0.5, microseconds=900_000)
    say(world.therapist, two)
    at(clock, hours=1)
    say(world.patient, one)
    at(clock, hours=4)
    say(world.therapist, one)
    at(clock, hours=12)
    say(world.other_therapist, three)
    closed = messaging.open_cycle(account=world.other_therapist, conversation=three, activity="x")
    messaging.update_cycle(
        account=world.other_therapist,
        cycle=closed,
        conversation=three,
        changes={"outcome": "done", "status": "closed"},
    )
    at(clock, days=1, hours=-1)
    say(world.foreign_patient, three)
    at(clock, days=1)
    say(world.patient, one)
    messaging.open_cycle(account=world.patient, conversation=one, activity="gardening")
    db.session.commit()
    at(clock, days=2, hours=1)
    cycle = messaging.open_cycle(account=world.therapist, conversation=two, activity="walking")
    db.session.commit()
    at(clock, days=2, hours=3)
    say(world.other_patient, two)
    at(clock, days=2, hours=5)
    say(world.therapist, two, cycle_id=cycle.id)
    at(clock, days=3, hours=1)
    say(world.therapist, one)
    at(clock, days=3, hours=2)
    say(world.therapist, one)
    at(clock, days=4)
    say(world.patient, one)
    at(clock, days=5)


def test_coaching_by_hand(client, world, make, chats):
    r = client.get("/api/v1/metrics/coaching", headers=make.headers(world.owner))
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["reply_within_hours"] == 48
    # All waits: answered in 0, 2, 4, 12 and 49 h; open for 24 h and 97 h.
    assert body["all"] == {
        "replies": 5,
        "median_hours": 4.0,
        "replied_within_48h": 4,
        "share_within_48h": round(4 / 6, 4),  # the 97-hour wait counts as not within 48 h
        "awaiting_reply": 2,
        "awaiting_over_48h": 1,
        "oldest_awaiting_hours": 97.0,
        "open_cycles": 2,
        "cycles_waiting_on_therapist": {
            "count": 1,
            "median_hours_waiting": 96.0,
            "longest_hours_waiting": 96.0,
        },
        "cycles_waiting_on_patient": {
            "count": 1,
            "median_hours_waiting": 67.0,
            "longest_hours_waiting": 67.0,
        },
    }
    assert [p["label"] for p in body["practices"]] == ["Practice A", "Practice B"]
    a, b = body["practices"]
    assert (a["replies"], a["median_hours"], a["share_within_48h"]) == (4, 3.0, 0.75)
    assert (a["awaiting_reply"], a["awaiting_over_48h"], a["oldest_awaiting_hours"]) == (1, 0, 24.0)
    assert a["open_cycles"] == 2
    (therapist,) = a["therapists"]
    assert therapist["therapist_id"] == world.therapist.id
    assert therapist["label"] == world.therapist.display_name
    assert {k: v for k, v in therapist.items() if k not in ("therapist_id", "label")} == {
        k: v for k, v in a.items() if k not in ("practice_id", "label", "therapists")
    }
    assert (b["replies"], b["median_hours"], b["replied_within_48h"]) == (1, 12.0, 1)
    assert (b["awaiting_reply"], b["awaiting_over_48h"], b["share_within_48h"]) == (1, 1, 0.5)
    assert b["open_cycles"] == 0
    assert b["cycles_waiting_on_therapist"] == {
        "count": 0,
        "median_hours_waiting": None,
        "longest_hours_waiting": None,
    }


def test_coaching_therapist_sees_own_and_dates_select_waits(client, world, make, chats):
    mine = client.get("/api/v1/metrics/coaching", headers=make.headers(world.therapist))
    body = mine.get_json()
    assert [p["practice_id"] for p in body["practices"]] == [world.practice_a.id]
    assert body["all"]["replies"] == 4 and body["all"]["median_hours"] == 3.0
    # Waits that began on 4 March or later (Amsterdam): the 2-hour one and the open one.
    h = make.headers(world.owner)
    later = client.get("/api/v1/metrics/coaching?from=2026-03-04", headers=h).get_json()
    assert (later["all"]["replies"], later["all"]["median_hours"]) == (1, 2.0)
    assert later["all"]["awaiting_reply"] == 1
    assert later["all"]["open_cycles"] == 2  # cycles are as of now, whatever the period
    colleague = client.get(
        f"/api/v1/metrics/coaching?therapist_id={world.colleague.id}", headers=h
    ).get_json()
    assert colleague["practices"] == [] and colleague["all"]["replies"] == 0


def test_coaching_without_messages(client, world):
    body = client.get("/api/v1/metrics/coaching", headers=world.h["owner"]).get_json()
    assert body["practices"] == []
    assert body["all"]["median_hours"] is None and body["all"]["share_within_48h"] is None
