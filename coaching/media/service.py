"""Deleting stored objects safely: record first, delete after the commit.

A service that lets an object go calls `schedule_deletion()` in its own transaction; the
`purge_pending()` job deletes the objects from the store afterwards and forgets the rows. If the
process dies in between, the rows are still there and the next run deletes the objects.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select

from coaching import clock
from coaching.extensions import db
from coaching.media.models import MediaDeletion
from coaching.media.storage import get_storage

log = logging.getLogger(__name__)


def schedule_deletion(*, key: str | None, reason: str) -> None:
    """Record that a stored object must be deleted (after this transaction commits)."""
    if not key:
        return
    db.session.add(MediaDeletion(key=key, reason=reason, created_at=clock.now(), attempts=0))
    db.session.flush()


def purge_pending(now: datetime, *, limit: int = 200) -> int:
    """Delete recorded objects from the store, one batch; returns how many were deleted.

    Rows are claimed with FOR UPDATE SKIP LOCKED on PostgreSQL so that several scheduler
    processes share the work; a failed delete stays queued with its error for the next run.
    """
    stmt = select(MediaDeletion).order_by(MediaDeletion.created_at).limit(limit)
    if db.session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    rows = db.session.execute(stmt).scalars().all()
    storage = get_storage()
    deleted = 0
    for row in rows:
        try:
            storage.delete(row.key)
        except Exception as exc:  # the store is outside: any failure waits for the next run
            row.attempts += 1
            row.last_error = str(exc)[:500]
            log.warning("media deletion failed (attempt %s): %s", row.attempts, exc)
            continue
        db.session.delete(row)
        deleted += 1
    db.session.commit()
    return deleted
