"""Uptake events (append-only, one row per journey step of an invite), patient activity, and the
tables derived from them for fast dashboards: one milestone row per invite (with each step's time
and duration) and the weeks in which each patient was active.

The derived tables are kept current in the same transaction as each event (see service.py) and
can be recomputed exactly from the raw rows with `flask --app wsgi metrics rebuild`. Their times
are whole UTC epoch seconds (integers), so SQLite and PostgreSQL compare and subtract them alike.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, text
from sqlalchemy.dialects.postgresql import UUID
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


# The milestone table's ids: native 16-byte uuids on PostgreSQL (the ids are random UUIDs; the
# rebuild's index builds compare and sort them as fixed-width bytes instead of 36-character text
# in the database's collation, and the rows are 84 bytes narrower), text elsewhere.
MILESTONE_ID = String(36).with_variant(UUID(as_uuid=False), "postgresql")

# The milestone columns, in funnel order: `<step>_ts`.
STEP_COLUMNS = tuple(f"{step}_ts" for step in FUNNEL_STEPS)
# The same times after `invited` as whole seconds since `invited_ts`: `<step>_s`.
OFFSET_COLUMNS = tuple(f"{step}_s" for step in FUNNEL_STEPS[1:])
# How long each step after `invited` took: whole seconds since the previous step, `<step>_d`.
DURATION_COLUMNS = tuple(f"{step}_d" for step in FUNNEL_STEPS[1:])


def _duration_indexes() -> list[Index]:
    """Per step after `invited`, its reached rows in duration order, whole and per practice.

    A median is then a walk along one of these (partial) indexes to the middle entry instead of
    a sort; the step's offset and the invite time in each entry apply the window and the dates.
    """
    indexes = []
    for step in FUNNEL_STEPS[1:]:
        reached = text(f"{step}_d IS NOT NULL")
        columns = [f"{step}_d", f"{step}_s", "invited_ts"]
        for name, leading in (
            (f"ix_funnel_milestones_{step}_d", []),
            (f"ix_funnel_milestones_practice_id_{step}_d", ["practice_id"]),
        ):
            indexes.append(
                Index(name, *leading, *columns, postgresql_where=reached, sqlite_where=reached)
            )
    return indexes


class FunnelMilestone(Base):
    """One invite's journey: when it reached each step (chained, see docs/metrics.md).

    Each `<step>_ts` is the step's earliest occurrence at or after the previous step's time, in
    whole UTC epoch seconds, or NULL when not reached (then every later step is NULL as well).
    Each `<step>_s` (after `invited`) is the same time as seconds since `invited_ts`
    (`<step>_ts - invited_ts`, NULL when not reached), and each `<step>_d` how long the step
    took (`<step>_ts - <previous step>_ts`). No window is applied here: the funnel applies
    `window_days` when it queries (`<step>_s <= W days`).
    """

    __tablename__ = "funnel_milestones"
    # Covering indexes: a funnel count reads only index entries (invite time and the 4-byte step
    # offsets), whole or for one practice or therapist, instead of the wide rows. The medians
    # read the per-step duration indexes.
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
        *_duration_indexes(),
    )

    # No foreign keys on this derived table: a rebuild writes 100,000 rows, and checking each
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
    invite_id: Mapped[str] = mapped_column(MILESTONE_ID, primary_key=True)
    patient_id: Mapped[str | None] = mapped_column(MILESTONE_ID, index=True)
    practice_id: Mapped[str] = mapped_column(MILESTONE_ID)
    therapist_id: Mapped[str] = mapped_column(MILESTONE_ID)
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
    # Seconds since the previous step (`<step>_ts - <previous>_ts`), NULL when not reached.
    invite_opened_d: Mapped[int | None] = mapped_column(Integer)
    registered_d: Mapped[int | None] = mapped_column(Integer)
    consented_d: Mapped[int | None] = mapped_column(Integer)
    baseline_completed_d: Mapped[int | None] = mapped_column(Integer)
    first_lesson_completed_d: Mapped[int | None] = mapped_column(Integer)
    first_video_exchanged_d: Mapped[int | None] = mapped_column(Integer)
    active_week_4_d: Mapped[int | None] = mapped_column(Integer)
    programme_completed_d: Mapped[int | None] = mapped_column(Integer)


class PatientActiveWeek(Base):
    """A week since enrolment in which a patient did something (1 = days 0–6, 4 = days 21–27)."""

    __tablename__ = "patient_active_weeks"

    patient_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    week: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
