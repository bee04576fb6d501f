"""metrics: funnel milestones keep each step's time as int4 seconds since the invite, and the
covering indexes hold those offsets instead of the absolute 8-byte times

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
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
OFFSETS = [f"{step}_s" for step in STEPS[1:]]
# Covering indexes of funnel_milestones: (leading columns, then the step columns).
INDEXES = {
    "ix_funnel_milestones_invited_ts": ["invited_ts"],
    "ix_funnel_milestones_practice_id_invited_ts": ["practice_id", "invited_ts"],
    "ix_funnel_milestones_therapist_id_invited_ts": ["therapist_id", "invited_ts"],
}


def upgrade():
    with op.batch_alter_table("funnel_milestones", schema=None) as batch_op:
        for name in INDEXES:
            batch_op.drop_index(name)
        for name in OFFSETS:
            batch_op.add_column(sa.Column(name, sa.Integer(), nullable=True))
    # Offsets of the existing rows: NULL where the step (or the invite time) is NULL.
    op.execute(
        "UPDATE funnel_milestones SET "
        + ", ".join(f"{o} = {t} - invited_ts" for o, t in zip(OFFSETS, STEP_TS[1:], strict=True))
    )
    with op.batch_alter_table("funnel_milestones", schema=None) as batch_op:
        for name, leading in INDEXES.items():
            batch_op.create_index(name, [*leading, *OFFSETS], unique=False)


def downgrade():
    with op.batch_alter_table("funnel_milestones", schema=None) as batch_op:
        for name in INDEXES:
            batch_op.drop_index(name)
        for name in OFFSETS:
            batch_op.drop_column(name)
    with op.batch_alter_table("funnel_milestones", schema=None) as batch_op:
        for name, leading in INDEXES.items():
            batch_op.create_index(name, [*leading, *STEP_TS[1:]], unique=False)
