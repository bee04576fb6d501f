"""notifications: the queue's lease and rule columns, devices, reminder settings, push log

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

import coaching.db

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("due_at", coaching.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("claim_token", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("local_date", sa.Date(), nullable=True))
        batch_op.add_column(
            sa.Column("skip_if_active_since", coaching.db.UTCDateTime(timezone=True), nullable=True)
        )
    op.execute("UPDATE notifications SET due_at = scheduled_for")
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.alter_column(
            "due_at", existing_type=coaching.db.UTCDateTime(timezone=True), nullable=False
        )
        batch_op.drop_index("ix_notifications_status_scheduled_for")
        batch_op.create_index("ix_notifications_status_due_at", ["status", "due_at"], unique=False)

    op.create_table(
        "devices",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("token", sa.String(length=1024), nullable=False),
        sa.Column("platform", sa.String(length=10), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", coaching.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", coaching.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("deactivated_at", coaching.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("deactivation_reason", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_devices_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_devices")),
        sa.UniqueConstraint("token", name=op.f("uq_devices_token")),
    )
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_devices_account_id"), ["account_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_devices_last_seen_at"), ["last_seen_at"], unique=False)

    op.create_table(
        "reminder_settings",
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("daily_time", sa.Time(), nullable=False),
        sa.Column("quiet_start", sa.Time(), nullable=True),
        sa.Column("quiet_end", sa.Time(), nullable=True),
        sa.Column("categories", sa.JSON(), nullable=False),
        sa.Column("pause_until", sa.Date(), nullable=True),
        sa.Column("updated_at", coaching.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_reminder_settings_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_reminder_settings")),
    )

    op.create_table(
        "push_log",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("notification_id", sa.String(length=36), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("device_id", sa.String(length=36), nullable=True),
        sa.Column("platform", sa.String(length=10), nullable=True),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("sent_at", coaching.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_push_log")),
    )
    with op.batch_alter_table("push_log", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_push_log_notification_id"), ["notification_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_push_log_sent_at"), ["sent_at"], unique=False)


def downgrade():
    with op.batch_alter_table("push_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_push_log_sent_at"))
        batch_op.drop_index(batch_op.f("ix_push_log_notification_id"))
    op.drop_table("push_log")
    op.drop_table("reminder_settings")
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_devices_last_seen_at"))
        batch_op.drop_index(batch_op.f("ix_devices_account_id"))
    op.drop_table("devices")
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_index("ix_notifications_status_due_at")
        batch_op.create_index(
            "ix_notifications_status_scheduled_for", ["status", "scheduled_for"], unique=False
        )
        batch_op.drop_column("skip_if_active_since")
        batch_op.drop_column("local_date")
        batch_op.drop_column("claim_token")
        batch_op.drop_column("due_at")
