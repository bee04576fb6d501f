"""`flask accounts ...`: account administration from the command line."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from coaching.accounts import service
from coaching.errors import AppError
from coaching.extensions import db

cli = AppGroup("accounts", help="Manage accounts.")


@cli.command("create-owner")
@click.option("--email", required=True)
@click.option("--password", required=True)
@click.option("--name", "display_name", default="Programme owner", show_default=True)
def create_owner(email: str, password: str, display_name: str) -> None:
    """Create a programme-owner account."""
    if len(password) < 10:
        raise click.BadParameter("at least 10 characters", param_hint="--password")
    try:
        account = service.create_owner(email=email, password=password, display_name=display_name)
        db.session.commit()
    except AppError as exc:
        db.session.rollback()
        raise click.ClickException(exc.message) from exc
    click.echo(f"Created owner {account.email} ({account.id})")
