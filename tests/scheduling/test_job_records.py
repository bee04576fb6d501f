"""Every scheduled run is on record in the database, whichever process ran it: each job's last
run and outcome, and each failed run with its error; `scheduler status` shows them and exits 1
while a job's last run failed; failure rows go after 90 days."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from coaching.extensions import db
from coaching.scheduling import Job, collect_jobs
from coaching.scheduling import service as records
from coaching.scheduling.models import JobFailure, JobStatus
from coaching.scheduling.runner import run_job
from tests.conftest import START


def _status(name: str) -> JobStatus:
    db.session.expire_all()
    return db.session.get(JobStatus, name)


def _failures(name: str) -> list[JobFailure]:
    db.session.expire_all()
    query = select(JobFailure).where(JobFailure.job == name).order_by(JobFailure.failed_at)
    return list(db.session.execute(query).scalars())


def test_each_run_is_recorded_and_failures_keep_their_error(app, clock):
    outcome = {"fail": False}

    def job(now):
        clock.advance(seconds=3)  # the run takes three seconds
        if outcome["fail"]:
            raise RuntimeError("the media store is down")
        return {"sent": 2}

    flaky = Job("test.flaky", job)
    clock.set(START)
    assert run_job(app, flaky) == {"sent": 2}
    status = _status("test.flaky")
    assert (status.last_outcome, status.last_summary) == ("ok", "{'sent': 2}")
    assert (status.last_started_at, status.last_finished_at) == (
        START,
        START + timedelta(seconds=3),
    )
    assert status.last_succeeded_at == START + timedelta(seconds=3)
    assert (status.last_failed_at, status.failures_in_a_row) == (None, 0)
    assert _failures("test.flaky") == []

    outcome["fail"] = True
    for minutes in (1, 2):
        clock.set(START + timedelta(minutes=minutes))
        with pytest.raises(RuntimeError):  # the job's error is raised again
            run_job(app, flaky)
    status = _status("test.flaky")
    assert (status.last_outcome, status.failures_in_a_row) == ("failed", 2)
    assert status.last_summary is None
    assert status.last_failed_at == START + timedelta(minutes=2, seconds=3)
    assert status.last_succeeded_at == START + timedelta(seconds=3)  # kept from the success
    failures = _failures("test.flaky")
    assert [f.started_at for f in failures] == [
        START + timedelta(minutes=1),
        START + timedelta(minutes=2),
    ]
    assert all("RuntimeError: the media store is down" in f.error for f in failures)
    assert all("Traceback" in f.error and ":" in f.process for f in failures)

    outcome["fail"] = False
    clock.set(START + timedelta(minutes=3))
    run_job(app, flaky)
    status = _status("test.flaky")
    assert (status.last_outcome, status.failures_in_a_row) == ("ok", 0)
    assert status.last_failed_at == START + timedelta(minutes=2, seconds=3)
    assert len(_failures("test.flaky")) == 2  # the record of the failures stays


def test_the_record_of_a_failed_job_does_not_keep_its_rolled_back_work(app, clock):
    def writes_then_fails(now):
        db.session.add(
            JobFailure(job="test.half", started_at=now, failed_at=now, process="-", error="mine")
        )
        db.session.flush()
        raise ValueError("half-way")

    with pytest.raises(ValueError):
        run_job(app, Job("test.half", writes_then_fails))
    assert [f.error.strip().splitlines()[-1] for f in _failures("test.half")] == [
        "ValueError: half-way"
    ]
    assert _status("test.half").last_outcome == "failed"


def test_a_record_that_cannot_be_written_is_logged_and_the_run_goes_on(app, monkeypatch, caplog):
    def broken_insert(model):
        raise RuntimeError("database unreachable")

    monkeypatch.setattr(records, "dialect_insert", broken_insert)
    with caplog.at_level("ERROR", logger="coaching.scheduling.service"):
        assert run_job(app, Job("test.ok", lambda now: 1)) == 1
    assert "could not record the run of job test.ok" in caplog.text
    monkeypatch.undo()
    assert _status("test.ok") is None


def test_status_shows_every_job_and_exits_1_while_one_is_failing(app, clock):
    runner = app.test_cli_runner()
    clock.set(START)
    result = runner.invoke(args=["scheduler", "status"])
    assert result.exit_code == 0, result.output
    assert "notifications.dispatch: never run" in result.output

    def broken(now):
        raise RuntimeError("boom")

    jobs = {job.name: job for job in collect_jobs()}
    run_job(app, jobs["scheduling.purge_failures"])
    with pytest.raises(RuntimeError):
        run_job(app, Job("notifications.dispatch", broken))
    result = runner.invoke(args=["scheduler", "status"])
    assert result.exit_code == 1
    assert "scheduling.purge_failures: ok at 2026-03-02T09:00:00Z: 0" in result.output
    assert (
        "notifications.dispatch: failed at 2026-03-02T09:00:00Z, 1 failed in a row"
        " (1 failed in the last 24 h)"
    ) in result.output
    assert "failed: notifications.dispatch at 2026-03-02T09:00:00Z on " in result.output
    assert "RuntimeError: boom" in result.output
    assert "last run failed: notifications.dispatch" in result.output

    run_job(app, jobs["notifications.dispatch"])
    result = runner.invoke(args=["scheduler", "status"])
    assert result.exit_code == 0, result.output


def test_failure_rows_go_after_ninety_days(app, clock):
    for days in (91, 89):
        db.session.add(
            JobFailure(
                job="test.old",
                started_at=START - timedelta(days=days),
                failed_at=START - timedelta(days=days),
                process="host:1",
                error="RuntimeError: x",
            )
        )
    db.session.commit()
    assert "scheduling.purge_failures" in {job.name for job in collect_jobs()}
    assert records.purge_failures(START) == 1
    assert [f.failed_at for f in _failures("test.old")] == [START - timedelta(days=89)]
