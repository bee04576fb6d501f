"""Invites, enrolments in the programme and consent acceptances."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Boolean, Date, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from coaching.db import Base, UTCDateTime, id_column

REFERRAL_SOURCES = ("gp", "physio", "specialist", "insurer", "self", "other")
CHANNELS = ("in_person", "email", "sms", "letter", "qr")
ENROLLMENT_STATUSES = ("active", "completed", "paused", "withdrawn")


class Invite(Base):
    __tablename__ = "invites"
    __table_args__ = (Index("ix_invites_therapist_id_created_at", "therapist_id", "created_at"),)

    id: Mapped[str] = id_column()
    code: Mapped[str] = mapped_column(String(16), unique=True)
    therapist_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="RESTRICT"))
    practice_id: Mapped[str] = mapped_column(
        ForeignKey("practices.id", ondelete="RESTRICT"), index=True
    )
    referral_source: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    redeemed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    patient_id: Mapped[str | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))

    def status_at(self, now: datetime) -> str:
        """Return pending, opened, redeemed, expired or revoked as of a time."""
        if self.revoked_at is not None:
            return "revoked"
        if self.redeemed_at is not None:
            return "redeemed"
        if self.expires_at <= now:
            return "expired"
        if self.opened_at is not None:
            return "opened"
        return "pending"


class Enrollment(Base):
    """A patient's place in the programme."""

    __tablename__ = "enrollments"

    id: Mapped[str] = id_column()
    patient_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), unique=True
    )
    invite_id: Mapped[str | None] = mapped_column(ForeignKey("invites.id", ondelete="SET NULL"))
    therapist_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="RESTRICT"), index=True
    )
    practice_id: Mapped[str] = mapped_column(
        ForeignKey("practices.id", ondelete="RESTRICT"), index=True
    )
    programme_slug: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="active")
    started_on: Mapped[date] = mapped_column(Date)
    enrolled_at: Mapped[datetime] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_active_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ConsentAcceptance(Base):
    """A patient's acceptance of one version of the consent document."""

    __tablename__ = "consent_acceptances"
    __table_args__ = (Index("ix_consent_acceptances_patient_id_version", "patient_id", "version"),)

    id: Mapped[str] = id_column()
    patient_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    version: Mapped[str] = mapped_column(String(20))
    locale: Mapped[str] = mapped_column(String(5))
    accepted_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Video coaching is consented to separately and can be withdrawn on its own.
    is_video_accepted: Mapped[bool] = mapped_column(Boolean, default=True)
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
