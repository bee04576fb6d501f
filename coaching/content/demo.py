"""Demo progress: the content loaded, and each consenting demo patient at their own point of the
programme, with lessons completed at realistic times, reflections written, and appointments.

The patients are put at the same points as the outcomes demo puts them (its `STAGES`, when that
domain is there): a fresh demo enrolment has its start moved back, so that months of progress
fit behind it. The progress itself goes through the service, as of the moment it happened (the
app's clock is set to that moment meanwhile), so the unlock rule, completion and the uptake and
activity records are exactly what a real patient would leave. Patients who have any progress or
appointment are left alone: running the seed again adds nothing.
"""

from __future__ import annotations

import contextlib
import logging
import random
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import select

from coaching import clock
from coaching.accounts.models import Account
from coaching.appointments import service as appointments
from coaching.appointments.models import Appointment
from coaching.clock import FrozenClock
from coaching.content import service
from coaching.content.models import LessonProgress
from coaching.enrolment.service import (
    current_acceptance,
    enrollment_for,
    local_date,
    move_enrolment_back,
)
from coaching.errors import AppError
from coaching.extensions import db

log = logging.getLogger(__name__)

# Days into the programme by position, as in the outcomes demo, and how far each one gets:
# None = keeps up with the programme; a number = stops after that many modules.
DEFAULT_DAYS = (380, 200, 110, 45, 20, 8)
STOPS_AFTER = (None, None, 5, None, None, None)

REFLECTIONS = {
    "nl": [
        "Weer een hele middag in de tuin kunnen werken, ook als mijn rug zeurt.",
        "Met de kleinkinderen naar de speeltuin gaan in plaats van thuis te blijven.",
        "Ik merk dat ik veel energie stop in het wegduwen van de pijn.",
        "Het rustig ademen hielp me vandaag om niet meteen te stoppen met wandelen.",
        "Op de fiets naar mijn werk, in kleine stukjes opgebouwd.",
        "Er weer zijn voor mijn vrienden, ook op dagen met meer pijn.",
        "De gedachte 'dit gaat nooit over' kwam vaak langs. Ik kon hem laten gaan.",
    ],
    "en": [
        "Spending a whole afternoon in the garden again, even when my back nags.",
        "Taking the grandchildren to the playground instead of staying at home.",
        "I notice how much energy I put into pushing the pain away.",
        "Breathing calmly helped me today not to stop walking straight away.",
        "Cycling to work, built up in small steps.",
        "Being there for my friends again, also on days with more pain.",
        "The thought 'this will never go away' came by often. I could let it go.",
    ],
}


@contextlib.contextmanager
def _clock_at(at: datetime):
    """Let the services believe it is `at` (the demo records the past as it happened)."""
    previous = current_app.extensions["clock"]
    current_app.extensions["clock"] = FrozenClock(at)
    try:
        yield
    finally:
        current_app.extensions["clock"] = previous


def _local(patient: Account, day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=ZoneInfo(patient.timezone)).astimezone(
        UTC
    )


def _stage_days() -> tuple[int, ...]:
    try:
        from coaching.outcomes.demo import STAGES
    except ImportError:
        return DEFAULT_DAYS
    return tuple(stage["days"] for stage in STAGES)


def _stage(patient: Account, days: int) -> None:
    """Move a fresh demo enrolment's start back so the patient is `days` into the programme."""
    enrollment = enrollment_for(patient.id)
    today = local_date(patient)
    if (today - enrollment.started_on).days >= 14:
        return
    started_on = today - timedelta(days=days)
    move_enrolment_back(enrollment, started_on, _local(patient, started_on, 10))


def _has_progress(patient: Account) -> bool:
    return (
        db.session.execute(
            select(LessonProgress.id).where(LessonProgress.patient_id == patient.id).limit(1)
        ).first()
        is not None
    )


def _do_lesson(patient: Account, lesson_id: str, at: datetime, rng: random.Random) -> None:
    with _clock_at(at):
        access = service.lesson_access(patient, lesson_id)
        service.save_progress(patient=patient, lesson_id=lesson_id, status="started")
    answers = {}
    for block in service.localized(access.version.body, patient.locale)["blocks"]:
        if block["type"] == "reflection":
            answers[block["id"]] = rng.choice(REFLECTIONS.get(patient.locale, REFLECTIONS["nl"]))
        elif block["type"] == "exercise" and rng.random() < 0.8:
            answers[block["id"]] = True
    with _clock_at(at + timedelta(minutes=rng.randint(8, 25))):
        service.save_progress(
            patient=patient, lesson_id=lesson_id, status="completed", answers=answers
        )


def _progress(patient: Account, stop_after: int | None, rng: random.Random) -> int:
    """Complete lessons from enrolment up to now at a steady pace; returns lessons done."""
    enrollment = enrollment_for(patient.id)
    now = clock.now()
    days = service.unlock_days_per_module()
    done = 0
    ready_day = 0  # days after the start when the previous module was completed
    for index, state in enumerate(service.programme_state(patient, enrollment)):
        if stop_after is not None and index >= stop_after:
            break
        day = max(index * days, ready_day) + rng.randint(0, 2)
        for lesson_state in state.lessons:
            at = _local(
                patient, enrollment.started_on + timedelta(days=day), rng.randint(18, 21), 5
            )
            if at + timedelta(hours=1) > now:
                return done
            _do_lesson(patient, lesson_state.lesson.id, at, rng)
            done += 1
            day += rng.randint(0, 2)
        ready_day = day
    return done


def _appointments(patient: Account, index: int, rng: random.Random) -> None:
    """An intake a week after the start, and the next session a few days ahead."""
    has_any = db.session.execute(
        select(Appointment.id).where(Appointment.patient_id == patient.id).limit(1)
    ).first()
    if has_any is not None or patient.therapist_id is None:
        return
    therapist = db.session.get(Account, patient.therapist_id)
    enrollment = enrollment_for(patient.id)
    now = clock.now()
    plans = [
        (
            _local(patient, enrollment.started_on, 11),
            _local(patient, enrollment.started_on + timedelta(days=7), 9 + index % 8),
            "in_person",
            "Kennismaking en hulpvraag",
        ),
        (
            now,
            _local(patient, local_date(patient) + timedelta(days=2 + index), 13 + index % 4),
            "video_call" if index % 2 else "in_person",
            "Bespreken hoe de oefeningen gaan",
        ),
    ]
    for planned_at, starts_at, kind, note in plans:
        planned_at = min(planned_at, now)
        if starts_at <= planned_at:
            continue
        try:
            with _clock_at(planned_at):
                appointments.plan_appointment(
                    therapist=therapist,
                    patient_id=patient.id,
                    starts_at=starts_at,
                    duration_minutes=rng.choice((30, 45)),
                    kind=kind,
                    note=note,
                )
        except AppError as exc:  # e.g. the therapist is busy then: leave this one out
            log.info("demo appointment left out: %s", exc.message)


def seed(ctx, progress) -> None:
    """Load the content if it never was, then give the demo patients progress (idempotent)."""
    if not service.is_loaded():
        report, _ = service.load_from_disk()
        for problem in report.problems:
            log.warning("content: %s", problem)
        if not report.ok:
            log.error("the content in modules/ is not valid: no demo progress")
            return
    stages = _stage_days()
    consented = [p for p in ctx.patients if current_acceptance(p.id) is not None]
    for index, patient in enumerate(consented):
        rng = random.Random(f"content-demo:{patient.email}")
        if not _has_progress(patient):
            _stage(patient, stages[index % len(stages)])
            _progress(patient, STOPS_AFTER[index % len(STOPS_AFTER)], rng)
        _appointments(patient, index, rng)
    db.session.flush()
