"""metrics: funnel milestones keep each step's duration, indexed per step (whole and per
practice) for the medians; the per-step duration table funnel_step_times goes

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

STEPS = (
    "invite_opened",
    "registered",
    "consented",
    "baseline_completed",
    "first_lesson_completed",
    "first_video_exchanged",
    "active_week_4",
    "programme_completed",
)


def _duration_indexes():
    """Yields (name, columns, where) of the per-step duration indexes (see models.py)."""
    for step in STEPS:
        columns = [f"{step}_d", f"{step}_s", "invited_ts"]
        where = sa.text(f"{step}_d IS NOT NULL")
        yield f"ix_funnel_milestones_{step}_d", columns, where
        yield f"ix_funnel_milestones_practice_id_{step}_d", ["practice_id", *columns], where


def upgrade():
    with op.batch_alter_table("funnel_milestones", schema=None) as batch_op:
        for step in STEPS:
            batch_op.add_column(sa.Column(f"{step}_d", sa.Integer(), nullable=True))
    # Durations of the existing rows from their offsets (the first step's offset is its duration).
    durations = [f"{STEPS[0]}_d = {STEPS[0]}_s"] + [
        f"{step}_d = {step}_s - {previous}_s"
        for previous, step in zip(STEPS[:-1], STEPS[1:], strict=True)
    ]
    op.execute("UPDATE funnel_milestones SET " + ", ".join(durations))
    with op.batch_alter_table("funnel_milestones", schema=None) as batch_op:
        for name, columns, where in _duration_indexes():
            batch_op.create_index(
                name, columns, unique=False, postgresql_where=where, sqlite_where=where
            )
    with op.batch_alter_table("funnel_step_times", schema=None) as batch_op:
        batch_op.drop_index("ix_funnel_step_times_step_therapist")
        batch_op.drop_index("ix_funnel_step_times_step_practice")
        batch_op.drop_index("ix_funnel_step_times_step_seconds")
    op.drop_table("funnel_step_times")


def downgrade():
    op.create_table(
        "funnel_step_times",
        sa.Column("invite_id", sa.String(length=36), nullable=False),
        sa.Column("step", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("seconds_from_previous", sa.Integer(), nullable=False),
        sa.Column("seconds_from_invite", sa.Integer(), nullable=False),
        sa.Column("invited_ts", sa.BigInteger(), nullable=False),
        sa.Column("practice_id", sa.String(length=36), nullable=False),
        sa.Column("therapist_id", sa.String(length=36), nullable=False),
        sa.Column("referral_source", sa.String(length=16), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("invite_id", "step", name=op.f("pk_funnel_step_times")),
    )
    for index, step in enumerate(STEPS, start=1):
        op.execute(
            "INSERT INTO funnel_step_times (invite_id, step, seconds_from_previous,"
            " seconds_from_invite, invited_ts, practice_id, therapist_id, referral_source,"
            f" channel) SELECT invite_id, {index}, {step}_d, {step}_s, invited_ts, practice_id,"
            f" therapist_id, referral_source, channel FROM funnel_milestones"
            f" WHERE {step}_d IS NOT NULL"
        )
    with op.batch_alter_table("funnel_step_times", schema=None) as batch_op:
        tail = ["seconds_from_previous", "seconds_from_invite", "invited_ts"]
        batch_op.create_index("ix_funnel_step_times_step_seconds", ["step", *tail])
        batch_op.create_index("ix_funnel_step_times_step_practice", ["step", "practice_id", *tail])
        batch_op.create_index(
            "ix_funnel_step_times_step_therapist", ["step", "therapist_id", *tail]
        )
    with op.batch_alter_table("funnel_milestones", schema=None) as batch_op:
        for name, _columns, _where in _duration_indexes():
            batch_op.drop_index(name)
        for step in STEPS:
            batch_op.drop_column(f"{step}_d")
