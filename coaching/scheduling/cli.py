"""`flask --app wsgi scheduler run|tick`: run the collected jobs."""

from __future__ import annotations

import contextlib
import logging
import signal
from datetime import UTC, datetime

import click
from flask import current_app
from flask.cli import AppGroup

from coaching.scheduling import collect_jobs
from coaching.scheduling.runner import build_scheduler, run_job

log = logging.getLogger(__name__)

cli = AppGroup("scheduler", help="Run the periodic jobs (planning, dispatch, clean-up).")


@cli.command("run")
def run() -> None:
    """Run every job at its interval until SIGINT or SIGTERM (any number of these may run side
    by side); the jobs running then finish first."""
    app = current_app._get_current_object()
    scheduler = build_scheduler(app)
    for job in scheduler.get_jobs():
        click.echo(f"{job.name}: {job.trigger}")

    def stop(signum, _frame) -> None:
        log.info("scheduler: %s, stopping once the running jobs are done", signal.strsignal(signum))
        if scheduler.running:
            scheduler.shutdown(wait=False)  # the process still waits for running jobs to end

    # Both set here: a process started in the background by a shell without job control
    # inherits SIGINT ignored (it then never stopped), and SIGTERM (what process managers send)
    # would otherwise end the process in the middle of a job.
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with contextlib.suppress(KeyboardInterrupt, SystemExit):
            scheduler.start()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _parse_now(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise click.BadParameter(f"not an ISO 8601 time: {value!r}") from exc
    if at.tzinfo is None:
        raise click.BadParameter("give a time zone, e.g. 2026-03-02T18:00:00Z")
    return at.astimezone(UTC)


@cli.command("tick")
@click.option("--now", "now", default=None, help="Run as of this ISO 8601 time (with zone).")
def tick(now: str | None) -> None:
    """Run every job once, now or as of --now."""
    from coaching.clock import FrozenClock

    app = current_app._get_current_object()
    at = _parse_now(now)
    previous = app.extensions["clock"]
    if at is not None:
        app.extensions["clock"] = FrozenClock(at)
    failed = []
    try:
        for job in collect_jobs():
            try:
                result = run_job(app, job)
            except Exception as exc:  # noqa: BLE001 (the other jobs still run)
                failed.append(job.name)
                click.echo(f"{job.name}: failed: {exc}", err=True)
            else:
                click.echo(f"{job.name}: {result}")
    finally:
        app.extensions["clock"] = previous
    if failed:
        raise click.ClickException(f"failed: {', '.join(failed)}")
