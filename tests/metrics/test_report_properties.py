"""The reports compared with brute-force computations in Python over small random histories."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import timedelta

import pytest
from sqlalchemy import select

from coaching.enrolment.models import Enrollment
from coaching.extensions import db
from coaching.metrics import reports, service
from coaching.metrics.funnel import Scope, day_start_ts
from coaching.metrics.models import PatientActivity
from tests.conftest import START

WEEK = 7 * 86400
TIMEZONES = ("Europe/Amsterdam", "America/New_York", "Pacific/Auckland", "UTC")


def brute_retention(now, weeks: int) -> list[tuple]:
    """Returns [(cohort, size, eligible per week, active per week)] as docs/metrics.md says,
    every time truncated to whole seconds first."""
    activity = defaultdict(set)
    for row in db.session.execute(select(PatientActivity)).scalars():
        activity[row.patient_id].add(service.epoch_seconds(row.occurred_at))
    cohorts: dict = {}
    for e in db.session.execute(select(Enrollment)).scalars():
        cohort = e.started_on - timedelta(days=e.started_on.weekday())
        entry = cohorts.setdefault(cohort, [0, [0] * weeks, [0] * weeks])
        entry[0] += 1
        start = service.epoch_seconds(e.enrolled_at)
        for n in range(1, weeks + 1):
            if start + n * WEEK <= service.epoch_seconds(now):
                entry[1][n - 1] += 1
                if any((n - 1) * WEEK <= t - start < n * WEEK for t in activity[e.patient_id]):
                    entry[2][n - 1] += 1
    return [(c.isoformat(), *v) for c, v in sorted(cohorts.items())]


@pytest.mark.parametrize("seed", range(4))
def test_retention_matches_brute_force(world, make, clock, seed):
    """Enrolments and activity at random times with fractions of a second, in several time
    zones, read at moments on and around the week boundaries."""
    rng = random.Random(seed)
    for _ in range(6):
        clock.set(
            START
            + timedelta(seconds=rng.randint(0, 30 * 86400), microseconds=rng.randint(0, 999999))
        )
        make.patient(world.therapist, timezone=rng.choice(TIMEZONES))
    enrollments = db.session.execute(select(Enrollment)).scalars().all()
    for e in enrollments:
        for _ in range(rng.randint(0, 5)):
            offset = rng.choice(
                [rng.randint(-86400, 40 * 86400), rng.choice([0, 1, 2]) * WEEK + rng.randint(-1, 1)]
            )
            at = e.enrolled_at + timedelta(seconds=offset, microseconds=rng.randint(0, 999999))
            service.record_activity(patient_id=e.patient_id, kind="app_opened", occurred_at=at)
    db.session.commit()
    for _ in range(10):
        e = rng.choice(enrollments)
        now = e.enrolled_at + timedelta(
            days=7 * rng.randint(0, 5), microseconds=rng.randint(-999999, 999999)
        )
        clock.set(now)
        got = reports.retention(Scope(), 6)
        have = [
            (
                c["cohort"],
                c["size"],
                [w["eligible"] for w in c["weeks"]],
                [w["active"] for w in c["weeks"]],
            )
            for c in got["cohorts"]
        ]
        assert have == brute_retention(now, 6), now


def test_retention_week_is_over_at_the_whole_second(world, make, clock):
    # Enrolled at 09:00:00.7: week 1 is over at 09:00:00 a week later (whole seconds), even
    # though 09:00:00.2 is before 09:00:00.7.
    clock.set(START + timedelta(milliseconds=700))
    make.patient(world.therapist)
    clock.set(START + timedelta(days=7, milliseconds=200))
    cohort = next(
        c for c in reports.retention(Scope(), 2)["cohorts"] if c["cohort"] == "2026-03-02"
    )
    assert [w["eligible"] for w in cohort["weeks"]] == [4, 0]


def brute_coaching(conversations: dict, messages: list, now, scope: Scope) -> dict:
    """Returns {(level, key): reply statistics} as docs/metrics.md defines the waits."""
    from statistics import median

    def hours(seconds):
        return None if seconds is None else round(seconds / 3600, 2)

    waits = []
    for conversation_id, (therapist_id, practice_id) in conversations.items():
        if scope.therapist_id not in (None, therapist_id):
            continue
        if scope.practice_id not in (None, practice_id):
            continue
        sent = sorted(
            (t, 0 if role == "patient" else 1)
            for cid, role, t in messages
            if cid == conversation_id
        )
        start = None
        for t, therapist in sent:
            if not therapist and start is None:
                start = t
            elif therapist and start is not None:
                waits.append((therapist_id, practice_id, start, t))
                start = None
        if start is not None:
            waits.append((therapist_id, practice_id, start, None))
    lo = day_start_ts(scope.date_from) if scope.date_from else None
    hi = day_start_ts(scope.date_to + timedelta(days=1)) if scope.date_to else None
    groups = defaultdict(list)
    for therapist_id, practice_id, start, reply in waits:
        if (lo is None or start >= lo) and (hi is None or start < hi):
            for key in (("therapist", therapist_id), ("practice", practice_id), ("all", "all")):
                groups[key].append((start, reply))
    now_s = service.epoch_seconds(now)
    stats = {}
    for key, members in groups.items():
        answered = [reply - start for start, reply in members if reply is not None]
        waiting = [now_s - start for start, reply in members if reply is None]
        within = sum(1 for s in answered if s <= 48 * 3600)
        late = sum(1 for s in waiting if s > 48 * 3600)
        stats[key] = {
            "replies": len(answered),
            "median_hours": hours(median(answered)) if answered else None,
            "replied_within_48h": within,
            "share_within_48h": round(within / (len(answered) + late), 4)
            if answered or late
            else None,
            "awaiting_reply": len(waiting),
            "awaiting_over_48h": late,
            "oldest_awaiting_hours": hours(max(waiting)) if waiting else None,
        }
    return stats


NO_WAITS = dict.fromkeys(
    ("replies", "replied_within_48h", "awaiting_reply", "awaiting_over_48h"), 0
)
REPLY_KEYS = (
    "replies",
    "median_hours",
    "replied_within_48h",
    "share_within_48h",
    "awaiting_reply",
    "awaiting_over_48h",
    "oldest_awaiting_hours",
)


@pytest.mark.parametrize("seed", range(4))
def test_coaching_matches_brute_force(world, clock, seed):
    """Messages at random times, many in the same second (fractions cut off), some never sent,
    read with random periods and practice filters."""
    from datetime import date

    from coaching.messaging import service as messaging
    from coaching.messaging.models import Message

    rng = random.Random(seed)
    conversations = {}
    for patient, therapist in (
        (world.patient, world.therapist),
        (world.other_patient, world.therapist),
        (world.foreign_patient, world.other_therapist),
    ):
        c = messaging.ensure_conversation(patient_id=patient.id, therapist_id=therapist.id)
        conversations[c.id] = (therapist.id, therapist.practice_id)
    messages = []
    for conversation_id in conversations:
        t = START + timedelta(seconds=rng.randint(0, 86400))
        for _ in range(rng.randint(0, 12)):
            t += timedelta(
                seconds=rng.choice([0, 0, 1, rng.randint(0, 4 * 86400)]),
                microseconds=rng.choice([0, rng.randint(0, 999_999)]),
            )
            role = rng.choice(["patient", "therapist"])
            sent = None if rng.random() < 0.1 else t  # a video that failed was never sent
            db.session.add(
                Message(
                    conversation_id=conversation_id,
                    sender_role=role,
                    kind="text",
                    body="…",
                    status="ready",
                    created_at=t,
                    sent_at=sent,
                )
            )
            if sent is not None:
                messages.append((conversation_id, role, service.epoch_seconds(sent)))
    db.session.commit()
    days = [None, date(2026, 3, 2), date(2026, 3, 3), date(2026, 3, 5)]
    for _ in range(6):
        clock.set(START + timedelta(seconds=rng.randint(5 * 86400, 30 * 86400)))
        first, last = rng.choice(days), rng.choice(days)
        if first and last and first > last:
            first, last = last, first
        scope = Scope(
            date_from=first, date_to=last, practice_id=rng.choice([None, world.practice_a.id])
        )
        got = reports.coaching(scope)
        have = {("all", "all"): {k: got["all"][k] for k in REPLY_KEYS}}
        for practice in got["practices"]:
            have[("practice", practice["practice_id"])] = {k: practice[k] for k in REPLY_KEYS}
            for therapist in practice["therapists"]:
                have[("therapist", therapist["therapist_id"])] = {
                    k: therapist[k] for k in REPLY_KEYS
                }
        want = brute_coaching(conversations, messages, clock.now(), scope)
        want.setdefault(("all", "all"), dict.fromkeys(REPLY_KEYS) | NO_WAITS)
        assert have == want, scope
