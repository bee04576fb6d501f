"""messaging: conversations, coaching cycles, messages, and the media deletion queue

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

import coaching.db

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "media_deletions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("created_at", coaching.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_media_deletions")),
    )
    with op.batch_alter_table("media_deletions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_media_deletions_created_at"), ["created_at"], unique=False
        )

    op.create_table(
        "conversations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("therapist_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", coaching.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_message_at", coaching.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["accounts.id"],
            name=op.f("fk_conversations_patient_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["therapist_id"],
            ["accounts.id"],
            name=op.f("fk_conversations_therapist_id_accounts"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversations")),
        sa.UniqueConstraint("patient_id", "therapist_id", name="uq_conversations_patient_id"),
    )
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.create_index(
            "ix_conversations_therapist_id_last_message_at",
            ["therapist_id", "last_message_at"],
            unique=False,
        )

    op.create_table(
        "coaching_cycles",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("conversation_id", sa.String(length=36), nullable=False),
        sa.Column("activity", sa.String(length=200), nullable=False),
        sa.Column("request", sa.Text(), nullable=True),
        sa.Column("assignment", sa.Text(), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("phase", sa.String(length=16), nullable=False),
        sa.Column("waiting_since", coaching.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("opened_by_role", sa.String(length=16), nullable=False),
        sa.Column("created_at", coaching.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", coaching.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("closed_at", coaching.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_coaching_cycles_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coaching_cycles")),
    )
    with op.batch_alter_table("coaching_cycles", schema=None) as batch_op:
        batch_op.create_index(
            "ix_coaching_cycles_conversation_id_status",
            ["conversation_id", "status"],
            unique=False,
        )

    op.create_table(
        "messages",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("conversation_id", sa.String(length=36), nullable=False),
        sa.Column("sender_id", sa.String(length=36), nullable=True),
        sa.Column("sender_role", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("failure_reason", sa.String(length=40), nullable=True),
        sa.Column("reply_to_id", sa.String(length=36), nullable=True),
        sa.Column("cycle_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", coaching.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("sent_at", coaching.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("read_at", coaching.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("watched_at", coaching.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("content_type", sa.String(length=40), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("media_key", sa.String(length=64), nullable=True),
        sa.Column("thumbnail_key", sa.String(length=64), nullable=True),
        sa.Column("media_state", sa.String(length=16), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("upload_expires_at", coaching.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("completed_at", coaching.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("processing_lease_until", coaching.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("processing_attempts", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_messages_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["cycle_id"],
            ["coaching_cycles.id"],
            name=op.f("fk_messages_cycle_id_coaching_cycles"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["reply_to_id"],
            ["messages.id"],
            name=op.f("fk_messages_reply_to_id_messages"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["sender_id"],
            ["accounts.id"],
            name=op.f("fk_messages_sender_id_accounts"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_messages")),
        sa.UniqueConstraint("media_key", name=op.f("uq_messages_media_key")),
    )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index(
            "ix_messages_conversation_id_created_at",
            ["conversation_id", "created_at"],
            unique=False,
        )
        batch_op.create_index(
            "ix_messages_conversation_id_sent_at", ["conversation_id", "sent_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_messages_cycle_id"), ["cycle_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_messages_reply_to_id"), ["reply_to_id"], unique=False)
        batch_op.create_index(
            "ix_messages_status_created_at", ["status", "created_at"], unique=False
        )


def downgrade():
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_status_created_at")
        batch_op.drop_index(batch_op.f("ix_messages_reply_to_id"))
        batch_op.drop_index(batch_op.f("ix_messages_cycle_id"))
        batch_op.drop_index("ix_messages_conversation_id_sent_at")
        batch_op.drop_index("ix_messages_conversation_id_created_at")
    op.drop_table("messages")
    with op.batch_alter_table("coaching_cycles", schema=None) as batch_op:
        batch_op.drop_index("ix_coaching_cycles_conversation_id_status")
    op.drop_table("coaching_cycles")
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_index("ix_conversations_therapist_id_last_message_at")
    op.drop_table("conversations")
    with op.batch_alter_table("media_deletions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_media_deletions_created_at"))
    op.drop_table("media_deletions")
