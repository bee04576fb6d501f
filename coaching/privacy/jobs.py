"""Periodic work of the privacy domain, run by the scheduler (`flask --app wsgi scheduler run`)."""

from __future__ import annotations

from coaching import idempotency
from coaching.privacy.service import expire_exports, purge_expired_retention, run_pending_exports
from coaching.scheduling import Job

JOBS = [
    # Build requested exports (leased rows: safe with several scheduler processes).
    Job(name="privacy.build_exports", func=run_pending_exports, every_seconds=15),
    # Ready ZIPs past EXPORT_TTL_HOURS are deleted from the media store.
    Job(name="privacy.expire_exports", func=expire_exports, every_seconds=600),
    # Medical records kept after an erasure are erased when their retention period ends.
    Job(name="privacy.purge_retained", func=purge_expired_retention, every_seconds=3600),
    # Stored idempotent answers (a message in full) are deleted once their 24 h have passed.
    Job(name="privacy.purge_idempotency", func=idempotency.purge_expired, every_seconds=3600),
]
