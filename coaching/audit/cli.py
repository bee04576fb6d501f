"""`flask audit verify`: check that no audit row was changed, removed or inserted."""

from __future__ import annotations

import click
from flask.cli import AppGroup
from sqlalchemy import func, select
from tqdm import tqdm

from coaching.audit import service
from coaching.audit.models import AuditEntry
from coaching.extensions import db

cli = AppGroup("audit", help="The audit log.")


@cli.command("verify")
def verify() -> None:
    """Recompute the hash chain of the audit log; exit 1 when it was tampered with."""
    total = db.session.execute(select(func.count()).select_from(AuditEntry)).scalar_one()
    with tqdm(total=total, desc="audit verify", unit="row") as progress:
        result = service.verify(progress=progress)
    for problem in result.problems:
        click.echo(f"PROBLEM: {problem}", err=True)
    if not result.ok:
        raise SystemExit(1)
    click.echo(f"Audit log intact: {result.checked} rows checked.")
