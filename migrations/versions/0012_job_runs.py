"""scheduling: each job's last run and every failed run, in the database

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

import coaching.db

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "scheduled_job_status",
        sa.Column("job", sa.String(length=64), nullable=False),
        sa.Column("last_started_at", coaching.db.UTCDateTime(), nullable=False),
        sa.Column("last_finished_at", coaching.db.UTCDateTime(), nullable=False),
        sa.Column("last_outcome", sa.String(length=8), nullable=False),
        sa.Column("last_summary", sa.Text(), nullable=True),
        sa.Column("last_succeeded_at", coaching.db.UTCDateTime(), nullable=True),
        sa.Column("last_failed_at", coaching.db.UTCDateTime(), nullable=True),
        sa.Column("failures_in_a_row", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("job", name=op.f("pk_scheduled_job_status")),
    )
    op.create_table(
        "scheduled_job_failures",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("job", sa.String(length=64), nullable=False),
        sa.Column("started_at", coaching.db.UTCDateTime(), nullable=False),
        sa.Column("failed_at", coaching.db.UTCDateTime(), nullable=False),
        sa.Column("process", sa.String(length=128), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scheduled_job_failures")),
    )
    with op.batch_alter_table("scheduled_job_failures", schema=None) as batch_op:
        batch_op.create_index("ix_scheduled_job_failures_failed_at", ["failed_at"], unique=False)
        batch_op.create_index(
            "ix_scheduled_job_failures_job_failed_at", ["job", "failed_at"], unique=False
        )


def downgrade():
    with op.batch_alter_table("scheduled_job_failures", schema=None) as batch_op:
        batch_op.drop_index("ix_scheduled_job_failures_job_failed_at")
        batch_op.drop_index("ix_scheduled_job_failures_failed_at")
    op.drop_table("scheduled_job_failures")
    op.drop_table("scheduled_job_status")
