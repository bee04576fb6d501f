"""`flask --app wsgi outcomes ...`: demo data for the decision aid."""

from __future__ import annotations

import click
from flask.cli import AppGroup
from sqlalchemy import select
from tqdm import tqdm

from coaching.accounts.models import Account
from coaching.extensions import db

cli = AppGroup("outcomes", help="Outcome questionnaires.")


@cli.command("demo-cohort")
def demo_cohort() -> None:
    """Add 60 former participants with outcomes at every time point (running it again adds nothing)."""
    from coaching.outcomes import demo

    therapists = list(
        db.session.execute(
            select(Account).where(Account.role == "therapist").order_by(Account.email)
        ).scalars()
    )
    if not therapists:
        raise click.ClickException("No therapists yet: run `flask --app wsgi demo seed` first.")
    total = sum(count for count, _risk, _range in demo.COHORT)
    with tqdm(total=total, desc="outcomes cohort", unit="patient") as progress:
        demo.seed_cohort(therapists, progress)
    db.session.commit()
    click.echo(f"{total} former participants with outcomes at every time point.")
