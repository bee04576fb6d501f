"""`flask --app wsgi metrics ...`: maintenance of the derived metric tables."""

from __future__ import annotations

import time

import click
from flask.cli import AppGroup
from tqdm import tqdm

from coaching.extensions import db
from coaching.metrics import service

cli = AppGroup("metrics", help="Programme metrics.")


class _StageProgress:
    """Moves a tqdm bar one stage on and names the stage that runs next."""

    def __init__(self, bar: tqdm) -> None:
        self.bar = bar
        self.stage = 0
        bar.set_postfix_str(service.REBUILD_STAGES[0])

    def update(self, n: int = 1) -> None:
        self.stage += n
        self.bar.update(n)
        if self.stage < len(service.REBUILD_STAGES):
            self.bar.set_postfix_str(service.REBUILD_STAGES[self.stage])


@cli.command("rebuild")
def rebuild() -> None:
    """Recompute the milestone and active-week tables from the raw events."""
    started = time.perf_counter()
    with tqdm(total=len(service.REBUILD_STAGES), desc="metrics rebuild", unit="stage") as bar:
        progress = _StageProgress(bar)
        counts = service.rebuild(progress)
        db.session.commit()
        service.vacuum_rebuilt_tables()
        progress.update(1)
    click.echo(
        "Rebuilt in {:.1f} s: {}".format(
            time.perf_counter() - started,
            ", ".join(f"{n:,} {table}" for table, n in counts.items()),
        )
    )
