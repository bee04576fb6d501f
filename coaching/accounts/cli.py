"""`flask accounts ...`: account administration from the command line."""

from __future__ import annotations

import click
from flask.cli import AppGroup
from marshmallow import ValidationError

from coaching.accounts import schemas, service
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
        # The API's own check: an address too long once lower-cased would fail only at the database.
        email = schemas.OwnerCreateSchema(only=("email",)).load({"email": email})["email"]
    except ValidationError as exc:
        messages = [m for field in exc.messages.values() for m in field]
        raise click.BadParameter(" ".join(messages), param_hint="--email") from exc
    try:
        account = service.create_owner(email=email, password=password, display_name=display_name)
        db.session.commit()
    except AppError as exc:
        db.session.rollback()
        raise click.ClickException(exc.message) from exc
    click.echo(f"Created owner {account.email} ({account.id})")
