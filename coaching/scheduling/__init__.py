"""Scheduled work: each domain lists its periodic jobs in `coaching/<domain>/jobs.py` as
`JOBS = [Job(...)]`; the scheduler (`flask --app wsgi scheduler run|tick`) runs them.

A job's function takes `now` (an aware UTC datetime), runs inside an app context with its own
database session, commits its own work in small transactions, and returns a short summary
(e.g. a count) for the log. Jobs must be safe to run in several processes at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Job:
    name: str
    func: Callable[[datetime], object]
    every_seconds: int = 60


def collect_jobs() -> list[Job]:
    """Returns every domain's jobs, in the order of the domains."""
    from coaching import DOMAINS, _domain_module

    jobs: list[Job] = []
    for domain in DOMAINS:
        module = _domain_module(domain, "jobs")
        if module is not None:
            jobs.extend(module.JOBS)
    return jobs
