"""Deleting stored objects safely: record first, delete after the commit; and whether an
upload is still wanted.

A service that lets an object go calls `schedule_deletion()` in its own transaction; the
`purge_pending()` job deletes the objects from the store afterwards and forgets the rows. If the
process dies in between, the rows are still there and the next run deletes the objects.

An upload URL handed out before its object was let go keeps working until it expires (at most
MAX_URL_TTL_SECONDS), and the object may only appear then. So a row is forgotten only once it has
been deleted after that time; until then each run deletes it again. The service's own upload
endpoint also asks the domains that hand out upload URLs (`UPLOAD_CHECKS`) whether the bytes
are still wanted, and refuses them otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import select

from coaching import clock
from coaching.extensions import db
from coaching.media.models import MediaDeletion
from coaching.media.storage import MAX_URL_TTL_SECONDS, LocalStorage, get_storage

log = logging.getLogger(__name__)

# The longest an upload URL lives: an object let go may still be uploaded until this has passed.
UPLOAD_WINDOW = timedelta(seconds=MAX_URL_TTL_SECONDS)
# An upload whose bytes stopped coming this long ago ended without its process (local storage).
PARTIAL_IDLE = timedelta(hours=1)

# Each domain that hands out upload URLs registers a function telling whether it still waits for
# the bytes of a key (messaging: a video message still awaiting its upload).
UPLOAD_CHECKS: list[Callable[[str], bool]] = []


def is_upload_wanted(key: str) -> bool:
    """Returns whether some domain still waits for an upload to this key (none: refuse it)."""
    return any(check(key) for check in UPLOAD_CHECKS)


def schedule_deletion(*, key: str | None, reason: str) -> None:
    """Record that a stored object must be deleted (after this transaction commits)."""
    if not key:
        return
    db.session.add(MediaDeletion(key=key, reason=reason, created_at=clock.now(), attempts=0))
    db.session.flush()


def purge_pending(now: datetime, *, limit: int = 200) -> int:
    """Delete recorded objects from the store, one batch; returns how many were deleted.

    Rows are claimed with FOR UPDATE SKIP LOCKED on PostgreSQL so that several scheduler
    processes share the work; a failed delete stays queued with its error for the next run. A
    row deleted before its UPLOAD_WINDOW is over stays too, to delete a late upload on a later
    run; rows tried fewer times come first, so that these repeats never hold new ones back.
    Local storage also loses the pieces of uploads whose process died while they came in.
    """
    stmt = (
        select(MediaDeletion)
        .order_by(MediaDeletion.attempts, MediaDeletion.created_at, MediaDeletion.id)
        .limit(limit)
    )
    if db.session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    rows = db.session.execute(stmt).scalars().all()
    storage = get_storage()
    if isinstance(storage, LocalStorage):
        storage.purge_partials(idle_since=now - PARTIAL_IDLE)
    deleted = 0
    for row in rows:
        row.attempts += 1
        try:
            storage.delete(row.key)
        except Exception as exc:  # the store is outside: any failure waits for the next run
            row.last_error = str(exc)[:500]
            log.warning("media deletion failed (attempt %s): %s", row.attempts, exc)
            continue
        deleted += 1
        # Deleted after every URL that could still write the key has expired: nothing more
        # can appear under it.
        if row.created_at + UPLOAD_WINDOW <= now:
            db.session.delete(row)
    db.session.commit()
    return deleted
