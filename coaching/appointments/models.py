"""Appointments: the sessions of the blended programme (in person or by video call)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from coaching.db import Base, UTCDateTime, id_column

KINDS = ("in_person", "video_call")


class Appointment(Base):
    __tablename__ = "appointments"
    __table_args__ = (
        Index("ix_appointments_patient_id_starts_at", "patient_id", "starts_at"),
        Index("ix_appointments_therapist_id_starts_at", "therapist_id", "starts_at"),
        Index("ix_appointments_starts_at", "starts_at"),
    )

    id: Mapped[str] = id_column()
    patient_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    therapist_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="RESTRICT"))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    duration_minutes: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cancelled_by: Mapped[str | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))
    cancel_reason: Mapped[str | None] = mapped_column(String(500))

    @property
    def ends_at(self) -> datetime:
        return self.starts_at + timedelta(minutes=self.duration_minutes)

    @property
    def status(self) -> str:
        """Returns `cancelled` or `planned`."""
        return "cancelled" if self.cancelled_at is not None else "planned"
