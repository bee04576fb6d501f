"""The /metrics endpoints: who may see what, bad input, and the numbers they answer."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest

from coaching.enrolment import service as enrolment
from coaching.extensions import db
from coaching.metrics import service
from tests.conftest import assert_error

ENDPOINTS = [
    "/api/v1/metrics/funnel",
    "/api/v1/metrics/funnel.csv",
    "/api/v1/metrics/retention",
    "/api/v1/metrics/dropoffs?step=registered",
    "/api/v1/metrics/outcomes",
    "/api/v1/metrics/coaching",
    "/api/v1/metrics/reminders",
]


@pytest.mark.parametrize("url", ENDPOINTS)
def test_anonymous_and_patients_are_refused(client, world, url):
    assert_error(client.get(url), 401)
    assert_error(client.get(url, headers=world.h["patient"]), 403)


@pytest.mark.parametrize("url", ENDPOINTS)
def test_foreign_ids_are_not_found(client, world, url):
    sep = "&" if "?" in url else "?"
    other_practice = world.practice_b.id
    r = client.get(f"{url}{sep}practice_id={other_practice}", headers=world.h["therapist"])
    assert_error(r, 404)
    r = client.get(f"{url}{sep}therapist_id={world.colleague.id}", headers=world.h["therapist"])
    assert_error(r, 404)
    r = client.get(f"{url}{sep}practice_id=nope", headers=world.h["owner"])
    assert_error(r, 404)
    r = client.get(f"{url}{sep}therapist_id={world.patient.id}", headers=world.h["owner"])
    assert_error(r, 404)
    r = client.get(f"{url}{sep}practice_id={world.practice_a.id}", headers=world.h["therapist"])
    assert r.status_code == 200, r.get_json()


@pytest.mark.parametrize("url", ENDPOINTS)
def test_bad_input(client, world, url):
    sep = "&" if "?" in url else "?"
    h = world.h["owner"]
    assert_error(client.get(f"{url}{sep}from=2026-03-02&to=2026-03-01", headers=h), 422, "from")
    assert_error(client.get(f"{url}{sep}from=yesterday", headers=h), 422, "from")
    assert_error(client.get(f"{url}{sep}colour=red", headers=h), 422, "colour")
    assert_error(client.get(f"{url}{sep}practice_id={'x' * 37}", headers=h), 422, "practice_id")


@pytest.mark.parametrize("url", ENDPOINTS)
@pytest.mark.parametrize(
    "query",
    ["to=9999-12-31", "from=9999-12-31", "from=1999-12-31", "to=0001-01-01"],
)
def test_dates_outside_the_programme_are_refused(client, world, url, query):
    sep = "&" if "?" in url else "?"
    name = query.split("=")[0]
    assert_error(client.get(f"{url}{sep}{query}", headers=world.h["owner"]), 422, name)
    assert_error(client.get(f"{url}{sep}{query}", headers=world.h["therapist"]), 422, name)


@pytest.mark.parametrize("url", ENDPOINTS)
def test_dates_at_the_ends_of_the_range_are_answered(client, world, url):
    sep = "&" if "?" in url else "?"
    r = client.get(f"{url}{sep}from=2000-01-01&to=9998-12-31", headers=world.h["owner"])
    assert r.status_code == 200, r.get_data(as_text=True)


@pytest.mark.parametrize("url", ["/api/v1/metrics/funnel", "/api/v1/metrics/funnel.csv"])
def test_funnel_bad_input(client, world, url):
    h = world.h["owner"]
    assert_error(client.get(f"{url}?breakdown=colour", headers=h), 422, "breakdown")
    assert_error(client.get(f"{url}?window_days=0", headers=h), 422, "window_days")
    assert_error(client.get(f"{url}?window_days=366", headers=h), 422, "window_days")
    assert_error(client.get(f"{url}?window_days=many", headers=h), 422, "window_days")
    assert_error(client.get(f"{url}?channel=pigeon", headers=h), 422, "channel")
    assert client.get(f"{url}?window_days=365&breakdown=channel", headers=h).status_code == 200


def test_funnel_counts_owner_and_therapist(client, world, make, clock):
    # world: three consented patients (two of `therapist`, one of `other_therapist`).
    make.invite(world.therapist, referral_source="insurer", channel="sms")
    owner = client.get("/api/v1/metrics/funnel", headers=world.h["owner"]).get_json()
    counts = {s["key"]: s["count"] for s in owner["steps"]}
    assert counts["invited"] == 4
    assert counts["invite_opened"] == counts["registered"] == counts["consented"] == 3
    assert counts["baseline_completed"] == 0
    first = owner["steps"][0]
    assert first["conversion_from_start"] == 1.0 and first["conversion_from_previous"] is None
    opened = owner["steps"][1]
    assert opened["conversion_from_previous"] == 0.75
    assert opened["in_progress"] == 1  # the fresh invite is still inside its window
    assert opened["median_hours_from_previous"] == 0.0
    assert owner["breakdown"] == {}

    mine = client.get("/api/v1/metrics/funnel", headers=world.h["therapist"]).get_json()
    assert mine["steps"][0]["count"] == 3
    assert mine["steps"][2]["count"] == 2

    by_source = client.get(
        "/api/v1/metrics/funnel?breakdown=referral_source", headers=world.h["owner"]
    ).get_json()
    assert by_source["breakdown"]["insurer"]["steps"][0]["count"] == 1
    assert by_source["breakdown"]["gp"]["steps"][2]["count"] == 3

    by_practice = client.get(
        "/api/v1/metrics/funnel?breakdown=practice", headers=world.h["owner"]
    ).get_json()
    part = by_practice["breakdown"][world.practice_a.id]
    assert part["label"] == "Practice A" and part["steps"][0]["count"] == 3

    # After the window the fresh invite is no longer in progress.
    clock.advance(days=2)
    h = make.headers(world.owner)  # the earlier token has expired by now
    later = client.get("/api/v1/metrics/funnel?window_days=1", headers=h)
    assert later.get_json()["steps"][1]["in_progress"] == 0


def test_funnel_date_filter_is_inclusive_in_dutch_dates(client, world, make, clock):
    # 23:30 UTC on 2 March is 00:30 on 3 March in Amsterdam.
    clock.set(clock.now().replace(hour=23, minute=30))
    make.invite(world.therapist)
    h = make.headers(world.owner)
    on_2nd = client.get("/api/v1/metrics/funnel?from=2026-03-02&to=2026-03-02", headers=h)
    on_3rd = client.get("/api/v1/metrics/funnel?from=2026-03-03&to=2026-03-03", headers=h)
    assert on_2nd.get_json()["steps"][0]["count"] == 3
    assert on_3rd.get_json()["steps"][0]["count"] == 1


def test_funnel_csv_has_the_same_numbers(client, world):
    h = world.h["owner"]
    data = client.get("/api/v1/metrics/funnel?breakdown=channel", headers=h).get_json()
    r = client.get("/api/v1/metrics/funnel.csv?breakdown=channel", headers=h)
    assert r.status_code == 200 and r.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(r.get_data(as_text=True))))
    overall = [row for row in rows if row["group"] == "all"]
    assert [int(row["count"]) for row in overall] == [s["count"] for s in data["steps"]]
    email = [row for row in rows if row["group"] == "email"]
    assert [int(row["count"]) for row in email] == [
        s["count"] for s in data["breakdown"]["email"]["steps"]
    ]


@pytest.mark.parametrize("name", ["=1+1", "+1", "-1", "@SUM(A1)"])
def test_funnel_csv_labels_cannot_run_as_formulas(client, world, make, name):
    """Practice and therapist names are typed by people: a spreadsheet must show them as text.
    (Names are stripped when stored, so none starts with a tab or carriage return.)"""
    practice = make.practice(name=name)
    make.invite(make.therapist(practice, display_name=name))
    for breakdown in ("practice", "therapist"):
        r = client.get(
            f"/api/v1/metrics/funnel.csv?breakdown={breakdown}", headers=world.h["owner"]
        )
        rows = list(csv.DictReader(io.StringIO(r.get_data(as_text=True))))
        labels = {row["label"] for row in rows}
        assert "'" + name in labels and name not in labels, labels


def test_dropoffs_therapist_sees_own_people_owner_counts(client, world, make, clock):
    waiting = make.patient(world.therapist, consented=False)
    make.patient(world.other_therapist, consented=False)
    clock.advance(days=3)
    world.h = {name: make.headers(getattr(world, name)) for name in ("therapist", "owner")}
    r = client.get("/api/v1/metrics/dropoffs?step=consented", headers=world.h["therapist"])
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["previous_step"] == "registered"
    assert [i["patient_id"] for i in body["waiting"]] == [waiting.id]
    assert body["waiting"][0]["days_waiting"] == 3
    assert body["waiting"][0]["window_open"] is True
    assert body["total"] == 1 and body["in_progress"] == 1

    owner = client.get("/api/v1/metrics/dropoffs?step=consented", headers=world.h["owner"])
    body = owner.get_json()
    assert "waiting" not in body
    assert body["total"] == 2
    assert body["by_practice"][world.practice_b.id]["total"] == 1

    h = world.h["therapist"]
    assert_error(client.get("/api/v1/metrics/dropoffs", headers=h), 422, "step")
    assert_error(client.get("/api/v1/metrics/dropoffs?step=invited", headers=h), 422, "step")
    assert_error(client.get("/api/v1/metrics/dropoffs?step=flying", headers=h), 422, "step")


def test_dropoff_reads_are_audited(client, world, make):
    from sqlalchemy import select

    from coaching.audit.models import AuditEntry

    waiting = make.patient(world.therapist, consented=False)
    client.get("/api/v1/metrics/dropoffs?step=consented", headers=world.h["therapist"])
    rows = db.session.execute(
        select(AuditEntry).where(AuditEntry.patient_id == waiting.id)
    ).scalars()
    assert any(r.resource_type == "metrics_dropoff" for r in rows)


def test_retention_cohorts(client, world, make, clock):
    # world's patients enrolled on Monday 2 March; two are active in week 1, one in week 2.
    for patient in (world.patient, world.other_patient):
        service.record_activity(patient_id=patient.id, kind="app_opened")
    service.record_activity(
        patient_id=world.patient.id, kind="app_opened", occurred_at=clock.now() + timedelta(days=8)
    )
    db.session.commit()
    h = world.h["owner"]
    early = client.get("/api/v1/metrics/retention?weeks=3", headers=h).get_json()
    assert early["cohorts"][0]["weeks"][0]["eligible"] == 0  # no week is over yet
    assert early["cohorts"][0]["weeks"][0]["share"] is None
    clock.advance(days=15)
    h = make.headers(world.owner)
    body = client.get("/api/v1/metrics/retention?weeks=3", headers=h).get_json()
    cohort = body["cohorts"][0]
    assert cohort["cohort"] == "2026-03-02" and cohort["size"] == 3
    assert [w["active"] for w in cohort["weeks"]] == [2, 1, 0]
    assert [w["eligible"] for w in cohort["weeks"]] == [3, 3, 0]
    assert cohort["weeks"][0]["share"] == round(2 / 3, 4)
    mine = client.get("/api/v1/metrics/retention?weeks=3", headers=make.headers(world.therapist))
    assert mine.get_json()["total"]["size"] == 2
    assert_error(client.get("/api/v1/metrics/retention?weeks=0", headers=h), 422, "weeks")


def test_active_week_4_is_recorded_from_activity(world, clock):
    from sqlalchemy import select

    from coaching.metrics.models import FunnelMilestone, UptakeEvent

    invite_of = service._invite_of_patient(world.patient.id)
    # The earlier steps up to the first video exchange, then activity in days 21–27.
    at = clock.now()
    for step in ("baseline_completed", "first_lesson_completed", "first_video_exchanged"):
        at += timedelta(hours=1)
        service.record_event(invite=invite_of, name=step, occurred_at=at)
    service.record_activity(
        patient_id=world.patient.id, kind="app_opened", occurred_at=clock.now() + timedelta(days=20)
    )
    assert service._invite_of_patient(world.patient.id) is not None
    day22 = clock.now() + timedelta(days=22)
    service.record_activity(patient_id=world.patient.id, kind="app_opened", occurred_at=day22)
    service.record_activity(
        patient_id=world.patient.id, kind="lesson", occurred_at=day22 + timedelta(hours=5)
    )
    events = (
        db.session.execute(select(UptakeEvent).where(UptakeEvent.name == "active_week_4"))
        .scalars()
        .all()
    )
    assert len(events) == 1  # the later activity could never be the step's time
    row = db.session.get(FunnelMilestone, invite_of.id)
    assert row.active_week_4_ts == service.epoch_seconds(day22)
    weeks = service.week_since_enrolment(
        enrolment.enrollment_for(world.patient.id).enrolled_at, day22
    )
    assert weeks == 4


def test_reminder_effect(client, world, clock):
    now = clock.now()

    def reminder(key, patient, category, sent, opened=None):
        from coaching.notifications import service as notifications

        n = notifications.enqueue(
            recipient_id=patient.id,
            category=category,
            key=key,
            title={"nl": "t", "en": "t"},
            body={"nl": "b", "en": "b"},
            scheduled_for=now,
        )
        if sent:
            n.status, n.sent_at, n.opened_at = "sent", now, opened
        db.session.flush()

    reminder("a", world.patient, "lesson", True, now + timedelta(minutes=5))
    reminder("b", world.other_patient, "lesson", True)
    reminder("c", world.foreign_patient, "lesson", False)
    reminder("d", world.patient, "practice", True)
    # Opening the app right after the push is not acting on it; the lesson an hour later is.
    service.record_activity(
        patient_id=world.patient.id, kind="app_opened", occurred_at=now + timedelta(minutes=5)
    )
    service.record_activity(
        patient_id=world.other_patient.id, kind="app_opened", occurred_at=now + timedelta(hours=1)
    )
    service.record_activity(
        patient_id=world.patient.id, kind="lesson_completed", occurred_at=now + timedelta(hours=2)
    )
    service.record_activity(
        patient_id=world.other_patient.id,
        kind="questionnaire",
        occurred_at=now + timedelta(hours=30),
    )
    db.session.commit()
    body = client.get("/api/v1/metrics/reminders", headers=world.h["owner"]).get_json()
    lesson = next(c for c in body["categories"] if c["category"] == "lesson")
    assert (lesson["scheduled"], lesson["sent"], lesson["opened"], lesson["acted_on"]) == (
        3,
        2,
        1,
        1,
    )
    assert lesson["share_acted_on"] == 0.5
    mine = client.get("/api/v1/metrics/reminders", headers=world.h["therapist"]).get_json()
    lesson = next(c for c in mine["categories"] if c["category"] == "lesson")
    assert lesson["scheduled"] == 2


def test_reminders_opened_only_counts_sent_ones(client, world, clock):
    """A reminder that was never sent (skipped: no device) can still be opened from the list in
    the app; that is not a push opened, and `opened` stays within `sent`."""
    from coaching.notifications import service as notifications

    now = clock.now()
    ids = []
    for key in ("sent", "skipped"):
        n = notifications.enqueue(
            recipient_id=world.patient.id,
            category="lesson",
            key=key,
            title={"nl": "t", "en": "t"},
            body={"nl": "b", "en": "b"},
            scheduled_for=now,
        )
        if key == "sent":
            n.status, n.sent_at = "sent", now
        else:
            n.status = "skipped"
        db.session.flush()
        ids.append(n.id)
    db.session.commit()
    for notification_id in ids:
        r = client.post(
            f"/api/v1/me/notifications/{notification_id}/opened", headers=world.h["patient"]
        )
        assert r.status_code == 200, r.get_json()
    body = client.get("/api/v1/metrics/reminders", headers=world.h["owner"]).get_json()
    (lesson,) = body["categories"]
    assert (lesson["scheduled"], lesson["sent"], lesson["opened"]) == (2, 1, 1)
    assert lesson["share_opened"] == 1.0
