"""metrics: funnel milestones, per-step durations and active weeks (derived from the raw events)

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

import coaching.db  # noqa: F401

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

STEPS = (
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
STEP_TS = [f"{step}_ts" for step in STEPS]


def upgrade():
    op.create_table(
        "funnel_milestones",
        # Step times first: a funnel scan decodes each row only up to the columns it reads.
        *[sa.Column(name, sa.BigInteger(), nullable=True) for name in STEP_TS],
        sa.Column("invite_id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=True),
        sa.Column("practice_id", sa.String(length=36), nullable=False),
        sa.Column("therapist_id", sa.String(length=36), nullable=False),
        sa.Column("referral_source", sa.String(length=16), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("invite_id", name=op.f("pk_funnel_milestones")),
    )
    with op.batch_alter_table("funnel_milestones", schema=None) as batch_op:
        batch_op.create_index(
            "ix_funnel_milestones_invited_ts", ["invited_ts", *STEP_TS[1:]], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_funnel_milestones_patient_id"), ["patient_id"], unique=False
        )
        batch_op.create_index(
            "ix_funnel_milestones_practice_id_invited_ts",
            ["practice_id", "invited_ts", *STEP_TS[1:]],
            unique=False,
        )
        batch_op.create_index(
            "ix_funnel_milestones_therapist_id_invited_ts",
            ["therapist_id", "invited_ts", *STEP_TS[1:]],
            unique=False,
        )

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
    with op.batch_alter_table("funnel_step_times", schema=None) as batch_op:
        batch_op.create_index(
            "ix_funnel_step_times_step_seconds",
            ["step", "seconds_from_previous", "seconds_from_invite", "invited_ts"],
            unique=False,
        )
        batch_op.create_index(
            "ix_funnel_step_times_step_practice",
            ["step", "practice_id", "seconds_from_previous", "seconds_from_invite", "invited_ts"],
            unique=False,
        )
        batch_op.create_index(
            "ix_funnel_step_times_step_therapist",
            ["step", "therapist_id", "seconds_from_previous", "seconds_from_invite", "invited_ts"],
            unique=False,
        )

    op.create_table(
        "patient_active_weeks",
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("week", sa.Integer(), autoincrement=False, nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["accounts.id"],
            name=op.f("fk_patient_active_weeks_patient_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("patient_id", "week", name=op.f("pk_patient_active_weeks")),
    )

    # The rebuild groups every raw event by invite and step: with the time in the index that is
    # one ordered scan of the index alone (no sort, no row look-ups).
    with op.batch_alter_table("uptake_events", schema=None) as batch_op:
        batch_op.drop_index("ix_uptake_events_invite_id_name")
        batch_op.create_index(
            "ix_uptake_events_invite_id_name_occurred_at",
            ["invite_id", "name", "occurred_at"],
            unique=False,
        )


def downgrade():
    with op.batch_alter_table("uptake_events", schema=None) as batch_op:
        batch_op.drop_index("ix_uptake_events_invite_id_name_occurred_at")
        batch_op.create_index(
            "ix_uptake_events_invite_id_name", ["invite_id", "name"], unique=False
        )
    op.drop_table("patient_active_weeks")
    with op.batch_alter_table("funnel_step_times", schema=None) as batch_op:
        batch_op.drop_index("ix_funnel_step_times_step_therapist")
        batch_op.drop_index("ix_funnel_step_times_step_practice")
        batch_op.drop_index("ix_funnel_step_times_step_seconds")
    op.drop_table("funnel_step_times")
    with op.batch_alter_table("funnel_milestones", schema=None) as batch_op:
        batch_op.drop_index("ix_funnel_milestones_therapist_id_invited_ts")
        batch_op.drop_index(batch_op.f("ix_funnel_milestones_patient_id"))
        batch_op.drop_index("ix_funnel_milestones_practice_id_invited_ts")
        batch_op.drop_index("ix_funnel_milestones_invited_ts")
    op.drop_table("funnel_milestones")
