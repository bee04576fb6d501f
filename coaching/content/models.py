"""The loaded programme content, its immutable lesson versions, and each patient's progress.

A lesson's text is never changed in place: `modules sync` adds a `LessonVersion` when a lesson's
text changed, and a patient's `LessonProgress` points at the version they started, so a patient
mid-programme keeps reading (and answering) exactly what they saw first.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from coaching.db import Base, UTCDateTime, id_column

PROGRESS_STATUSES = ("started", "completed")


class ContentRelease(Base):
    """One load of `modules/` that changed something; the newest holds the programme settings."""

    __tablename__ = "content_releases"

    id: Mapped[str] = id_column()
    number: Mapped[int] = mapped_column(Integer, unique=True)
    digest: Mapped[str] = mapped_column(String(64))
    programme_slug: Mapped[str] = mapped_column(String(64))
    title: Mapped[dict] = mapped_column(JSON)
    unlock_days_per_module: Mapped[int] = mapped_column(Integer)
    loaded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    summary: Mapped[dict] = mapped_column(JSON)


class ContentModule(Base):
    __tablename__ = "content_modules"

    id: Mapped[str] = id_column()
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    position: Mapped[int] = mapped_column(Integer)
    process: Mapped[str] = mapped_column(String(64))
    title: Mapped[dict] = mapped_column(JSON)
    summary: Mapped[dict] = mapped_column(JSON)
    # A module dropped from programme.toml is kept (progress points at it) but no longer shown.
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ContentLesson(Base):
    """A lesson's stable identity (its id is the API's lesson id); its text is in versions."""

    __tablename__ = "content_lessons"

    id: Mapped[str] = id_column()
    module_id: Mapped[str] = mapped_column(
        ForeignKey("content_modules.id", ondelete="RESTRICT"), index=True
    )
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    position: Mapped[int] = mapped_column(Integer)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    # The newest version's number: what a patient who has not started the lesson sees.
    latest_version: Mapped[int] = mapped_column(Integer)


class LessonVersion(Base):
    """The text of a lesson in every locale as it was at one load (never updated)."""

    __tablename__ = "content_lesson_versions"
    __table_args__ = (UniqueConstraint("lesson_id", "number"),)

    id: Mapped[str] = id_column()
    lesson_id: Mapped[str] = mapped_column(ForeignKey("content_lessons.id", ondelete="RESTRICT"))
    number: Mapped[int] = mapped_column(Integer)
    digest: Mapped[str] = mapped_column(String(64))
    # {"nl": {"title": ..., "blocks": [...]}, "en": {...}}
    body: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class LessonProgress(Base):
    """A patient's progress in one lesson, pinned to the version they started."""

    __tablename__ = "lesson_progress"
    __table_args__ = (UniqueConstraint("patient_id", "lesson_id"),)

    id: Mapped[str] = id_column()
    patient_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    lesson_id: Mapped[str] = mapped_column(
        ForeignKey("content_lessons.id", ondelete="RESTRICT"), index=True
    )
    version_id: Mapped[str] = mapped_column(
        ForeignKey("content_lesson_versions.id", ondelete="RESTRICT")
    )
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class LessonAnswer(Base):
    """A patient's answer to one exercise or reflection block of the version they started."""

    __tablename__ = "lesson_answers"
    __table_args__ = (UniqueConstraint("progress_id", "block_id"),)

    id: Mapped[str] = id_column()
    progress_id: Mapped[str] = mapped_column(ForeignKey("lesson_progress.id", ondelete="CASCADE"))
    block_id: Mapped[str] = mapped_column(String(64))
    block_type: Mapped[str] = mapped_column(String(16))
    value: Mapped[object] = mapped_column(JSON)
    answered_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ModuleCompletion(Base):
    """That a patient completed a module (kept even if lessons are added to it later)."""

    __tablename__ = "module_completions"
    __table_args__ = (
        UniqueConstraint("patient_id", "module_id"),
        Index("ix_module_completions_module_id", "module_id"),
    )

    id: Mapped[str] = id_column()
    patient_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    module_id: Mapped[str] = mapped_column(ForeignKey("content_modules.id", ondelete="RESTRICT"))
    completed_at: Mapped[datetime] = mapped_column(UTCDateTime())
