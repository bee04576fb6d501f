"""What the scheduler ran: one status row per job (its last run and how many failed in a row),
and one row per failed run with its error, so that a failure is on record for whoever looks
(`flask --app wsgi scheduler status`), not only in one process's log."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from coaching.db import Base, UTCDateTime, id_column


class JobStatus(Base):
    """A job's last run, whichever process ran it."""

    __tablename__ = "scheduled_job_status"

    job: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_finished_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_outcome: Mapped[str] = mapped_column(String(8))  # ok or failed
    last_summary: Mapped[str | None] = mapped_column(Text)
    last_succeeded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Runs that failed since the last one that succeeded (0 after a success).
    failures_in_a_row: Mapped[int] = mapped_column(Integer, default=0)


class JobFailure(Base):
    """One failed run of a job: when, where and the error (the traceback's last lines)."""

    __tablename__ = "scheduled_job_failures"
    __table_args__ = (
        Index("ix_scheduled_job_failures_failed_at", "failed_at"),
        Index("ix_scheduled_job_failures_job_failed_at", "job", "failed_at"),
    )

    id: Mapped[str] = id_column()
    job: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    failed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    process: Mapped[str] = mapped_column(String(128))  # host:pid
    error: Mapped[str] = mapped_column(Text)
