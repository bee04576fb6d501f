"""The record of what the scheduler ran (see models.py): written after every run, read by
`flask --app wsgi scheduler status`, and failed runs deleted after FAILURE_RETENTION."""

from __future__ import annotations

import logging
import os
import socket
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select

from coaching.db import dialect_insert
from coaching.extensions import db
from coaching.scheduling.models import JobFailure, JobStatus

log = logging.getLogger(__name__)

FAILURE_RETENTION = timedelta(days=90)
SUMMARY_LENGTH = 1000
ERROR_LENGTH = 4000


def record_run(
    job: str,
    started_at: datetime,
    finished_at: datetime,
    *,
    summary: object = None,
    error: str | None = None,
) -> None:
    """Records a run of `job` in its own transaction: the job's status row (one statement, safe
    with several processes) and, when it failed, a failure row with the error. Never raises: a
    record that cannot be written (the database down) is logged; the run itself was."""
    failed = error is not None
    status = JobStatus.__table__.c
    values = {
        "job": job,
        "last_started_at": started_at,
        "last_finished_at": finished_at,
        "last_outcome": "failed" if failed else "ok",
        "last_summary": None if failed else str(summary)[:SUMMARY_LENGTH],
        "last_succeeded_at": None if failed else finished_at,
        "last_failed_at": finished_at if failed else None,
        "failures_in_a_row": 1 if failed else 0,
    }
    update = {k: v for k, v in values.items() if k != "job" and v is not None}
    update["last_summary"] = values["last_summary"]
    update["failures_in_a_row"] = status.failures_in_a_row + 1 if failed else 0
    try:
        db.session.execute(
            dialect_insert(JobStatus)
            .values(**values)
            .on_conflict_do_update(index_elements=["job"], set_=update)
        )
        if failed:
            db.session.add(
                JobFailure(
                    job=job,
                    started_at=started_at,
                    failed_at=finished_at,
                    process=f"{socket.gethostname()}:{os.getpid()}"[:128],
                    error=error[-ERROR_LENGTH:],
                )
            )
        db.session.commit()
    except Exception:
        db.session.rollback()
        log.exception("could not record the run of job %s", job)


def statuses() -> dict[str, JobStatus]:
    # populate_existing: rows another process wrote since this session last loaded them.
    query = select(JobStatus).execution_options(populate_existing=True)
    return {s.job: s for s in db.session.execute(query).scalars()}


def failures_since(since: datetime) -> dict[str, int]:
    """Returns the failed runs per job since `since`."""
    rows = db.session.execute(
        select(JobFailure.job, func.count())
        .where(JobFailure.failed_at >= since)
        .group_by(JobFailure.job)
    )
    return dict(rows.all())


def latest_failures(limit: int = 10) -> list[JobFailure]:
    return list(
        db.session.execute(
            select(JobFailure).order_by(JobFailure.failed_at.desc()).limit(limit)
        ).scalars()
    )


def purge_failures(now: datetime) -> int:
    """Deletes the failure rows older than FAILURE_RETENTION; returns how many."""
    deleted = db.session.execute(
        delete(JobFailure).where(JobFailure.failed_at < now - FAILURE_RETENTION)
    ).rowcount
    db.session.commit()
    return deleted
