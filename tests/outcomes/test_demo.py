"""`demo seed` for outcomes: realistic trajectories, groups for the decision aid, idempotent."""

from __future__ import annotations

from sqlalchemy import func, select

from coaching.accounts.models import Account
from coaching.demo.cli import seed_foundation
from coaching.extensions import db
from coaching.metrics.models import PatientActiveWeek
from coaching.outcomes import demo, service
from coaching.outcomes.models import (
    CheckIn,
    OutcomeAlert,
    QuestionnaireResponse,
    QuestionnaireScore,
)


class Progress:
    def __init__(self):
        self.texts = []

    def update(self, n=1):
        pass

    def set_postfix_str(self, text):
        self.texts.append(text)


def _counts():
    return tuple(
        db.session.execute(select(func.count()).select_from(model)).scalar_one()
        for model in (QuestionnaireResponse, QuestionnaireScore, CheckIn, OutcomeAlert)
    )


def test_demo_seed_gives_trajectories_and_is_idempotent(app):
    ctx = seed_foundation(Progress())
    db.session.commit()
    accounts_before = db.session.execute(select(func.count()).select_from(Account)).scalar_one()
    progress = Progress()
    demo.seed(ctx, progress)
    db.session.commit()
    # The bar names the former participants done so far (the slow part of the seed).
    assert progress.texts[0] == "outcomes 1/60 former participants"
    assert progress.texts[-1] == "outcomes 60/60 former participants"
    # The 60 former participants, and nobody else.
    assert db.session.execute(select(func.count()).select_from(Account)).scalar_one() == (
        accounts_before + 60
    )
    result = app.test_cli_runner().invoke(args=["outcomes", "demo-cohort"])  # adds nothing now
    assert result.exit_code == 0, result.output
    assert db.session.execute(select(func.count()).select_from(Account)).scalar_one() == (
        accounts_before + 60
    )
    first = _counts()
    # Their use of the app fades over the weeks, as the retention heat map should show.
    weeks = dict(
        db.session.execute(
            select(PatientActiveWeek.week, func.count())
            .join(Account, Account.id == PatientActiveWeek.patient_id)
            .where(Account.email.like("past%@cohort.demo"))
            .group_by(PatientActiveWeek.week)
        ).all()
    )
    assert weeks[1] > weeks[6] > weeks[12] > 0
    assert first[0] > 60 * 20

    anna = ctx.patients[0]
    timepoints = set(
        db.session.execute(
            select(QuestionnaireResponse.timepoint).where(
                QuestionnaireResponse.patient_id == anna.id
            )
        ).scalars()
    )
    assert timepoints == {"baseline", "month3", "month6", "month12"}
    outcomes = service.outcomes_for(anna, "nl")
    odi = next(s for s in outcomes["scores"] if s["score"] == "odi_percent")
    assert odi["latest_timepoint"] == "month12"
    aid = service.decision_aid(anna, "nl")
    assert aid["comparison"]["shown"] is True
    shown = [o for o in aid["comparison"]["outcomes"] if o["shown"]]
    assert shown and all(o["patients"] >= 10 for o in shown)
    # Realistic: most former participants improve, not all of them, and not all by the same.
    changes = [o["median_change"] for o in shown if o["score"] == "odi_percent"]
    assert all(c < 0 for c in changes)

    # The patient who gets worse at month 3 raised an alert for their therapist.
    chris = ctx.patients[2]
    assert db.session.execute(
        select(OutcomeAlert).where(OutcomeAlert.patient_id == chris.id)
    ).first()

    demo.seed(seed_foundation(Progress()), Progress())
    db.session.commit()
    assert app.test_cli_runner().invoke(args=["outcomes", "demo-cohort"]).exit_code == 0
    assert _counts() == first


def test_demo_cohort_needs_therapists(app):
    result = app.test_cli_runner().invoke(args=["outcomes", "demo-cohort"])
    assert result.exit_code != 0
    assert "demo seed" in result.output
