"""`demo seed` for content: the shipped content loaded, realistic progress, idempotent."""

from __future__ import annotations

from sqlalchemy import func, select

from coaching.appointments.models import Appointment
from coaching.content import demo, service
from coaching.content.models import ContentRelease, LessonAnswer, LessonProgress
from coaching.demo.cli import seed_foundation
from coaching.enrolment.service import enrollment_for
from coaching.extensions import db
from coaching.metrics.models import UptakeEvent


class Progress:
    def update(self, n=1):
        pass

    def set_postfix_str(self, text):
        pass


def _count(model) -> int:
    return db.session.execute(select(func.count()).select_from(model)).scalar_one()


def _counts():
    return tuple(
        _count(m) for m in (ContentRelease, LessonProgress, LessonAnswer, Appointment, UptakeEvent)
    )


def test_demo_seed_loads_content_gives_progress_and_is_idempotent(app):
    ctx = seed_foundation(Progress())
    db.session.commit()
    demo.seed(ctx, Progress())
    db.session.commit()
    assert _count(ContentRelease) == 1
    by_email = {p.email: p for p in ctx.patients}
    # The longest in the programme finished it; the newest has just begun; Dewi never consented.
    anna = by_email["anna@patient.demo"]
    assert enrollment_for(anna.id).status == "completed"
    assert all(m.completed for m in service.programme_state(anna))
    finn = by_email["finn@patient.demo"]
    states = service.programme_state(finn)
    assert 0 < sum(m.lessons_completed for m in states) < sum(len(m.lessons) for m in states)
    assert _count(LessonAnswer) > 0 and _count(Appointment) > 0
    dewi = by_email["dewi@patient.demo"]
    assert (
        db.session.execute(
            select(func.count())
            .select_from(LessonProgress)
            .where(LessonProgress.patient_id == dewi.id)
        ).scalar_one()
        == 0
    )
    before = _counts()
    demo.seed(seed_foundation(Progress()), Progress())
    db.session.commit()
    assert _counts() == before
