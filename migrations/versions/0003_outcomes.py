"""outcomes: questionnaire responses and their scores, weekly check-ins, alerts

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

import coaching.db

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "questionnaire_responses",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("questionnaire_key", sa.String(length=20), nullable=False),
        sa.Column("questionnaire_version", sa.String(length=20), nullable=False),
        sa.Column("timepoint", sa.String(length=16), nullable=False),
        sa.Column("answers", sa.JSON(), nullable=False),
        sa.Column("locale", sa.String(length=5), nullable=False),
        sa.Column("submitted_at", coaching.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["accounts.id"],
            name=op.f("fk_questionnaire_responses_patient_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_questionnaire_responses")),
        sa.UniqueConstraint(
            "patient_id",
            "questionnaire_key",
            "timepoint",
            name="uq_questionnaire_responses_patient_id_key_timepoint",
        ),
    )
    op.create_table(
        "questionnaire_scores",
        sa.Column("response_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("questionnaire_key", sa.String(length=20), nullable=False),
        sa.Column("timepoint", sa.String(length=16), nullable=False),
        sa.Column("position", sa.SmallInteger(), nullable=False),
        sa.Column("is_integer", sa.Boolean(), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("value_text", sa.String(length=40), nullable=True),
        sa.ForeignKeyConstraint(
            ["response_id"],
            ["questionnaire_responses.id"],
            name=op.f("fk_questionnaire_scores_response_id_questionnaire_responses"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("response_id", "name", name=op.f("pk_questionnaire_scores")),
    )
    with op.batch_alter_table("questionnaire_scores", schema=None) as batch_op:
        batch_op.create_index(
            "ix_questionnaire_scores_key_name_timepoint",
            ["questionnaire_key", "name", "timepoint"],
            unique=False,
        )
        batch_op.create_index("ix_questionnaire_scores_patient_id", ["patient_id"], unique=False)

    op.create_table(
        "outcome_checkins",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("week", sa.Integer(), nullable=False),
        sa.Column("local_date", sa.Date(), nullable=False),
        sa.Column("back_pain", sa.SmallInteger(), nullable=False),
        sa.Column("did_committed_action", sa.Boolean(), nullable=True),
        sa.Column("submitted_at", coaching.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["accounts.id"],
            name=op.f("fk_outcome_checkins_patient_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outcome_checkins")),
        sa.UniqueConstraint("patient_id", "week", name="uq_outcome_checkins_patient_id_week"),
    )
    op.create_table(
        "outcome_alerts",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("therapist_id", sa.String(length=36), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("score", sa.String(length=40), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("response_id", sa.String(length=36), nullable=True),
        sa.Column("checkin_id", sa.String(length=36), nullable=True),
        sa.Column("timepoint", sa.String(length=16), nullable=True),
        sa.Column("baseline_value", sa.Float(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("change", sa.Float(), nullable=False),
        sa.Column("created_at", coaching.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_at", coaching.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_by_id", sa.String(length=36), nullable=True),
        sa.Column("note", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(
            ["acknowledged_by_id"],
            ["accounts.id"],
            name=op.f("fk_outcome_alerts_acknowledged_by_id_accounts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["checkin_id"],
            ["outcome_checkins.id"],
            name=op.f("fk_outcome_alerts_checkin_id_outcome_checkins"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["accounts.id"],
            name=op.f("fk_outcome_alerts_patient_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["response_id"],
            ["questionnaire_responses.id"],
            name=op.f("fk_outcome_alerts_response_id_questionnaire_responses"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["therapist_id"],
            ["accounts.id"],
            name=op.f("fk_outcome_alerts_therapist_id_accounts"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outcome_alerts")),
    )
    with op.batch_alter_table("outcome_alerts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_outcome_alerts_patient_id_acknowledged_at",
            ["patient_id", "acknowledged_at"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_outcome_alerts_therapist_id"), ["therapist_id"], unique=False
        )


def downgrade():
    with op.batch_alter_table("outcome_alerts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outcome_alerts_therapist_id"))
        batch_op.drop_index("ix_outcome_alerts_patient_id_acknowledged_at")
    op.drop_table("outcome_alerts")
    op.drop_table("outcome_checkins")
    with op.batch_alter_table("questionnaire_scores", schema=None) as batch_op:
        batch_op.drop_index("ix_questionnaire_scores_patient_id")
        batch_op.drop_index("ix_questionnaire_scores_key_name_timepoint")
    op.drop_table("questionnaire_scores")
    op.drop_table("questionnaire_responses")
