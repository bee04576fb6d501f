"""The scheduler's own periodic work."""

from __future__ import annotations

from coaching.scheduling import Job
from coaching.scheduling.service import purge_failures

JOBS = [
    # The record of failed runs is kept for FAILURE_RETENTION (90 days).
    Job(name="scheduling.purge_failures", func=purge_failures, every_seconds=86400),
]
