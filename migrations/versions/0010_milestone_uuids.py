"""metrics: on PostgreSQL the milestone table's ids are native uuids (faster index builds in the
rebuild, narrower rows); other databases keep text

Revision ID: 0010
Revises: 0009
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

COLUMNS = ("invite_id", "patient_id", "practice_id", "therapist_id")


def upgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "ALTER TABLE funnel_milestones "
        + ", ".join(f"ALTER COLUMN {c} TYPE uuid USING {c}::uuid" for c in COLUMNS)
    )


def downgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "ALTER TABLE funnel_milestones "
        + ", ".join(f"ALTER COLUMN {c} TYPE varchar(36) USING {c}::text" for c in COLUMNS)
    )
