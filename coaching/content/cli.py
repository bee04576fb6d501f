"""`flask --app wsgi modules ...`: validate the content in `modules/` and load it."""

from __future__ import annotations

import time
from pathlib import Path

import click
from flask.cli import AppGroup
from tqdm import tqdm

from coaching.content import service
from coaching.extensions import db

cli = AppGroup("modules", help="Programme content (modules/).")

_DIR_OPTION = click.option(
    "--dir",
    "path",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The content folder (default: MODULES_DIR, i.e. modules/).",
)


def _report(report) -> None:
    for problem in report.problems:
        click.echo(str(problem), err=True)


@cli.command("validate")
@_DIR_OPTION
def validate(path: Path | None) -> None:
    """Check the content and list every problem with its file and line (changes nothing)."""
    report = service.validate(path)
    _report(report)
    if not report.ok:
        raise click.ClickException(f"{len(report.errors)} error(s) in the content")
    programme = report.programme
    click.echo(
        f"Content is valid: {len(programme.modules)} modules, {len(programme.lessons())} lessons"
        + (f", {len(report.warnings)} warning(s)" if report.warnings else "")
    )


@cli.command("sync")
@_DIR_OPTION
def sync(path: Path | None) -> None:
    """Validate the content and load it: new versions for changed lessons (idempotent).

    With any validation error, nothing is changed.
    """
    started = time.perf_counter()
    report = service.validate(path)
    _report(report)
    if not report.ok:
        raise click.ClickException(
            f"{len(report.errors)} error(s) in the content: nothing was changed"
        )
    programme = report.programme
    try:
        with tqdm(total=len(programme.lessons()), desc="modules sync", unit="lesson") as bar:
            result = service.sync(programme, progress=bar)
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    counts = result.counts
    seconds = time.perf_counter() - started
    if not result.changed:
        click.echo(
            f"Content unchanged (release {result.release.number}: {len(programme.modules)} "
            f"modules, {len(programme.lessons())} lessons) in {seconds:.1f} s"
        )
        return
    changes = ", ".join(f"{n} {key.replace('_', ' ')}" for key, n in counts.items() if n)
    click.echo(f"Loaded content release {result.release.number} in {seconds:.1f} s: {changes}")
