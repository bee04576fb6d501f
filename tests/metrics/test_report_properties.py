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
from coaching.metrics.funnel import Scope
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
