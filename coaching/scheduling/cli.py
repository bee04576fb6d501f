"""`flask --app wsgi scheduler run|tick`: run the collected jobs."""

from __future__ import annotations

import contextlib
import logging
import signal
from datetime import UTC, datetime, timedelta

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


@cli.command("status")
def status() -> None:
    """Show each job's last run (from every process), the failures of the last 24 hours and the
    latest errors; exits 1 when a job's last run failed (for monitoring)."""
    from coaching import clock
    from coaching.db import utc_iso
    from coaching.scheduling import service

    now = clock.now()
    found = service.statuses()
    recent = service.failures_since(now - timedelta(hours=24))
    failing = []
    for job in collect_jobs():
        row = found.get(job.name)
        if row is None:
            click.echo(f"{job.name}: never run")
            continue
        line = f"{job.name}: {row.last_outcome} at {utc_iso(row.last_finished_at)}"
        if row.last_outcome == "failed":
            failing.append(job.name)
            line += f", {row.failures_in_a_row} failed in a row"
            if row.last_succeeded_at is not None:
                line += f", last success {utc_iso(row.last_succeeded_at)}"
        elif row.last_summary:
            line += f": {row.last_summary}"
        if recent.get(job.name):
            line += f" ({recent[job.name]} failed in the last 24 h)"
        click.echo(line)
    for failure in service.latest_failures(5):
        last_line = failure.error.strip().splitlines()[-1] if failure.error.strip() else ""
        click.echo(
            f"failed: {failure.job} at {utc_iso(failure.failed_at)} on {failure.process}:"
            f" {last_line}"
        )
    if failing:
        raise click.ClickException(f"last run failed: {', '.join(failing)}")
