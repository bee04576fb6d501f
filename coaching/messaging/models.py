"""Conversations between a patient and their physiotherapist, the messages in them (text or
video) and coaching cycles.

Messages are kept simple to query in SQL: `sender_role` and `created_at`/`sent_at` on the row,
the patient and therapist one join away on the conversation (coaching response times are
computed from these).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from coaching.db import Base, UTCDateTime, id_column

SENDER_ROLES = ("patient", "therapist")
KINDS = ("text", "video")
STATUSES = ("awaiting_upload", "processing", "ready", "failed")
VIDEO_TYPES = ("video/mp4", "video/quicktime", "video/webm")
# Whether a video's bytes are still held: `expired` after the retention period, `deleted` when
# the patient withdrew video consent or the upload failed.
MEDIA_STATES = ("stored", "expired", "deleted")
CYCLE_STATUSES = ("open", "closed")
# requested (waits on the therapist) → answered (waits on the patient to try) → attempted (waits
# on the therapist again) → ... → closed by the therapist with an outcome.
CYCLE_PHASES = ("requested", "answered", "attempted", "closed")


class Conversation(Base):
    """One per patient–therapist pair, opened when the patient registers."""

    __tablename__ = "conversations"
    __table_args__ = (
        UniqueConstraint("patient_id", "therapist_id", name="uq_conversations_patient_id"),
        Index("ix_conversations_therapist_id_last_message_at", "therapist_id", "last_message_at"),
    )

    id: Mapped[str] = id_column()
    patient_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    therapist_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="RESTRICT"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # When the newest message became visible to both sides (for sorting the list).
    last_message_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class CoachingCycle(Base):
    """A request for help about an activity that matters to the patient, the therapist's answer
    and assignment, the patient's attempt, closed by the therapist with a short outcome."""

    __tablename__ = "coaching_cycles"
    __table_args__ = (
        Index("ix_coaching_cycles_conversation_id_status", "conversation_id", "status"),
    )

    id: Mapped[str] = id_column()
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    activity: Mapped[str] = mapped_column(String(200))
    request: Mapped[str | None] = mapped_column(Text)
    assignment: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="open")
    phase: Mapped[str] = mapped_column(String(16), default="requested")
    # Since when the cycle has waited on its current side (the phase's start).
    waiting_since: Mapped[datetime] = mapped_column(UTCDateTime())
    opened_by_role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_conversation_id_created_at", "conversation_id", "created_at"),
        Index("ix_messages_conversation_id_sent_at", "conversation_id", "sent_at"),
        Index("ix_messages_status_created_at", "status", "created_at"),
    )

    id: Mapped[str] = id_column()
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    sender_id: Mapped[str | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))
    sender_role: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(8))
    body: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20))
    failure_reason: Mapped[str | None] = mapped_column(String(40))
    reply_to_id: Mapped[str | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL"), index=True
    )
    cycle_id: Mapped[str | None] = mapped_column(
        ForeignKey("coaching_cycles.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # When the receiver could first see it: at once for text, when ready for a video.
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    watched_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    # Video only.
    content_type: Mapped[str | None] = mapped_column(String(40))
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    # Once checked, the key of the sealed copy of the checked bytes (see coaching/media/storage.py)
    # and their ETag on the store (None on local storage).
    media_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    media_etag: Mapped[str | None] = mapped_column(String(128))
    thumbnail_key: Mapped[str | None] = mapped_column(String(64))
    media_state: Mapped[str | None] = mapped_column(String(16))
    duration_s: Mapped[float | None] = mapped_column(Float)
    upload_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # A scheduler process that takes a video to check holds it until then (crash-safe).
    processing_lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    processing_attempts: Mapped[int] = mapped_column(Integer, default=0)
