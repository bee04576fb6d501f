"""Demo outcomes: baseline and follow-up questionnaires with realistic improvement and spread.

Two kinds of demo patients get answers:

- the foundation's demo patients (`ctx.patients`, those who consented). Each is put at its own
  point of the programme (from a week to more than a year in) so that the app shows due
  questionnaires, follow-ups and trends: a freshly seeded enrolment (started within 14 days,
  no answers yet) has its start moved back to that point; an older one is kept as it is. They
  answer every time point that has come round, with weekly check-ins, and one of them gets worse
  at month 3 so that the therapist sees an alert.
- a cohort of 60 former programme participants (`past01@cohort.demo` …, enrolled 13–20 months
  ago, completed, no invite and so outside the uptake funnel, no password anyone knows) with
  all four time points and their weekly use of the app, so that the decision aid has groups of
  at least 10 comparable patients, and the owners' outcome benchmark and retention heat map
  have data to show. `demo seed` adds it; `flask --app wsgi outcomes demo-cohort` adds it alone.

Answers are drawn from a random generator seeded per patient: running the seed again finds
every response in place and adds nothing.
"""

from __future__ import annotations

import random
import secrets
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from coaching import clock
from coaching.accounts import service as accounts
from coaching.accounts.models import Account
from coaching.enrolment.models import Enrollment
from coaching.enrolment.service import (
    current_acceptance,
    enrollment_for,
    local_date,
    move_enrolment_back,
)
from coaching.extensions import db
from coaching.outcomes import scoring, service
from coaching.outcomes.models import CheckIn, QuestionnaireResponse
from coaching.outcomes.schedule import SCHEDULE, TIMEPOINTS, window

# Days into the programme for each foundation demo patient, by position, and their profile.
STAGES = [
    {"days": 380, "risk": "medium", "odi": 34, "trend": "improves"},
    {"days": 200, "risk": "low", "odi": 26, "trend": "improves"},
    {"days": 110, "risk": "high", "odi": 48, "trend": "worsens"},
    {"days": 45, "risk": "medium", "odi": 30, "trend": "improves"},
    {"days": 20, "risk": "medium", "odi": 36, "trend": "improves"},
    {"days": 8, "risk": "low", "odi": 16, "trend": "improves"},
]
# Former participants: (how many, STarT Back risk, baseline ODI range).
COHORT = [
    (24, "medium", (24, 40)),
    (12, "low", (10, 20)),
    (12, "low", (22, 38)),
    (12, "high", (42, 60)),
]
ACTIVITIES = [
    ("Tuinieren", "Gardening"),
    ("Fietsen", "Cycling"),
    ("Boodschappen tillen", "Carrying groceries"),
    ("Langer dan een uur zitten", "Sitting for more than an hour"),
    ("Met de kinderen spelen", "Playing with the children"),
    ("Wandelen met de hond", "Walking the dog"),
    ("Stofzuigen", "Vacuuming"),
    ("Autorijden", "Driving"),
    ("Sporten", "Sports"),
]


def _clamp(value: float, low: int, high: int) -> int:
    return max(low, min(high, round(value)))


class Trajectory:
    """One patient's course: baseline levels and the change at each follow-up."""

    def __init__(
        self, rng: random.Random, *, risk: str, odi: float, trend: str = "improves", locale="nl"
    ):
        self.rng = rng
        self.locale = locale
        self.risk = risk
        self.odi = odi
        self.back = _clamp(4 + odi / 12 + rng.gauss(0, 1), 2, 10)
        self.leg = _clamp(rng.uniform(0, 6), 0, 10)
        self.activities = rng.sample(ACTIVITIES, rng.choice((3, 3, 4, 5)))
        self.psfs = [_clamp(rng.gauss(3.5, 1.5), 0, 8) for _ in self.activities]
        self.engagement = rng.uniform(1.5, 3.5)
        self.willingness = rng.uniform(1.5, 3.5)
        self.work = rng.choices(
            ["working", "sick_leave", "not_working", "retired", "student"], [50, 20, 12, 14, 4]
        )[0]
        # Share of the possible gain reached at each follow-up (negative: worse).
        mean = {"low": 0.45, "medium": 0.40, "high": 0.25}[risk]
        gain = rng.gauss(mean, 0.25) if trend == "improves" else rng.uniform(-0.45, -0.3)
        self.gain = {
            "baseline": 0.0,
            "month3": gain,
            "month6": gain * rng.uniform(0.9, 1.25),
            "month12": gain * rng.uniform(0.85, 1.35),
        }

    def _odi_answers(self, percent: float) -> dict:
        total = _clamp(percent / 2, 0, 50)
        levels = [0] * 10
        order = list(range(10))
        for _ in range(total):
            open_ = [i for i in order if levels[i] < 5]
            levels[self.rng.choice(open_)] += 1
        answers = {f"odi{n + 1}": v for n, v in enumerate(levels)}
        if self.rng.random() < 0.3:
            answers.pop("odi8")  # often left out: sex life
        return answers

    def answers(self, key: str, timepoint: str) -> dict:
        """Returns answers to a questionnaire at a time point."""
        rng, g = self.rng, self.gain[timepoint]
        odi = self.odi * (1 - g) + rng.gauss(0, 1 if timepoint == "baseline" else 3)
        if key == "odi":
            return self._odi_answers(max(0.0, min(100.0, odi)))
        if key == "nrs":
            return {
                "back_pain": _clamp(self.back * (1 - g) + rng.gauss(0, 0.8), 0, 10),
                "leg_pain": _clamp(self.leg * (1 - g) + rng.gauss(0, 0.8), 0, 10),
            }
        if key == "eq5d5l":
            base = odi / 22
            dims = ("mobility", "self_care", "usual_activities", "pain_discomfort")
            answers = {d: _clamp(1 + base + rng.gauss(0, 0.6), 1, 5) for d in dims}
            answers["self_care"] = min(answers["self_care"], answers["mobility"])
            answers["pain_discomfort"] = _clamp(answers["pain_discomfort"] + 0.5, 1, 5)
            psych = {"low": 0.3, "medium": 0.8, "high": 1.6}[self.risk] * (1 - g)
            answers["anxiety_depression"] = _clamp(1 + psych + rng.gauss(0, 0.5), 1, 5)
            answers["vas"] = _clamp(88 - 0.75 * odi + rng.gauss(0, 7), 0, 100)
            return answers
        if key == "psfs":
            answers = {}
            pairs = zip(self.activities, self.psfs, strict=True)
            for n, ((nl, en), rating) in enumerate(pairs, 1):
                answers[f"activity{n}"] = en if self.locale == "en" else nl
                answers[f"rating{n}"] = _clamp(rating + g * 8 + rng.gauss(0, 1), 0, 10)
            return answers
        if key == "cpaq8":
            engagement = self.engagement + 2.5 * max(g, -0.3)
            willingness = self.willingness + 2.0 * max(g, -0.3)
            answers = {}
            for n in range(1, 9):
                if f"cpaq{n}" in scoring.CPAQ_ACTIVITY_ENGAGEMENT:
                    answers[f"cpaq{n}"] = _clamp(engagement + rng.gauss(0, 0.8), 0, 6)
                else:  # reverse scored: a high willingness is a low answer
                    answers[f"cpaq{n}"] = _clamp(6 - willingness + rng.gauss(0, 0.8), 0, 6)
            return answers
        if key == "startback":
            while True:
                physical = [int(rng.random() < 0.5) for _ in range(4)]
                psych_p = {"low": 0.1, "medium": 0.3, "high": 0.85}[self.risk]
                answers = {f"sbt{n + 1}": v for n, v in enumerate(physical)}
                answers |= {f"sbt{n}": int(rng.random() < psych_p) for n in range(5, 9)}
                answers["sbt9"] = rng.choice(
                    {"low": (0, 1, 2), "medium": (2, 2, 3), "high": (3, 4)}[self.risk]
                )
                if scoring.score_startback(answers)["risk"] == self.risk:
                    return answers
        if key == "careuse":
            less = max(0.0, min(1.0, 1 - g))
            follow_up = timepoint != "baseline"
            physio = (
                rng.randint(4, 7)
                if timepoint == "month3"
                else _clamp(rng.gauss(5, 2) * less, 0, 20)
            )
            work = self.work
            if work == "sick_leave" and follow_up and g > 0.3 and rng.random() < 0.6:
                work = "working"
            sick = {"sick_leave": rng.randint(20, 80), "working": rng.choice((0, 0, 0, 2, 5))}
            return {
                "gp_visits": _clamp(rng.gauss(2, 1) * less, 0, 10),
                "physio_visits": physio,
                "specialist_visits": int(rng.random() < 0.25 * less),
                "other_visits": _clamp(rng.gauss(0.8, 1) * less, 0, 6),
                "imaging": int(rng.random() < (0.3 if not follow_up else 0.1 * less)),
                "medication": rng.choices(
                    ["none", "simple", "opioid"],
                    [30 + 40 * max(g, 0), 60, 10 * less],
                )[0],
                "work_status": work,
                "sick_leave_days": sick.get(work, 0),
            }
        raise ValueError(key)


def _at(patient: Account, day: date, hour: int = 19) -> datetime:
    local = datetime.combine(day, time(hour, 0), tzinfo=ZoneInfo(patient.timezone))
    return local.astimezone(UTC)


def _answered(patient_id: str) -> set[tuple[str, str]]:
    return set(
        db.session.execute(
            select(QuestionnaireResponse.questionnaire_key, QuestionnaireResponse.timepoint).where(
                QuestionnaireResponse.patient_id == patient_id
            )
        ).all()
    )


def seed_patient(patient: Account, trajectory: Trajectory, *, checkins: bool) -> int:
    """Answer every time point that has come round for a patient; returns responses added."""
    enrollment = enrollment_for(patient.id)
    now = clock.now()
    today = local_date(patient)
    done = _answered(patient.id)
    rng = trajectory.rng
    added = 0
    for timepoint in TIMEPOINTS:
        w = window(enrollment.started_on, timepoint)
        offset = rng.randint(0, 3) if timepoint == "baseline" else rng.randint(-5, 9)
        day = w.due_on + timedelta(days=offset)
        for key in SCHEDULE[timepoint]:
            answers = trajectory.answers(key, timepoint)  # drawn always: same stream every run
            at = _at(patient, day, 19 + rng.randint(0, 2))
            if day > today or at > now or (key, timepoint) in done:
                continue
            service.submit_response(
                patient=patient, key=key, answers=answers, timepoint=timepoint, submitted_at=at
            )
            added += 1
    if checkins:
        _seed_checkins(patient, trajectory, enrollment, today, now)
    return added


def _seed_checkins(patient, trajectory, enrollment, today, now) -> None:
    rng = trajectory.rng
    weeks = min((today - enrollment.started_on).days // 7, 16)
    existing = set(
        db.session.execute(select(CheckIn.week).where(CheckIn.patient_id == patient.id)).scalars()
    )
    for week in range(1, weeks + 1):
        if rng.random() > 0.8:
            continue
        share = min(week / 13, 1.0)
        pain = trajectory.back * (1 - trajectory.gain["month3"] * share) + rng.gauss(0, 0.8)
        did = rng.random() < 0.7 if week >= 3 else None
        day = enrollment.started_on + timedelta(days=7 * (week - 1) + rng.randint(3, 6))
        at = _at(patient, day, 20)
        if week in existing or at > now:
            continue
        service.submit_checkin(
            patient=patient,
            back_pain=_clamp(pain, 0, 10),
            did_committed_action=did,
            submitted_at=at,
        )


def _stage_enrollment(patient: Account, days: int) -> None:
    """Move a fresh demo enrolment's start back so the patient is `days` into the programme."""
    enrollment = enrollment_for(patient.id)
    today = local_date(patient)
    if (today - enrollment.started_on).days >= 14 or _answered(patient.id):
        return
    started_on = today - timedelta(days=days)
    move_enrolment_back(enrollment, started_on, _at(patient, started_on, 10))


def _cohort_patient(n: int, therapist: Account, months_ago: int, rng: random.Random) -> Account:
    email = f"past{n:02d}@cohort.demo"
    patient = accounts.find_by_email(email)
    if patient is not None:
        return patient
    from coaching.content import service as content

    patient = accounts.create_account(
        email=email,
        password=secrets.token_urlsafe(24),  # former participants do not sign in
        role="patient",
        display_name=f"Oud-deelnemer {n:02d}",
        locale="nl",
        practice_id=therapist.practice_id,
        therapist_id=therapist.id,
    )
    started_on = local_date(patient) - timedelta(days=months_ago * 30 + rng.randint(0, 20))
    db.session.add(
        Enrollment(
            patient_id=patient.id,
            invite_id=None,
            therapist_id=therapist.id,
            practice_id=therapist.practice_id,
            programme_slug=content.programme_slug(),
            status="completed",
            started_on=started_on,
            enrolled_at=_at(patient, started_on, 10),
            completed_at=_at(patient, started_on + timedelta(days=91), 12),
        )
    )
    db.session.flush()
    _seed_weekly_use(patient, started_on, rng)
    return patient


def _seed_weekly_use(patient: Account, started_on: date, rng: random.Random) -> None:
    """Record the former participant's use of the app over the 13 programme weeks, fading as
    it does in real programmes, so that the owners' retention heat map has a story to tell."""
    from coaching.metrics import service as metrics

    for week in range(13):
        if rng.random() > max(0.45, 0.97 - 0.045 * week):
            continue
        day = started_on + timedelta(days=7 * week + rng.randint(0, 6))
        metrics.record_activity(
            patient_id=patient.id, kind="app_opened", occurred_at=_at(patient, day)
        )


def seed(ctx, progress) -> None:
    """Seed outcomes for the foundation's demo patients (idempotent)."""
    consented = [p for p in ctx.patients if current_acceptance(p.id) is not None]
    for index, patient in enumerate(consented):
        stage = STAGES[index % len(STAGES)]
        _stage_enrollment(patient, stage["days"])
        rng = random.Random(f"outcomes-demo:{patient.email}")
        trajectory = Trajectory(
            rng, risk=stage["risk"], odi=stage["odi"], trend=stage["trend"], locale=patient.locale
        )
        seed_patient(patient, trajectory, checkins=True)
    # Former participants give the outcome benchmark and the decision aid their comparison groups.
    seed_cohort(ctx.therapists, _CohortProgress(progress))
    db.session.flush()


class _CohortProgress:
    """Names the former participants done so far on the demo's bar (about half its time),
    whose steps are one per domain."""

    def __init__(self, bar) -> None:
        self.bar, self.done = bar, 0
        self.total = sum(count for count, _risk, _range in COHORT)

    def update(self, n: int = 1) -> None:
        self.done += n
        if hasattr(self.bar, "set_postfix_str"):
            self.bar.set_postfix_str(f"outcomes {self.done}/{self.total} former participants")


def seed_cohort(therapists: list[Account], progress=None) -> int:
    """Add the former participants with all four time points (idempotent); returns how many
    there are. Run by `flask --app wsgi outcomes demo-cohort` after `demo seed`."""
    n = 0
    for count, risk, (low, high) in COHORT:
        for _ in range(count):
            n += 1
            rng = random.Random(f"outcomes-cohort:{n}")
            therapist = therapists[n % len(therapists)]
            patient = _cohort_patient(n, therapist, 13 + n % 8, rng)
            trajectory = Trajectory(rng, risk=risk, odi=rng.uniform(low, high))
            seed_patient(patient, trajectory, checkins=False)
            if progress is not None:
                progress.update(1)
    db.session.flush()
    return n
