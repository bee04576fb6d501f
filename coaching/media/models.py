"""The queue of stored objects waiting to be deleted from the media store."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from coaching.db import Base, UTCDateTime, id_column


class MediaDeletion(Base):
    """An object to delete from storage, recorded in the same transaction that let it go and
    deleted by a job after the commit (a crash in between loses nothing)."""

    __tablename__ = "media_deletions"

    id: Mapped[str] = id_column()
    key: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    # Deletes tried so far, the successful ones too: a row is deleted again until no upload URL
    # for its key can still work (see `coaching/media/service.py`).
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
