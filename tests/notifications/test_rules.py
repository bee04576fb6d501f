"""Reminder rules with an injected clock: local times across DST, quiet hours, opt-outs, pauses,
one practice reminder a day, time-zone changes and inactivity nudges."""

from __future__ import annotations

from collections import Counter
from datetime import date, time, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from coaching.extensions import db
from coaching.notifications import rules, service
from tests.notifications.conftest import AMS, local

NY = ZoneInfo("America/New_York")

# The other domains' functions the rules (and the dispatcher) call, by the module they live in.
OTHER_DOMAINS = {
    "module_unlock_dates_for": rules.content,
    "due_questionnaires_for": rules.outcomes,
    "appointments_between": rules.appointments,
    "messages_awaiting_reply": rules.messaging,
}


@pytest.fixture(autouse=True)
def _only_this_domains_rules(monkeypatch):
    """These tests cover the rules on this domain's own data: the other domains' functions
    (questionnaires due, lessons unlocking, ...) are left out unless a test stands one in;
    test_other_domains.py runs the rules against the real ones."""
    nothing = _for_each(lambda patient: [])
    _stand_in(
        monkeypatch,
        {
            "module_unlock_dates_for": nothing,
            "due_questionnaires_for": nothing,
            "appointments_between": lambda *args: [],
            "messages_awaiting_reply": lambda *args: [],
        },
    )


def _practice(h, patient, day: date):
    rows = h.rows(idempotency_key=f"practice:{patient.id}:{day.isoformat()}")
    return rows[0] if rows else None


def test_daily_reminder_stays_at_19_local_across_both_dst_changes(make, h):
    patient = make.patient(timezone="Europe/Amsterdam")
    h.device(patient)
    # Before and after the spring change (29 March 2026) and the autumn one (25 October 2026),
    # and on both change days themselves.
    days = [
        (date(2026, 3, 27), 18),
        (date(2026, 3, 29), 17),
        (date(2026, 3, 30), 17),
        (date(2026, 10, 23), 17),
        (date(2026, 10, 25), 18),
        (date(2026, 10, 26), 18),
    ]
    for day, utc_hour in days:
        h.activity(patient, local(day.year, day.month, day.day, 12) - timedelta(days=1))
        h.tick(local(day.year, day.month, day.day, 18, 10))
        row = _practice(h, patient, day)
        assert row is not None, day
        assert row.scheduled_for.astimezone(AMS).time() == time(19, 0), day
        assert row.scheduled_for.hour == utc_hour, day
        assert row.status == "scheduled"
        h.tick(row.scheduled_for - timedelta(minutes=1))
        assert _practice(h, patient, day).status == "scheduled"
        h.tick(row.scheduled_for)
        sent = _practice(h, patient, day)
        assert sent.status == "sent", (day, sent.last_error)
        assert sent.sent_at.astimezone(AMS).time() == time(19, 0)
    assert h.push_count() == len(days)


def test_one_practice_reminder_per_local_day_however_often_ticks_run(make, h):
    patient = make.patient(timezone="Europe/Amsterdam")
    h.device(patient)
    h.activity(patient, local(2026, 3, 9, 12))
    start = local(2026, 3, 10, 0, 0)
    for minutes in range(0, 24 * 60, 5):
        at = start + timedelta(minutes=minutes)
        h.tick(at)
        h.tick(at)  # a second scheduler process ticking at the same moment
    rows = h.rows(category="practice", recipient_id=patient.id)
    assert Counter(r.local_date for r in rows) == {date(2026, 3, 10): 1}
    assert [p.idempotency_key for p in h.pushes()] == [f"practice:{patient.id}:2026-03-10"]


def test_quiet_hours_postpone_a_message_to_their_end(make, h):
    patient = make.patient()
    h.device(patient)
    h.settings(patient, quiet_hours={"start": time(22, 0), "end": time(7, 30)})
    h.clock.set(local(2026, 3, 10, 23, 15))
    row = service.enqueue(
        recipient_id=patient.id,
        category="message",
        key="message:test:1",
        title={"nl": "Nieuw bericht", "en": "New message"},
        body={"nl": "Je hebt een nieuw bericht.", "en": "You have a new message."},
        data={"link": "/messages"},
    )
    db.session.commit()
    assert row.scheduled_for == local(2026, 3, 11, 7, 30)
    h.tick(local(2026, 3, 11, 3, 0))
    assert h.push_count() == 0
    h.tick(local(2026, 3, 11, 7, 30))
    assert h.rows(idempotency_key="message:test:1")[0].status == "sent"


def test_quiet_hours_set_after_planning_hold_at_dispatch(make, h):
    patient = make.patient()
    h.device(patient)
    h.clock.set(local(2026, 3, 10, 12, 0))
    service.enqueue(
        recipient_id=patient.id,
        category="message",
        key="message:test:2",
        title={"nl": "t", "en": "t"},
        body={"nl": "b", "en": "b"},
        scheduled_for=local(2026, 3, 10, 21, 0),
    )
    db.session.commit()
    h.settings(patient, quiet_hours={"start": time(20, 0), "end": time(7, 0)})
    h.tick(local(2026, 3, 10, 21, 0))
    row = h.rows(idempotency_key="message:test:2")[0]
    assert row.status == "scheduled"
    assert row.scheduled_for == local(2026, 3, 11, 7, 0)
    assert row.attempts == 0  # waiting out quiet hours is no failed attempt
    h.tick(local(2026, 3, 11, 7, 0))
    assert h.rows(idempotency_key="message:test:2")[0].status == "sent"


def test_a_practice_reminder_is_never_pushed_into_the_next_day(make, h):
    patient = make.patient()
    h.device(patient)
    h.activity(patient, local(2026, 3, 9, 12))
    h.tick(local(2026, 3, 10, 18, 30))  # planned for 19:00
    # No dispatcher ran until 22:30, inside the quiet hours (22:00-08:00): by their end the
    # day is over, so the reminder is dropped instead of arriving the next morning.
    h.tick(local(2026, 3, 10, 22, 30))
    row = _practice(h, patient, date(2026, 3, 10))
    assert row.status == "skipped"
    assert "day is over" in row.last_error
    assert h.push_count() == 0


def test_a_category_switched_off_records_skipped(make, h):
    patient = make.patient()
    h.device(patient)
    h.settings(patient, categories={"practice": False})
    h.activity(patient, local(2026, 3, 9, 12))
    h.tick(local(2026, 3, 10, 18, 30))
    row = _practice(h, patient, date(2026, 3, 10))
    assert row.status == "skipped"
    assert "switched off" in row.last_error
    h.tick(local(2026, 3, 10, 19, 0))
    assert h.push_count() == 0


def test_switching_a_category_off_after_planning_skips_at_dispatch(make, h):
    patient = make.patient()
    h.device(patient)
    h.activity(patient, local(2026, 3, 9, 12))
    h.tick(local(2026, 3, 10, 18, 30))
    assert _practice(h, patient, date(2026, 3, 10)).status == "scheduled"
    h.settings(patient, categories={"practice": False, "lesson": True})
    h.tick(local(2026, 3, 10, 19, 0))
    assert _practice(h, patient, date(2026, 3, 10)).status == "skipped"
    assert h.push_count() == 0


def test_pause_until_silences_reminders_but_not_messages(make, h):
    patient = make.patient()
    h.device(patient)
    h.settings(patient, pause_until=date(2026, 3, 11))
    for day in (10, 11, 12):
        h.activity(patient, local(2026, 3, day - 1, 12))
        h.tick(local(2026, 3, day, 18, 30))
        h.tick(local(2026, 3, day, 19, 0))
    statuses = {r.local_date.day: r.status for r in h.rows(category="practice")}
    assert statuses == {10: "skipped", 11: "skipped", 12: "sent"}
    h.clock.set(local(2026, 3, 10, 12))
    h.settings(patient, pause_until=date(2026, 3, 20))
    service.enqueue(
        recipient_id=patient.id,
        category="message",
        key="message:paused",
        title={"nl": "t", "en": "t"},
        body={"nl": "b", "en": "b"},
    )
    db.session.commit()
    h.tick()
    assert h.rows(idempotency_key="message:paused")[0].status == "sent"


def test_no_practice_reminder_on_a_day_with_activity(make, h):
    patient = make.patient()
    h.device(patient)
    h.activity(patient, local(2026, 3, 9, 12))
    h.tick(local(2026, 3, 10, 18, 30))
    h.activity(patient, local(2026, 3, 10, 18, 45), kind="lesson_completed")
    h.tick(local(2026, 3, 10, 19, 0))
    row = _practice(h, patient, date(2026, 3, 10))
    assert row.status == "skipped"
    assert "active today" in row.last_error
    assert h.push_count() == 0


def test_a_time_zone_change_before_planning_moves_the_next_reminder(make, h, client):
    patient = make.patient(timezone="Europe/Amsterdam")
    h.device(patient)
    h.activity(patient, local(2026, 3, 9, 12))
    response = client.patch(
        "/api/v1/me", json={"timezone": "America/New_York"}, headers=make.headers(patient)
    )
    assert response.status_code == 200
    h.tick(local(2026, 3, 10, 18, 30))
    h.tick(local(2026, 3, 10, 19, 0))
    assert h.rows(category="practice") == []
    h.tick(local(2026, 3, 10, 18, 30, tz=NY))
    row = _practice(h, patient, date(2026, 3, 10))
    assert row.scheduled_for == local(2026, 3, 10, 19, 0, tz=NY)
    h.tick(row.scheduled_for)
    assert _practice(h, patient, date(2026, 3, 10)).status == "sent"


def test_a_time_zone_change_after_planning_moves_the_planned_reminder(make, h, client):
    patient = make.patient(timezone="Europe/Amsterdam")
    h.device(patient)
    h.activity(patient, local(2026, 3, 9, 12))
    h.tick(local(2026, 3, 10, 18, 30))
    assert _practice(h, patient, date(2026, 3, 10)).scheduled_for == local(2026, 3, 10, 19)
    response = client.patch(
        "/api/v1/me", json={"timezone": "America/New_York"}, headers=make.headers(patient)
    )
    assert response.status_code == 200
    h.tick(local(2026, 3, 10, 19, 0))
    row = _practice(h, patient, date(2026, 3, 10))
    assert row.status == "scheduled"
    assert row.scheduled_for == local(2026, 3, 10, 19, 0, tz=NY)
    assert h.push_count() == 0
    h.tick(local(2026, 3, 10, 19, 0, tz=NY))
    assert _practice(h, patient, date(2026, 3, 10)).status == "sent"
    assert h.push_count() == 1


def test_a_new_daily_time_moves_the_planned_reminder(make, h):
    patient = make.patient()
    h.device(patient)
    h.activity(patient, local(2026, 3, 9, 12))
    h.tick(local(2026, 3, 10, 18, 30))
    h.settings(patient, daily_time=time(18, 40))
    assert _practice(h, patient, date(2026, 3, 10)).scheduled_for == local(2026, 3, 10, 18, 40)
    h.tick(local(2026, 3, 10, 18, 40))
    assert _practice(h, patient, date(2026, 3, 10)).status == "sent"


def test_a_missed_daily_time_is_not_sent_late(make, h):
    patient = make.patient()
    h.device(patient)
    h.activity(patient, local(2026, 3, 9, 12))
    h.tick(local(2026, 3, 10, 21, 0))  # the scheduler was down at 19:00
    assert _practice(h, patient, date(2026, 3, 10)) is None


def test_inactivity_nudge_after_four_days_at_most_once_a_week(make, h):
    patient = make.patient()
    h.device(patient)
    h.activity(patient, local(2026, 3, 9, 10))  # Monday
    for offset in range(1, 26):
        day = date(2026, 3, 9) + timedelta(days=offset)
        h.tick(local(day.year, day.month, day.day, 18, 30))
        h.tick(local(day.year, day.month, day.day, 19, 0))
    nudges = h.rows(category="inactivity")
    assert [n.local_date for n in nudges] == [
        date(2026, 3, 13),
        date(2026, 3, 20),
        date(2026, 3, 27),
    ]
    assert all(n.status == "sent" for n in nudges)
    # On a nudge day the practice reminder gives way: one push a day.
    practice = {r.local_date: r for r in h.rows(category="practice")}
    assert practice[date(2026, 3, 13)].status == "skipped"
    assert practice[date(2026, 3, 12)].status == "sent"
    per_day = Counter(p.sent_at.astimezone(AMS).date() for p in h.pushes())
    assert max(per_day.values()) == 1


def test_activity_after_an_inactivity_nudge_is_planned_skips_it(make, h):
    patient = make.patient()
    h.device(patient)
    h.activity(patient, local(2026, 3, 9, 10))
    h.tick(local(2026, 3, 13, 18, 30))
    assert len(h.rows(category="inactivity")) == 1
    h.activity(patient, local(2026, 3, 13, 18, 45))
    h.tick(local(2026, 3, 13, 19, 0))
    assert h.rows(category="inactivity")[0].status == "skipped"
    assert h.push_count() == 0


# --- rules that read other domains, with small stand-ins for their functions ------------------


def _for_each(per_patient):
    """Returns a stand-in for a chunk function (pairs → {patient id: answer}) from a per-patient
    one."""
    return lambda pairs: {patient.id: per_patient(patient) for patient, _ in pairs}


def _stand_in(monkeypatch, functions: dict):
    for name, function in functions.items():
        monkeypatch.setattr(OTHER_DOMAINS[name], name, function)


def test_lesson_unlocked_is_announced_on_its_day(make, h, monkeypatch):
    patient = make.patient()
    h.device(patient)
    h.activity(patient, local(2026, 3, 9, 12))
    _stand_in(
        monkeypatch,
        {
            "module_unlock_dates_for": _for_each(
                lambda p: [
                    ("pain-education", date(2026, 3, 2)),
                    ("acceptance", date(2026, 3, 10)),
                ]
            )
        },
    )
    h.tick(local(2026, 3, 10, 18, 30))
    lessons = h.rows(category="lesson")
    assert [r.idempotency_key for r in lessons] == [f"lesson:{patient.id}:acceptance"]
    h.tick(local(2026, 3, 10, 19, 0))
    assert h.rows(category="lesson")[0].status == "sent"
    assert _practice(h, patient, date(2026, 3, 10)).status == "skipped"
    h.tick(local(2026, 3, 11, 18, 30))
    assert len(h.rows(category="lesson")) == 1


def test_a_lesson_reminder_switched_off_after_planning_leaves_the_practice_reminder(
    make, h, monkeypatch
):
    patient = make.patient()
    h.device(patient)
    h.activity(patient, local(2026, 3, 9, 12))
    _stand_in(
        monkeypatch,
        {"module_unlock_dates_for": _for_each(lambda p: [("acceptance", date(2026, 3, 10))])},
    )
    h.tick(local(2026, 3, 10, 18, 30))
    assert h.rows(category="lesson")[0].status == "scheduled"
    h.settings(patient, categories={"lesson": False})
    h.tick(local(2026, 3, 10, 19, 0))
    assert h.rows(category="lesson")[0].status == "skipped"
    # The lesson reminder does not go out, so it does not stand in for the practice one.
    assert _practice(h, patient, date(2026, 3, 10)).status == "sent"
    assert h.push_count() == 1


def test_questionnaire_due_then_once_more_three_days_later_if_still_open(make, h, monkeypatch):
    patient = make.patient()
    h.device(patient)
    open_items = [
        {"key": "odi", "timepoint": "month3", "due_on": date(2026, 3, 10)},
        {"key": "nrs", "timepoint": "month3", "due_on": date(2026, 3, 10)},
    ]
    _stand_in(monkeypatch, {"due_questionnaires_for": _for_each(lambda p: list(open_items))})
    for day in range(10, 18):
        h.activity(patient, local(2026, 3, day - 1, 12))
        h.tick(local(2026, 3, day, 18, 30))
        h.tick(local(2026, 3, day, 19, 0))
    rows = h.rows(category="questionnaire")
    assert [(r.local_date, r.status) for r in rows] == [
        (date(2026, 3, 10), "sent"),
        (date(2026, 3, 13), "sent"),
    ]
    assert rows[0].data == {"link": "/questionnaires"}  # both in one push


def test_questionnaire_answered_gets_no_second_reminder(make, h, monkeypatch):
    patient = make.patient()
    h.device(patient)
    open_items = [{"key": "nrs", "timepoint": "baseline", "due_on": date(2026, 3, 10)}]
    _stand_in(monkeypatch, {"due_questionnaires_for": _for_each(lambda p: list(open_items))})
    h.tick(local(2026, 3, 10, 18, 30))
    open_items.clear()
    h.tick(local(2026, 3, 13, 18, 30))
    assert len(h.rows(category="questionnaire")) == 1


def test_appointment_reminders_24_and_2_hours_before(make, h, monkeypatch):
    patient = make.patient()
    h.device(patient)
    starts = local(2026, 3, 12, 10, 0)
    appointment = SimpleNamespace(id="appt-1", patient_id=patient.id, starts_at=starts)

    def between(start, end):
        return [appointment] if start <= starts < end else []

    _stand_in(monkeypatch, {"appointments_between": between})
    for hours in range(48, -1, -1):
        h.tick(starts - timedelta(hours=hours))
    rows = h.rows(category="appointment")
    assert [(starts - r.scheduled_for, r.status) for r in rows] == [
        (timedelta(hours=24), "sent"),
        (timedelta(hours=2), "sent"),
    ]


def test_therapist_reply_reminder_once_per_waiting_message(make, h, monkeypatch):
    therapist = make.therapist()
    patient = make.patient(therapist)
    h.device(therapist, platform="ios")
    seen = []
    since = local(2026, 3, 8, 9, 0)

    def awaiting(older_than):
        seen.append(older_than)
        return [(therapist.id, patient.id, since)]

    _stand_in(monkeypatch, {"messages_awaiting_reply": awaiting})
    h.tick(local(2026, 3, 10, 12, 0))
    h.tick(local(2026, 3, 10, 12, 5))
    assert seen[0] == local(2026, 3, 10, 12, 0) - timedelta(hours=36)
    rows = h.rows(category="message", recipient_id=therapist.id)
    key = f"reply:{therapist.id}:{patient.id}:{int(since.timestamp())}"
    assert [(r.idempotency_key, r.status) for r in rows] == [(key, "sent")]
    assert rows[0].data == {"link": f"/patients/{patient.id}/messages"}
