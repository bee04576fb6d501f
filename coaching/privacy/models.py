"""Export jobs (one row per requested ZIP) and the record of every erasure."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from coaching.db import Base, UTCDateTime, id_column

EXPORT_STATUSES = ("pending", "running", "ready", "failed", "expired")
OPEN_EXPORT = text("status IN ('pending', 'running')")


class DataExport(Base):
    """A patient's request for a copy of their data; a job builds the ZIP in the media store."""

    __tablename__ = "data_exports"
    __table_args__ = (
        Index("ix_data_exports_status_due_at", "status", "due_at"),
        # At most one open request per patient: two simultaneous POSTs cannot both insert one
        # (the loser answers the winner's export).
        Index(
            "uq_data_exports_open_patient_id",
            "patient_id",
            unique=True,
            postgresql_where=OPEN_EXPORT,
            sqlite_where=OPEN_EXPORT,
        ),
    )

    id: Mapped[str] = id_column()
    patient_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(16), default="pending")
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # When a job may take it next: now for a new request, the end of a worker's lease, or later
    # after a failed attempt. A worker that dies leaves it to be taken again.
    due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The ZIP in the media store (a random key, like every stored object).
    media_key: Mapped[str | None] = mapped_column(String(64))
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    failure_reason: Mapped[str | None] = mapped_column(String(200))


class ErasureRecord(Base):
    """That an account was erased, by whom and what was kept: the controller's proof (GDPR
    art. 5(2)). It holds no personal data; the account id is a random identifier that nothing
    identifying points to any more."""

    __tablename__ = "erasure_records"
    __table_args__ = (Index("ix_erasure_records_retain_until", "retain_until", "purged_at"),)

    id: Mapped[str] = id_column()
    # No foreign key: the account row is gone (or a closed shell) when this is read.
    account_id: Mapped[str] = mapped_column(String(36), index=True)
    requested_by_id: Mapped[str | None] = mapped_column(String(36))
    requested_by_role: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime())
    is_medical_record_destroyed: Mapped[bool] = mapped_column(Boolean, default=False)
    # Tables whose rows are kept (medical record) until `retain_until`, then purged.
    retained_tables: Mapped[list] = mapped_column(JSON, default=list)
    retain_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # {table: rows deleted, pseudonymised or detached}, for the record.
    counts: Mapped[dict] = mapped_column(JSON, default=dict)
