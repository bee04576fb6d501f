"""`flask metrics rebuild`: the derived tables from the raw rows, with progress, and (on
PostgreSQL) vacuumed so that the dashboard's index-only scans need not visit the rows."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, func, select, text

from coaching.extensions import db
from coaching.metrics import service
from coaching.metrics.models import FunnelMilestone, PatientActiveWeek
from tests.conftest import START
from tests.metrics.test_funnel_property import _snapshot


def test_rebuild_command_recomputes_the_tables(app, make, clock):
    therapist = make.therapist()
    patient = make.patient(therapist)
    others = [make.invite(therapist) for _ in range(3)]
    opened_at = START + timedelta(hours=2)
    # Out of order, repeated, and one occurrence before the previous step (a clock behind).
    for at in (opened_at + timedelta(days=1), opened_at, opened_at - timedelta(days=3)):
        service.record_event(invite=others[0], name="invite_opened", occurred_at=at, once=False)
    service.record_event(
        invite=others[1], name="registered", occurred_at=opened_at - timedelta(days=1)
    )
    clock.set(START + timedelta(days=9))
    service.record_activity(patient_id=patient.id, kind="lesson_completed")
    db.session.commit()
    before = _snapshot()
    assert len(before[0]) == 4 and before[1]
    # The derived rows are lost (or wrong); the command brings them back from the raw events.
    db.session.execute(delete(FunnelMilestone))
    db.session.execute(delete(PatientActiveWeek))
    db.session.commit()

    result = app.test_cli_runner().invoke(args=["metrics", "rebuild"])

    assert result.exit_code == 0, result.output
    assert "4 funnel_milestones" in result.output
    assert f"{len(before[1])} patient_active_weeks" in result.output
    assert "4/4" in result.output  # the progress bar went through every stage
    db.session.expire_all()
    assert _snapshot() == before
    if db.engine.dialect.name == "postgresql":
        pages, visible = db.session.execute(
            text("SELECT relpages, relallvisible FROM pg_class WHERE relname = 'funnel_milestones'")
        ).one()
        assert pages >= 1 and visible == pages  # vacuumed: every page all-visible
    assert db.session.scalar(select(func.count()).select_from(FunnelMilestone)) == 4
