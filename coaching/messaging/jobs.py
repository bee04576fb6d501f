"""Periodic work of video coaching, run by the scheduler (`flask --app wsgi scheduler run|tick`).

Each job takes `now`, commits its own small transactions and is safe with several scheduler
processes: videos are leased one at a time, deletions are claimed with SKIP LOCKED.
"""

from __future__ import annotations

from coaching.messaging.service import (
    apply_media_retention,
    expire_stale_uploads,
    process_pending_videos,
    purge_deleted_media,
)
from coaching.scheduling import Job

JOBS = [
    # Check completed uploads with PyAV (a video, its duration, a thumbnail), then send them.
    Job(name="messaging.process_videos", func=process_pending_videos, every_seconds=10),
    # Uploads never completed within UPLOAD_EXPIRY_HOURS fail and what arrived is deleted.
    Job(name="messaging.expire_uploads", func=expire_stale_uploads, every_seconds=300),
    # Videos of programmes that ended VIDEO_RETENTION_DAYS ago are deleted (media `expired`).
    Job(name="messaging.media_retention", func=apply_media_retention, every_seconds=3600),
    # Delete from the store what the steps above (and consent withdrawal) let go.
    Job(name="messaging.purge_media", func=purge_deleted_media, every_seconds=60),
]
