"""audit hash chain; privacy: export jobs and erasure records

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

import coaching.db

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "audit_chain_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_chain_head")),
    )
    with op.batch_alter_table("audit_log") as batch:
        batch.add_column(sa.Column("seq", sa.BigInteger(), nullable=False))
        batch.add_column(sa.Column("prev_hash", sa.String(length=64), nullable=False))
        batch.add_column(sa.Column("row_hash", sa.String(length=64), nullable=False))
        batch.create_unique_constraint(batch.f("uq_audit_log_seq"), ["seq"])

    op.create_table(
        "data_exports",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("requested_at", coaching.db.UTCDateTime(), nullable=False),
        sa.Column("due_at", coaching.db.UTCDateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("completed_at", coaching.db.UTCDateTime(), nullable=True),
        sa.Column("expires_at", coaching.db.UTCDateTime(), nullable=True),
        sa.Column("media_key", sa.String(length=64), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("failure_reason", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["accounts.id"],
            name=op.f("fk_data_exports_patient_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_exports")),
    )
    op.create_index(
        op.f("ix_data_exports_patient_id"), "data_exports", ["patient_id"], unique=False
    )
    op.create_index(
        "ix_data_exports_status_due_at", "data_exports", ["status", "due_at"], unique=False
    )
    op.create_table(
        "erasure_records",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("requested_by_id", sa.String(length=36), nullable=True),
        sa.Column("requested_by_role", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("requested_at", coaching.db.UTCDateTime(), nullable=False),
        sa.Column("is_medical_record_destroyed", sa.Boolean(), nullable=False),
        sa.Column("retained_tables", sa.JSON(), nullable=False),
        sa.Column("retain_until", coaching.db.UTCDateTime(), nullable=True),
        sa.Column("purged_at", coaching.db.UTCDateTime(), nullable=True),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_erasure_records")),
    )
    op.create_index(
        op.f("ix_erasure_records_account_id"), "erasure_records", ["account_id"], unique=False
    )
    op.create_index(
        "ix_erasure_records_retain_until",
        "erasure_records",
        ["retain_until", "purged_at"],
        unique=False,
    )


def downgrade():
    op.drop_index("ix_erasure_records_retain_until", table_name="erasure_records")
    op.drop_index(op.f("ix_erasure_records_account_id"), table_name="erasure_records")
    op.drop_table("erasure_records")
    op.drop_index("ix_data_exports_status_due_at", table_name="data_exports")
    op.drop_index(op.f("ix_data_exports_patient_id"), table_name="data_exports")
    op.drop_table("data_exports")
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_constraint(batch.f("uq_audit_log_seq"), type_="unique")
        batch.drop_column("row_hash")
        batch.drop_column("prev_hash")
        batch.drop_column("seq")
    op.drop_table("audit_chain_head")
