"""privacy: at most one open (pending or running) export per patient, so two simultaneous
requests cannot both insert one

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

INDEX = "uq_data_exports_open_patient_id"
OPEN = sa.text("status IN ('pending', 'running')")


def upgrade():
    # Duplicates from before the index would stop it being built: the newest open request of a
    # patient stays open, the others fail (their patient gets that one ZIP).
    op.execute(
        "UPDATE data_exports SET status = 'failed', failure_reason = 'Duplicate request'"
        " WHERE status IN ('pending', 'running') AND EXISTS ("
        "SELECT 1 FROM data_exports AS newer WHERE newer.patient_id = data_exports.patient_id"
        " AND newer.status IN ('pending', 'running')"
        " AND (newer.requested_at > data_exports.requested_at"
        " OR (newer.requested_at = data_exports.requested_at AND newer.id > data_exports.id)))"
    )
    with op.batch_alter_table("data_exports", schema=None) as batch_op:
        batch_op.create_index(
            INDEX, ["patient_id"], unique=True, postgresql_where=OPEN, sqlite_where=OPEN
        )


def downgrade():
    with op.batch_alter_table("data_exports", schema=None) as batch_op:
        batch_op.drop_index(INDEX)
