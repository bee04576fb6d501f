"""Alerts, weekly check-ins, the decision aid and the interfaces other domains call."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select

from coaching.extensions import db
from coaching.notifications.models import Notification
from coaching.outcomes import schedule, service
from coaching.outcomes.models import OutcomeAlert
from tests.outcomes.conftest import BASELINE_ANSWERS, ODI_EXAMPLE

API = "/api/v1"
MONTH3 = datetime(2026, 6, 2, 9, 0, tzinfo=UTC)


def odi(total: int) -> dict:
    """Returns ODI answers over all ten sections with this raw sum (percent = 2 × total)."""
    levels = [min(5, max(0, total - 5 * n)) for n in range(10)]
    return {f"odi{n}": v for n, v in zip(range(1, 11), levels, strict=True)}


def _alerts(patient_id=None):
    stmt = select(OutcomeAlert).order_by(OutcomeAlert.created_at)
    if patient_id:
        stmt = stmt.where(OutcomeAlert.patient_id == patient_id)
    return db.session.execute(stmt).scalars().all()


# --- schedule helpers -----------------------------------------------------------------------------


def test_add_months_clamps_to_the_end_of_the_month():
    assert schedule.add_months(date(2026, 1, 31), 3) == date(2026, 4, 30)
    assert schedule.add_months(date(2025, 11, 30), 3) == date(2026, 2, 28)
    assert schedule.add_months(date(2026, 3, 2), 12) == date(2027, 3, 2)


def test_windows_never_overlap():
    start = date(2026, 1, 31)
    windows = [schedule.window(start, tp) for tp in schedule.TIMEPOINTS]
    for earlier, later in zip(windows, windows[1:], strict=False):
        assert earlier.closes_on < later.opens_on


def test_window_statuses():
    w = schedule.window(date(2026, 3, 2), "month3")
    assert w.status(date(2026, 5, 18)) == "upcoming"
    assert w.status(date(2026, 5, 19)) == "due"
    assert w.status(date(2026, 6, 16)) == "due"
    assert w.status(date(2026, 6, 17)) == "overdue"
    assert w.status(date(2026, 7, 14)) == "overdue"
    assert w.status(date(2026, 7, 15)) == "missed"
    assert w.status(date(2026, 7, 15), completed=True) == "completed"


def test_due_questionnaires_for_today(world, submit):
    due = service.due_questionnaires(world.patient)
    assert due[0] == {
        "key": "odi",
        "timepoint": "baseline",
        "due_on": date(2026, 3, 2),
        "status": "due",
    }
    assert len(due) == 7
    submit(world.h["patient"], "odi", ODI_EXAMPLE)
    assert [d["key"] for d in service.due_questionnaires(world.patient)][0] == "nrs"


def test_schedule_follows_the_local_date_of_the_patient(make, clock):
    # 23:30 UTC on 1 March is already 2 March in Amsterdam and still 1 March in New York.
    clock.set(datetime(2026, 3, 1, 23, 30, tzinfo=UTC))
    amsterdam = make.patient(timezone="Europe/Amsterdam")
    new_york = make.patient(timezone="America/New_York")
    assert service.due_questionnaires(amsterdam)[0]["due_on"] == date(2026, 3, 2)
    assert service.due_questionnaires(new_york)[0]["due_on"] == date(2026, 3, 1)


# --- alerts -----------------------------------------------------------------------------------


def test_worse_follow_up_opens_alerts_and_notifies_the_therapist(world, clock, make, submit):
    submit.baseline(world.h["patient"])  # ODI 32, back 6, leg 3
    clock.set(MONTH3)
    h = make.headers(world.patient)
    assert submit(h, "odi", odi(20)).status_code == 201  # 40 %: 8 worse, no alert
    assert _alerts() == []
    assert submit(h, "nrs", {"back_pain": 8, "leg_pain": 4}).status_code == 201
    (alert,) = _alerts()
    assert (alert.kind, alert.score, alert.source, alert.timepoint) == (
        "pain",
        "nrs.back_pain",
        "response",
        "month3",
    )
    assert (alert.baseline_value, alert.value, alert.change) == (6.0, 8.0, 2.0)
    assert alert.therapist_id == world.therapist.id
    (note,) = db.session.execute(select(Notification)).scalars().all()
    assert note.recipient_id == world.therapist.id
    assert note.category == "alert"
    assert note.data == {
        "route": "patient_alerts",
        "patient_id": world.patient.id,
        "alert_id": alert.id,
    }
    # No health details travel in the push text.
    assert "pijn" not in (note.title_nl + note.body_nl).lower()


def test_disability_alert_at_ten_points(world, clock, make, submit):
    submit(world.h["patient"], "odi", odi(16))  # 32 %
    clock.set(MONTH3)
    assert submit(make.headers(world.patient), "odi", odi(21)).status_code == 201  # 42 %
    (alert,) = _alerts()
    assert (alert.kind, alert.score, alert.change) == ("disability", "odi.odi_percent", 10.0)


def test_checkin_alerts_once_while_open_and_again_after_acknowledging(
    world, client, clock, make, submit
):
    h = world.h["patient"]
    assert client.post(API + "/me/checkins", json={"back_pain": 9}, headers=h).status_code == 201
    assert _alerts() == []  # no baseline yet: nothing to compare with
    submit(h, "nrs", {"back_pain": 5, "leg_pain": 2})
    clock.advance(days=7)
    h = make.headers(world.patient)
    assert client.post(API + "/me/checkins", json={"back_pain": 6}, headers=h).status_code == 201
    assert _alerts() == []
    clock.advance(days=7)
    h = make.headers(world.patient)
    assert client.post(API + "/me/checkins", json={"back_pain": 7}, headers=h).status_code == 201
    (alert,) = _alerts()
    assert (alert.source, alert.change, alert.checkin_id is not None) == ("checkin", 2.0, True)
    clock.advance(days=7)
    h = make.headers(world.patient)
    assert client.post(API + "/me/checkins", json={"back_pain": 8}, headers=h).status_code == 201
    assert len(_alerts()) == 1  # still open: no second alert
    therapist = make.headers(world.therapist)
    listed = client.get(f"{API}/patients/{world.patient.id}/alerts", headers=therapist).get_json()
    assert [a["id"] for a in listed] == [alert.id]
    assert listed[0]["status"] == "open"
    done = client.post(
        f"{API}/alerts/{alert.id}/acknowledge",
        json={"note": "Gebeld, afspraak gemaakt"},
        headers=therapist,
    ).get_json()
    assert done["status"] == "acknowledged"
    assert done["acknowledged_by_id"] == world.therapist.id
    assert done["note"] == "Gebeld, afspraak gemaakt"
    again = client.post(f"{API}/alerts/{alert.id}/acknowledge", json={}, headers=therapist)
    assert again.get_json()["acknowledged_at"] == done["acknowledged_at"]
    assert (
        client.get(f"{API}/patients/{world.patient.id}/alerts", headers=therapist).get_json() == []
    )
    everything = client.get(
        f"{API}/patients/{world.patient.id}/alerts?status=all", headers=therapist
    ).get_json()
    assert len(everything) == 1
    clock.advance(days=7)
    h = make.headers(world.patient)
    assert client.post(API + "/me/checkins", json={"back_pain": 7}, headers=h).status_code == 201
    assert len(_alerts()) == 2


def test_worklist_extras(world, client, make, submit):
    submit.baseline(world.h["patient"])
    client.post(API + "/me/checkins", json={"back_pain": 9}, headers=world.h["patient"])
    extras = service.worklist_extras(
        therapist=world.therapist,
        patient_ids=[world.patient.id, world.other_patient.id, world.foreign_patient.id],
    )
    assert set(extras) == {world.patient.id, world.other_patient.id}
    assert extras[world.patient.id]["open_alerts"] == 1
    assert extras[world.patient.id]["risk"] == "medium"
    assert "blended" in extras[world.patient.id]["risk_meaning"]
    assert "geen voorschrift" in extras[world.patient.id]["risk_meaning"]
    assert extras[world.other_patient.id] == {"open_alerts": 0, "risk": None, "risk_meaning": None}
    assert service.worklist_extras(therapist=world.colleague, patient_ids=[world.patient.id]) == {}


def test_work_list_over_http_shows_open_alerts_and_the_risk_group(world, client, submit):
    submit.baseline(world.h["patient"])
    client.post(API + "/me/checkins", json={"back_pain": 9}, headers=world.h["patient"])
    items = client.get(API + "/patients", headers=world.h["therapist"]).get_json()
    item = next(i for i in items if i["id"] == world.patient.id)
    assert (item["open_alerts"], item["risk"]) == (1, "medium")
    assert "blended" in item["risk_meaning"]
    detail = client.get(f"{API}/patients/{world.patient.id}", headers=world.h["therapist"])
    assert detail.status_code == 200
    assert (detail.get_json()["open_alerts"], detail.get_json()["risk"]) == (1, "medium")
    quiet = next(i for i in items if i["id"] == world.other_patient.id)
    assert (quiet["open_alerts"], quiet["risk"]) == (0, None)


@pytest.mark.parametrize(
    ("risk", "words"),
    [("low", "self-management"), ("medium", "blended"), ("high", "multidisciplinary")],
)
def test_risk_meanings_are_information(risk, words):
    meaning = service.risk_meaning(risk, "en")
    assert words in meaning
    assert meaning.endswith("not an instruction.")


# --- check-ins ----------------------------------------------------------------------------------


def test_checkins_one_per_week_with_a_trend_for_the_therapist(world, client, clock, make, submit):
    submit(world.h["patient"], "nrs", {"back_pain": 8, "leg_pain": 2})
    for week, (pain, did) in enumerate([(8, True), (7, False), (6, True), (5, None)]):
        h = make.headers(world.patient)
        response = client.post(
            API + "/me/checkins", json={"back_pain": pain, "did_committed_action": did}, headers=h
        )
        assert response.status_code == 201, response.get_json()
        assert response.get_json()["week"] == week + 1
        if week == 0:
            again = client.post(API + "/me/checkins", json={"back_pain": 3}, headers=h)
            assert again.status_code == 409
        clock.advance(days=7)
    mine = client.get(API + "/me/checkins", headers=make.headers(world.patient)).get_json()
    theirs = client.get(
        f"{API}/patients/{world.patient.id}/checkins", headers=make.headers(world.therapist)
    ).get_json()
    assert mine == theirs
    assert [c["back_pain"] for c in mine["checkins"]] == [8, 7, 6, 5]
    assert [c["change_from_baseline"] for c in mine["checkins"]] == [0, -1, -2, -3]
    assert mine["baseline_back_pain"] == 8
    assert mine["trend"] == {
        "checkins": 4,
        "slope_per_week": -1.0,
        "direction": "improving",
        "recent_mean": 6.5,
        "committed_action_share": 2 / 3,
    }


def test_checkin_trend_needs_three_checkins(world, client):
    client.post(API + "/me/checkins", json={"back_pain": 4}, headers=world.h["patient"])
    trend = client.get(API + "/me/checkins", headers=world.h["patient"]).get_json()["trend"]
    assert (trend["direction"], trend["slope_per_week"]) == (None, None)


# --- decision aid ---------------------------------------------------------------------------------


def _history(make, therapist, *, odi_base, odi_m3, pain_base, pain_m3, sbt=None):
    patient = make.patient(therapist)
    base_at = datetime(2025, 1, 10, 18, tzinfo=UTC)
    service.submit_response(
        patient=patient,
        key="startback",
        answers=sbt or BASELINE_ANSWERS["startback"],
        timepoint="baseline",
        submitted_at=base_at,
    )
    for key, timepoint, answers, at in [
        ("odi", "baseline", odi(odi_base), base_at),
        ("nrs", "baseline", {"back_pain": pain_base, "leg_pain": 2}, base_at),
        ("odi", "month3", odi(odi_m3), base_at + timedelta(days=91)),
        ("nrs", "month3", {"back_pain": pain_m3, "leg_pain": 2}, base_at + timedelta(days=91)),
    ]:
        service.submit_response(
            patient=patient, key=key, answers=answers, timepoint=timepoint, submitted_at=at
        )
    db.session.commit()
    return patient


def test_decision_aid_compares_with_the_same_risk_group_and_odi_band(world, client, make, submit):
    submit.baseline(world.h["patient"])  # medium risk, ODI 32 (moderate)
    # Ten comparable patients: ODI 30 → 30 − 2i (i = 0…9), pain 6 → 6 − (i % 4).
    for i in range(10):
        _history(
            make,
            world.other_therapist,
            odi_base=15,
            odi_m3=15 - i,
            pain_base=6,
            pain_m3=6 - (i % 4),
        )
    # Not comparable: low risk, or another band.
    low_risk = {f"sbt{n}": 0 for n in range(1, 10)}
    _history(make, world.therapist, odi_base=15, odi_m3=5, pain_base=6, pain_m3=1, sbt=low_risk)
    _history(make, world.therapist, odi_base=30, odi_m3=5, pain_base=6, pain_m3=1)

    aid = client.get(API + "/me/decision-aid", headers=world.h["patient"]).get_json()
    assert aid["baseline"] == {
        "odi_percent": 32.0,
        "band": "moderate",
        "back_pain": 6.0,
        "risk": "medium",
        "risk_meaning": service.risk_meaning("medium", "nl"),
    }
    comparison = aid["comparison"]
    assert (comparison["risk"], comparison["band"], comparison["shown"]) == (
        "medium",
        "moderate",
        True,
    )
    assert comparison["patients"] == 10
    by = {(o["score"], o["timepoint"]): o for o in comparison["outcomes"]}
    odi_m3 = by[("odi_percent", "month3")]
    # Changes −0, −2, … −18: ≥ 10 points for i ≥ 5 (5 of 10); ≥ 30 % (9 of 30) for i ≥ 5.
    assert odi_m3["patients"] == 10
    assert odi_m3["share_mic_absolute"] == 0.5
    assert odi_m3["share_mic_relative"] == 0.5
    assert odi_m3["median_change"] == -9.0
    pain_m3 = by[("back_pain", "month3")]
    # Pain changes 0, −1, −2, −3, 0, −1, −2, −3, 0, −1: ≥ 2 points in 4; ≥ 30 % (1.8) in 4.
    assert pain_m3["share_mic_absolute"] == 0.4
    assert pain_m3["share_mic_relative"] == 0.4
    assert pain_m3["median_change"] == -1.0
    assert by[("odi_percent", "month12")]["shown"] is False
    assert by[("odi_percent", "month12")]["patients"] is None

    theirs = client.get(
        f"{API}/patients/{world.patient.id}/decision-aid", headers=make.headers(world.therapist)
    ).get_json()
    assert theirs == aid


def test_a_relative_share_of_too_few_patients_is_not_shown(world, client, make, submit):
    """Only pairs with a baseline above 0 have a relative change: with ten comparable patients
    of whom two had back pain at baseline, the share of relative change would describe two."""
    submit.baseline(world.h["patient"])
    for i in range(10):
        pain = 6 if i < 2 else 0
        _history(make, world.therapist, odi_base=15, odi_m3=10, pain_base=pain, pain_m3=pain // 2)
    comparison = client.get(API + "/me/decision-aid", headers=world.h["patient"]).get_json()[
        "comparison"
    ]
    by = {(o["score"], o["timepoint"]): o for o in comparison["outcomes"]}
    pain_m3 = by[("back_pain", "month3")]
    assert (pain_m3["shown"], pain_m3["patients"]) == (True, 10)
    assert pain_m3["share_mic_absolute"] == 0.2  # the two whose pain went from 6 to 3
    assert pain_m3["share_mic_relative"] is None
    # ODI 30 → 20 % in all ten (a third better): their relative share is shown.
    assert by[("odi_percent", "month3")]["share_mic_relative"] == 1.0


def test_small_groups_are_not_shown(world, client, make, submit):
    submit.baseline(world.h["patient"])
    for i in range(9):
        _history(make, world.therapist, odi_base=15, odi_m3=10, pain_base=6, pain_m3=6 - i % 3)
    comparison = client.get(API + "/me/decision-aid", headers=world.h["patient"]).get_json()[
        "comparison"
    ]
    assert comparison["shown"] is False
    assert comparison["patients"] is None
    assert all(not o["shown"] and o["median_change"] is None for o in comparison["outcomes"])


def test_decision_aid_without_a_baseline(world, client):
    aid = client.get(API + "/me/decision-aid", headers=world.h["patient"]).get_json()
    assert aid["comparison"] is None
    assert aid["baseline"]["risk"] is None


def test_nothing_is_due_after_withdrawing(world):
    from coaching.enrolment.service import enrollment_for

    enrollment_for(world.patient.id).status = "withdrawn"
    db.session.commit()
    assert service.due_questionnaires(world.patient) == []


def test_parallel_submissions_record_one_baseline_and_one_response(app, world, submit, is_postgres):
    """The last baseline instruments sent at the same moment still give one `baseline_completed`;
    the same instrument sent twice at once is stored once (the other answer is 409)."""
    import threading

    from coaching.metrics.models import UptakeEvent

    if not is_postgres:
        pytest.skip("SQLite allows one writer at a time; the race needs PostgreSQL")
    submit.baseline(world.h["patient"], skip=("cpaq8", "careuse"))
    h = world.h["patient"]
    jobs = [("cpaq8", BASELINE_ANSWERS["cpaq8"])] * 2 + [
        ("careuse", BASELINE_ANSWERS["careuse"])
    ] * 2
    barrier = threading.Barrier(len(jobs))
    statuses = []

    def post(key, answers):
        client = app.test_client()
        barrier.wait()
        response = client.post(
            f"{API}/me/questionnaires/{key}/responses", json={"answers": answers}, headers=h
        )
        statuses.append((key, response.status_code))

    threads = [threading.Thread(target=post, args=job) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [("careuse", 201), ("careuse", 409), ("cpaq8", 201), ("cpaq8", 409)]
    db.session.expire_all()
    events = db.session.execute(
        select(UptakeEvent).where(UptakeEvent.name == "baseline_completed")
    ).all()
    assert len(events) == 1
