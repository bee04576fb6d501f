"""Questionnaire responses with their scores, weekly check-ins, and alerts for the therapist.

Scores live in their own table, one row per (response, score name), so that outcome queries are
plain SQL: `questionnaire_scores` repeats the response's `patient_id`, `questionnaire_key` and
`timepoint` (responses never change, so the copies cannot drift) and holds a numeric score in
`value` (never rounded) or a categorical one (`band`, `state`, `risk`, `medication`,
`work_status`) in `value_text`. For example, the change in ODI from baseline to month 3 per
practice:

    SELECT e.practice_id, AVG(m3.value - b.value)
    FROM questionnaire_scores b
    JOIN questionnaire_scores m3 ON m3.patient_id = b.patient_id
         AND m3.questionnaire_key = 'odi' AND m3.name = 'odi_percent' AND m3.timepoint = 'month3'
    JOIN enrollments e ON e.patient_id = b.patient_id
    WHERE b.questionnaire_key = 'odi' AND b.name = 'odi_percent' AND b.timepoint = 'baseline'
    GROUP BY e.practice_id
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from coaching.db import Base, UTCDateTime, id_column


class QuestionnaireResponse(Base):
    """One completed questionnaire at one time point; at most one per instrument and time point."""

    __tablename__ = "questionnaire_responses"
    __table_args__ = (
        UniqueConstraint(
            "patient_id",
            "questionnaire_key",
            "timepoint",
            name="uq_questionnaire_responses_patient_id_key_timepoint",
        ),
    )

    id: Mapped[str] = id_column()
    patient_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    questionnaire_key: Mapped[str] = mapped_column(String(20))
    questionnaire_version: Mapped[str] = mapped_column(String(20))
    timepoint: Mapped[str] = mapped_column(String(16))
    answers: Mapped[dict] = mapped_column(JSON)
    locale: Mapped[str] = mapped_column(String(5))
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime())

    scores: Mapped[list[QuestionnaireScore]] = relationship(
        back_populates="response",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="QuestionnaireScore.position",
    )

    def score_values(self) -> dict:
        """Returns the stored scores as {name: value}."""
        return {s.name: s.typed_value() for s in self.scores}


class QuestionnaireScore(Base):
    """One computed score of a response (numeric in `value`, categorical in `value_text`)."""

    __tablename__ = "questionnaire_scores"
    __table_args__ = (
        Index(
            "ix_questionnaire_scores_key_name_timepoint",
            "questionnaire_key",
            "name",
            "timepoint",
        ),
        Index("ix_questionnaire_scores_patient_id", "patient_id"),
    )

    response_id: Mapped[str] = mapped_column(
        ForeignKey("questionnaire_responses.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(36))
    questionnaire_key: Mapped[str] = mapped_column(String(20))
    timepoint: Mapped[str] = mapped_column(String(16))
    position: Mapped[int] = mapped_column(SmallInteger)
    is_integer: Mapped[bool] = mapped_column(Boolean, default=False)
    value: Mapped[float | None] = mapped_column(Float)
    value_text: Mapped[str | None] = mapped_column(String(40))

    response: Mapped[QuestionnaireResponse] = relationship(back_populates="scores")

    def typed_value(self):
        """Returns the score as computed: text, an integer, or an unrounded number."""
        if self.value_text is not None:
            return self.value_text
        if self.value is None:
            return None
        return int(self.value) if self.is_integer else self.value


class CheckIn(Base):
    """A patient's optional weekly check-in: back pain and whether they did their committed action."""

    __tablename__ = "outcome_checkins"
    __table_args__ = (
        UniqueConstraint("patient_id", "week", name="uq_outcome_checkins_patient_id_week"),
    )

    id: Mapped[str] = id_column()
    patient_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    week: Mapped[int] = mapped_column(Integer)  # programme week: 1 = days 0–6 after started_on
    local_date: Mapped[date] = mapped_column(Date)
    back_pain: Mapped[int] = mapped_column(SmallInteger)
    did_committed_action: Mapped[bool | None] = mapped_column(Boolean)
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime())


class OutcomeAlert(Base):
    """A follow-up or check-in worse than baseline by the alert threshold, for the therapist."""

    __tablename__ = "outcome_alerts"
    __table_args__ = (
        Index("ix_outcome_alerts_patient_id_acknowledged_at", "patient_id", "acknowledged_at"),
    )

    id: Mapped[str] = id_column()
    patient_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    therapist_id: Mapped[str | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))  # pain | disability
    score: Mapped[str] = mapped_column(String(40))  # e.g. "nrs.back_pain", "odi.odi_percent"
    source: Mapped[str] = mapped_column(String(16))  # response | checkin
    response_id: Mapped[str | None] = mapped_column(
        ForeignKey("questionnaire_responses.id", ondelete="CASCADE")
    )
    checkin_id: Mapped[str | None] = mapped_column(
        ForeignKey("outcome_checkins.id", ondelete="CASCADE")
    )
    timepoint: Mapped[str | None] = mapped_column(String(16))
    baseline_value: Mapped[float] = mapped_column(Float)
    value: Mapped[float] = mapped_column(Float)
    change: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    acknowledged_by_id: Mapped[str | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL")
    )
    note: Mapped[str | None] = mapped_column(String(500))
