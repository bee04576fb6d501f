"""Running the collected jobs: one run in its own app context and session, an APScheduler 3
scheduler with every job at its interval, and the in-process scheduler of the development server.

Jobs are safe in several processes at once (see `coaching/scheduling/__init__.py`), so any number
of `scheduler run` processes may work side by side; `max_instances=1` only keeps one process from
overlapping itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import traceback
from datetime import UTC, datetime

from flask import Flask

from coaching.scheduling import Job, collect_jobs

log = logging.getLogger(__name__)


def run_job(app: Flask, job: Job) -> object:
    """Run a job once in a fresh app context and session; log, record and return its summary.

    "Now" is the app clock's (a FrozenClock under `scheduler tick --now`). A failing job is
    logged, recorded with its error (`scheduler status`) and re-raised; its uncommitted work is
    rolled back. The record is written in a session of its own, after the job's.
    """
    from coaching import clock
    from coaching.extensions import db
    from coaching.scheduling import service

    with app.app_context():
        started = time.monotonic()
        started_at = clock.now()
        try:
            result = job.func(started_at)
            db.session.commit()
        except Exception:
            db.session.rollback()
            log.exception("job %s failed after %.2fs", job.name, time.monotonic() - started)
            db.session.remove()
            service.record_run(job.name, started_at, clock.now(), error=traceback.format_exc())
            db.session.remove()
            raise
        db.session.remove()
        log.info("job %s done in %.2fs: %s", job.name, time.monotonic() - started, result)
        service.record_run(job.name, started_at, clock.now(), summary=result)
        db.session.remove()
        return result


def build_scheduler(app: Flask, scheduler_class=None, jobs: list[Job] | None = None):
    """Returns an APScheduler 3 scheduler (BlockingScheduler unless told) with every job."""
    from apscheduler.schedulers.blocking import BlockingScheduler

    scheduler = (scheduler_class or BlockingScheduler)(timezone=UTC)
    with app.app_context():
        jobs = collect_jobs() if jobs is None else jobs
    for job in jobs:
        scheduler.add_job(
            _run_logged,
            "interval",
            seconds=job.every_seconds,
            args=(app, job),
            id=job.name,
            name=job.name,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=job.every_seconds,
            next_run_time=datetime.now(UTC),  # the first run at start, not one interval later
        )
    return scheduler


def _run_logged(app: Flask, job: Job) -> None:
    # Already logged by run_job; the scheduler keeps going with the next run.
    with contextlib.suppress(Exception):
        run_job(app, job)


def should_start_in_process(app: Flask, *, environ=None, command: str | None = None) -> bool:
    """Returns whether this process should run the scheduler inside the web server.

    `SCHEDULER_IN_PROCESS`: `false` never; `true` in any serving process; `auto` only in the
    development server in development. Never in the reloader's watcher process (the server then
    runs in a child with WERKZEUG_RUN_MAIN=true), never in other CLI commands, never in tests.
    """
    environ = os.environ if environ is None else environ
    setting = str(app.config.get("SCHEDULER_IN_PROCESS", "auto")).lower()
    if setting in ("false", "0", "no", "off") or app.config.get("TESTING"):
        return False
    if setting == "auto" and app.config.get("ENV") != "development":
        return False
    if environ.get("WERKZEUG_RUN_MAIN") == "true":
        return True  # the reloader's child: the one process that serves
    command, reload = _cli_command() if command is None else (command, False)
    if command == "run":
        return not reload  # with the reloader, this is the watcher: its child will start it
    if command is not None:
        return False  # `flask db upgrade`, `flask scheduler run`, ...
    return setting == "true"  # e.g. a gunicorn worker, only when asked for


def _cli_command() -> tuple[str | None, bool]:
    """Returns the flask CLI command being run (None outside the CLI) and its reload flag."""
    import click

    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return None, False
    reload = ctx.params.get("reload")
    if reload is None:
        from flask.helpers import get_debug_flag

        reload = get_debug_flag()
    return ctx.info_name, bool(reload)


def start_in_process(app: Flask):
    """Start a background scheduler in this process when it should (see above); returns it."""
    if not should_start_in_process(app):
        return None
    if app.extensions.get("scheduler") is not None:
        return app.extensions["scheduler"]
    import atexit

    from apscheduler.schedulers.background import BackgroundScheduler

    scheduler = build_scheduler(app, BackgroundScheduler)
    scheduler.start()
    app.extensions["scheduler"] = scheduler
    atexit.register(lambda: scheduler.running and scheduler.shutdown(wait=False))
    log.info("scheduler started inside the server process (pid %d)", os.getpid())
    return scheduler
