"""The scheduler: `scheduler tick [--now]`, `scheduler run` as a real process, the APScheduler
set-up, and starting it once inside the development server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from sqlalchemy import select

from coaching.extensions import db
from coaching.notifications.models import Notification
from coaching.scheduling import Job, collect_jobs
from coaching.scheduling.runner import (
    build_scheduler,
    run_job,
    should_start_in_process,
    start_in_process,
)

ROOT = Path(__file__).resolve().parents[2]


def test_collect_jobs_includes_the_notification_jobs(app):
    names = {job.name for job in collect_jobs()}
    assert {
        "notifications.plan",
        "notifications.dispatch",
        "notifications.prune_devices",
    } <= names


def test_tick_runs_every_job_as_of_the_given_time(app, make, clock):
    from coaching.notifications.service import register_device

    patient = make.patient(timezone="Europe/Amsterdam")
    register_device(account=patient, token="phone", platform="android")
    db.session.commit()
    runner = app.test_cli_runner()
    result = runner.invoke(args=["scheduler", "tick", "--now", "2026-03-10T17:30:00Z"])
    assert result.exit_code == 0, result.output
    assert "notifications.plan: {'practice': 1" in result.output
    assert app.extensions["clock"] is clock  # the frozen time was for that run only
    practice = select(Notification).where(Notification.category == "practice")
    row = db.session.execute(practice).scalar_one()
    assert row.local_date.isoformat() == "2026-03-10"
    result = runner.invoke(args=["scheduler", "tick", "--now", "2026-03-10T18:00:00+00:00"])
    assert result.exit_code == 0, result.output
    db.session.expire_all()
    assert db.session.execute(practice).scalar_one().status in ("sent", "skipped")
    assert {n.status for n in db.session.execute(select(Notification)).scalars()} == {
        "sent",
        "skipped",
    }  # the inactivity nudge went out; that day's practice reminder gave way to it


@pytest.mark.parametrize("bad", ["yesterday", "2026-03-10T17:30:00"])
def test_tick_refuses_a_time_without_zone_or_not_iso(app, bad):
    result = app.test_cli_runner().invoke(args=["scheduler", "tick", "--now", bad])
    assert result.exit_code == 2
    assert "--now" in result.output or "Invalid value" in result.output


def test_run_job_uses_its_own_session_and_rolls_back_a_failure(app, caplog):
    sessions = []

    def ok(now):
        sessions.append(db.session())
        return {"done": 1}

    def broken(now):
        raise RuntimeError("boom")

    outer = db.session()
    with caplog.at_level("INFO", logger="coaching.scheduling.runner"):
        assert run_job(app, Job("test.ok", ok)) == {"done": 1}
        with pytest.raises(RuntimeError):
            run_job(app, Job("test.broken", broken))
    assert sessions[0] is not outer
    assert "job test.ok done" in caplog.text
    assert "job test.broken failed" in caplog.text


def test_build_scheduler_adds_every_job_at_its_interval(app):
    scheduler = build_scheduler(app)
    assert isinstance(scheduler, BlockingScheduler)
    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert set(jobs) == {job.name for job in collect_jobs()}
    assert jobs["notifications.dispatch"].trigger.interval.total_seconds() == 15
    assert jobs["notifications.plan"].max_instances == 1


def _app_config(app, **changes):
    class Fake:
        config = {**app.config, "TESTING": False, **changes}
        extensions: dict = {}

    return Fake()


@pytest.mark.parametrize(
    ("setting", "env", "environ", "command", "expected"),
    [
        ("auto", "development", {}, "run", True),  # flask run, no reloader
        ("auto", "development", {"WERKZEUG_RUN_MAIN": "true"}, "run", True),  # reloader child
        ("auto", "development", {}, "db", False),  # another CLI command
        ("auto", "development", {}, "scheduler", False),
        ("auto", "production", {}, "run", False),
        ("auto", "development", {}, None, False),  # gunicorn: only when asked for
        ("true", "production", {}, None, True),
        ("true", "production", {}, "db", False),
        ("false", "development", {"WERKZEUG_RUN_MAIN": "true"}, "run", False),
    ],
)
def test_when_the_scheduler_runs_inside_the_server(app, setting, env, environ, command, expected):
    fake = _app_config(app, SCHEDULER_IN_PROCESS=setting, ENV=env)
    assert should_start_in_process(fake, environ=environ, command=command) is expected


def test_the_reloaders_watcher_process_does_not_start_it(app, monkeypatch):
    from coaching.scheduling import runner

    monkeypatch.setattr(runner, "_cli_command", lambda: ("run", True))
    fake = _app_config(app, SCHEDULER_IN_PROCESS="auto", ENV="development")
    assert should_start_in_process(fake, environ={}) is False
    assert should_start_in_process(fake, environ={"WERKZEUG_RUN_MAIN": "true"}) is True


def test_never_in_tests_and_started_only_once(app, monkeypatch):
    assert should_start_in_process(app) is False  # TESTING
    from coaching.scheduling import runner

    monkeypatch.setattr(runner, "should_start_in_process", lambda app: True)
    try:
        first = start_in_process(app)
        assert isinstance(first, BackgroundScheduler) and first.running
        assert start_in_process(app) is first
    finally:
        scheduler = app.extensions.pop("scheduler", None)
        if scheduler is not None:
            scheduler.shutdown(wait=True)


def _sigint_ignored() -> None:
    # What a shell without job control does for `command &`; the process inherits it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("stop_with", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_scheduler_run_as_a_process_runs_and_logs_each_job(tmp_path, stop_with):
    database = tmp_path / "scheduler.db"
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{database}",
        "COACHING_ENV": "development",
        "SCHEDULER_IN_PROCESS": "false",
        "MEDIA_ROOT": str(tmp_path / "media"),
        "PYTHONUNBUFFERED": "1",
    }
    flask = [sys.executable, "-m", "flask", "--app", "wsgi"]
    upgrade = subprocess.run(
        [*flask, "db", "upgrade"], cwd=ROOT, env=env, capture_output=True, timeout=120
    )
    assert upgrade.returncode == 0, upgrade.stderr.decode()[-2000:]
    log = tmp_path / "scheduler.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [*flask, "scheduler", "run"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_sigint_ignored,
        )
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                text = log.read_text()
                if all(
                    f"job notifications.{name} done" in text
                    for name in ("plan", "dispatch", "prune_devices")
                ):
                    break
                assert process.poll() is None, text[-3000:]
                time.sleep(0.2)
            else:
                pytest.fail(log.read_text()[-3000:])
        finally:
            # It stops once the jobs running at that moment are done, even started with SIGINT
            # ignored, and SIGTERM does not cut a job short. A process that does not stop is
            # killed, so that it cannot disturb the tests after this one, and fails.
            process.send_signal(stop_with)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                pytest.fail(
                    f"scheduler run did not stop on {stop_with!r}:\n{log.read_text()[-3000:]}"
                )
    assert process.returncode == 0, log.read_text()[-3000:]
    assert "stopping once the running jobs are done" in log.read_text()
