"""content: programme releases, modules, lessons and their immutable versions, lesson progress
and answers, module completions, and appointments

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

import coaching.db

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "content_modules",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("slug", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("process", sa.String(length=64), nullable=False),
        sa.Column("title", sa.JSON(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("updated_at", coaching.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_content_modules")),
        sa.UniqueConstraint("slug", name=op.f("uq_content_modules_slug")),
    )
    op.create_table(
        "content_releases",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("programme_slug", sa.String(length=64), nullable=False),
        sa.Column("title", sa.JSON(), nullable=False),
        sa.Column("unlock_days_per_module", sa.Integer(), nullable=False),
        sa.Column("loaded_at", coaching.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_content_releases")),
        sa.UniqueConstraint("number", name=op.f("uq_content_releases_number")),
    )
    op.create_table(
        "content_lessons",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("module_id", sa.String(length=36), nullable=False),
        sa.Column("slug", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("latest_version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["module_id"],
            ["content_modules.id"],
            name=op.f("fk_content_lessons_module_id_content_modules"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_content_lessons")),
        sa.UniqueConstraint("slug", name=op.f("uq_content_lessons_slug")),
    )
    with op.batch_alter_table("content_lessons", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_content_lessons_module_id"), ["module_id"], unique=False
        )

    op.create_table(
        "appointments",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("therapist_id", sa.String(length=36), nullable=False),
        sa.Column("starts_at", coaching.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("duration_minutes", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", coaching.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("cancelled_at", coaching.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("cancelled_by", sa.String(length=36), nullable=True),
        sa.Column("cancel_reason", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(
            ["cancelled_by"],
            ["accounts.id"],
            name=op.f("fk_appointments_cancelled_by_accounts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["accounts.id"],
            name=op.f("fk_appointments_patient_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["therapist_id"],
            ["accounts.id"],
            name=op.f("fk_appointments_therapist_id_accounts"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_appointments")),
    )
    with op.batch_alter_table("appointments", schema=None) as batch_op:
        batch_op.create_index(
            "ix_appointments_patient_id_starts_at", ["patient_id", "starts_at"], unique=False
        )
        batch_op.create_index("ix_appointments_starts_at", ["starts_at"], unique=False)
        batch_op.create_index(
            "ix_appointments_therapist_id_starts_at", ["therapist_id", "starts_at"], unique=False
        )

    op.create_table(
        "content_lesson_versions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("lesson_id", sa.String(length=36), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("created_at", coaching.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["lesson_id"],
            ["content_lessons.id"],
            name=op.f("fk_content_lesson_versions_lesson_id_content_lessons"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_content_lesson_versions")),
        sa.UniqueConstraint(
            "lesson_id", "number", name=op.f("uq_content_lesson_versions_lesson_id")
        ),
    )
    op.create_table(
        "module_completions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("module_id", sa.String(length=36), nullable=False),
        sa.Column("completed_at", coaching.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["module_id"],
            ["content_modules.id"],
            name=op.f("fk_module_completions_module_id_content_modules"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["accounts.id"],
            name=op.f("fk_module_completions_patient_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_module_completions")),
        sa.UniqueConstraint(
            "patient_id", "module_id", name=op.f("uq_module_completions_patient_id")
        ),
    )
    with op.batch_alter_table("module_completions", schema=None) as batch_op:
        batch_op.create_index("ix_module_completions_module_id", ["module_id"], unique=False)

    op.create_table(
        "lesson_progress",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("lesson_id", sa.String(length=36), nullable=False),
        sa.Column("version_id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_at", coaching.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("completed_at", coaching.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", coaching.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["lesson_id"],
            ["content_lessons.id"],
            name=op.f("fk_lesson_progress_lesson_id_content_lessons"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["accounts.id"],
            name=op.f("fk_lesson_progress_patient_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["content_lesson_versions.id"],
            name=op.f("fk_lesson_progress_version_id_content_lesson_versions"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lesson_progress")),
        sa.UniqueConstraint("patient_id", "lesson_id", name=op.f("uq_lesson_progress_patient_id")),
    )
    with op.batch_alter_table("lesson_progress", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_lesson_progress_lesson_id"), ["lesson_id"], unique=False
        )

    op.create_table(
        "lesson_answers",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("progress_id", sa.String(length=36), nullable=False),
        sa.Column("block_id", sa.String(length=64), nullable=False),
        sa.Column("block_type", sa.String(length=16), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("answered_at", coaching.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", coaching.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["progress_id"],
            ["lesson_progress.id"],
            name=op.f("fk_lesson_answers_progress_id_lesson_progress"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lesson_answers")),
        sa.UniqueConstraint("progress_id", "block_id", name=op.f("uq_lesson_answers_progress_id")),
    )


def downgrade():
    op.drop_table("lesson_answers")
    with op.batch_alter_table("lesson_progress", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lesson_progress_lesson_id"))

    op.drop_table("lesson_progress")
    with op.batch_alter_table("module_completions", schema=None) as batch_op:
        batch_op.drop_index("ix_module_completions_module_id")

    op.drop_table("module_completions")
    op.drop_table("content_lesson_versions")
    with op.batch_alter_table("appointments", schema=None) as batch_op:
        batch_op.drop_index("ix_appointments_therapist_id_starts_at")
        batch_op.drop_index("ix_appointments_starts_at")
        batch_op.drop_index("ix_appointments_patient_id_starts_at")

    op.drop_table("appointments")
    with op.batch_alter_table("content_lessons", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_content_lessons_module_id"))

    op.drop_table("content_lessons")
    op.drop_table("content_releases")
    op.drop_table("content_modules")
