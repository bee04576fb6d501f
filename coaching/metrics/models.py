"""Uptake events (append-only, one row per journey step of an invite), patient activity, and the
tables derived from them for fast dashboards: one milestone row per invite, one row per reached
step with its duration, and the weeks in which each patient was active.

The derived tables are kept current in the same transaction as each event (see service.py) and
can be recomputed exactly from the raw rows with `flask --app wsgi metrics rebuild`. Their times
are whole UTC epoch seconds (integers), so SQLite and PostgreSQL compare and subtract them alike.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from coaching.db import Base, UTCDateTime, id_column

FUNNEL_STEPS = (
    "invited",
    "invite_opened",
    "registered",
    "consented",
    "baseline_completed",
    "first_lesson_completed",
    "first_video_exchanged",
    "active_week_4",
    "programme_completed",
)


class UptakeEvent(Base):
    """One step of one invite's journey, with the invite's breakdown attributes."""

    __tablename__ = "uptake_events"
    # Invite, step and time: the rebuild's one ordered pass over every event reads this index
    # alone, and so do the look-ups of one invite's occurrences of a step.
    __table_args__ = (
        Index("ix_uptake_events_invite_id_name_occurred_at", "invite_id", "name", "occurred_at"),
    )

    id: Mapped[str] = id_column()
    invite_id: Mapped[str] = mapped_column(ForeignKey("invites.id", ondelete="RESTRICT"))
    name: Mapped[str] = mapped_column(String(40))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    practice_id: Mapped[str] = mapped_column(String(36))
    therapist_id: Mapped[str] = mapped_column(String(36))
    referral_source: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(16))
    patient_id: Mapped[str | None] = mapped_column(String(36), index=True)


class PatientActivity(Base):
    """Something a patient did (lesson progress, app event, message, questionnaire)."""

    __tablename__ = "patient_activity"
    __table_args__ = (
        Index("ix_patient_activity_patient_id_occurred_at", "patient_id", "occurred_at"),
    )

    id: Mapped[str] = id_column()
    patient_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(40))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())


# The milestone columns, in funnel order: `<step>_ts`.
STEP_COLUMNS = tuple(f"{step}_ts" for step in FUNNEL_STEPS)
# The same times after `invited` as whole seconds since `invited_ts`: `<step>_s`.
OFFSET_COLUMNS = tuple(f"{step}_s" for step in FUNNEL_STEPS[1:])


class FunnelMilestone(Base):
    """One invite's journey: when it reached each step (chained, see docs/metrics.md).

    Each `<step>_ts` is the step's earliest occurrence at or after the previous step's time, in
    whole UTC epoch seconds, or NULL when not reached (then every later step is NULL as well).
    Each `<step>_s` (after `invited`) is the same time as seconds since `invited_ts`
    (`<step>_ts - invited_ts`, NULL when not reached). No window is applied here: the funnel
    applies `window_days` when it queries (`<step>_s <= W days`).
    """

    __tablename__ = "funnel_milestones"
    # Covering indexes: a funnel count reads only index entries (invite time and the 4-byte step
    # offsets), whole or for one practice or therapist, instead of the wide rows.
    __table_args__ = (
        Index("ix_funnel_milestones_invited_ts", "invited_ts", *OFFSET_COLUMNS),
        Index(
            "ix_funnel_milestones_practice_id_invited_ts",
            "practice_id",
            "invited_ts",
            *OFFSET_COLUMNS,
        ),
        Index(
            "ix_funnel_milestones_therapist_id_invited_ts",
            "therapist_id",
            "invited_ts",
            *OFFSET_COLUMNS,
        ),
    )

    # No foreign keys on these derived tables: a rebuild writes 400,000 rows, and checking each
    # would cost more than computing it. Invites are never deleted while they have events.
    # The step times come first: a scan of the rows decodes each only up to the last column it
    # reads. The funnel counts read the offsets at the end (added by migration 0008) from the
    # covering indexes instead.
    invited_ts: Mapped[int | None] = mapped_column(BigInteger)
    invite_opened_ts: Mapped[int | None] = mapped_column(BigInteger)
    registered_ts: Mapped[int | None] = mapped_column(BigInteger)
    consented_ts: Mapped[int | None] = mapped_column(BigInteger)
    baseline_completed_ts: Mapped[int | None] = mapped_column(BigInteger)
    first_lesson_completed_ts: Mapped[int | None] = mapped_column(BigInteger)
    first_video_exchanged_ts: Mapped[int | None] = mapped_column(BigInteger)
    active_week_4_ts: Mapped[int | None] = mapped_column(BigInteger)
    programme_completed_ts: Mapped[int | None] = mapped_column(BigInteger)
    invite_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    patient_id: Mapped[str | None] = mapped_column(String(36), index=True)
    practice_id: Mapped[str] = mapped_column(String(36))
    therapist_id: Mapped[str] = mapped_column(String(36))
    referral_source: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(16))
    # Seconds since invited_ts (int4: compared with a constant, no addition per row).
    invite_opened_s: Mapped[int | None] = mapped_column(Integer)
    registered_s: Mapped[int | None] = mapped_column(Integer)
    consented_s: Mapped[int | None] = mapped_column(Integer)
    baseline_completed_s: Mapped[int | None] = mapped_column(Integer)
    first_lesson_completed_s: Mapped[int | None] = mapped_column(Integer)
    first_video_exchanged_s: Mapped[int | None] = mapped_column(Integer)
    active_week_4_s: Mapped[int | None] = mapped_column(Integer)
    programme_completed_s: Mapped[int | None] = mapped_column(Integer)


class FunnelStepTime(Base):
    """One reached step (after `invited`) of one invite, with how long it took.

    The same facts as the milestone row, laid out so that a median is a walk along an index in
    duration order instead of a sort: the funnel's medians read these indexes.
    """

    __tablename__ = "funnel_step_times"
    __table_args__ = (
        Index(
            "ix_funnel_step_times_step_seconds",
            "step",
            "seconds_from_previous",
            "seconds_from_invite",
            "invited_ts",
        ),
        Index(
            "ix_funnel_step_times_step_practice",
            "step",
            "practice_id",
            "seconds_from_previous",
            "seconds_from_invite",
            "invited_ts",
        ),
        Index(
            "ix_funnel_step_times_step_therapist",
            "step",
            "therapist_id",
            "seconds_from_previous",
            "seconds_from_invite",
            "invited_ts",
        ),
    )

    invite_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # Position in FUNNEL_STEPS (1 = invite_opened ... 8 = programme_completed).
    step: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    seconds_from_previous: Mapped[int] = mapped_column(Integer)
    seconds_from_invite: Mapped[int] = mapped_column(Integer)
    invited_ts: Mapped[int] = mapped_column(BigInteger)
    practice_id: Mapped[str] = mapped_column(String(36))
    therapist_id: Mapped[str] = mapped_column(String(36))
    referral_source: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(16))


class PatientActiveWeek(Base):
    """A week since enrolment in which a patient did something (1 = days 0–6, 4 = days 21–27)."""

    __tablename__ = "patient_active_weeks"

    patient_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    week: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
