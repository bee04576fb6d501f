"""Query arguments and answers of the programme metrics endpoints."""

from __future__ import annotations

from datetime import date

from marshmallow import Schema, fields, validate

from coaching.enrolment.models import CHANNELS, REFERRAL_SOURCES
from coaching.metrics.funnel import BREAKDOWNS
from coaching.metrics.models import FUNNEL_STEPS
from coaching.outcomes.schedule import FOLLOW_UPS
from coaching.schemas import BaseSchema, one_of, text

# The reports turn `to` into the start of the next day, which 9999-12-31 does not have; nothing
# in the programme predates 2000.
DATE_RANGE = validate.Range(min=date(2000, 1, 1), max=date(9998, 12, 31))


class _ScopeArgs(BaseSchema):
    date_from = fields.Date(
        data_key="from", validate=DATE_RANGE, metadata={"description": "first day, inclusive"}
    )
    date_to = fields.Date(
        data_key="to", validate=DATE_RANGE, metadata={"description": "last day, inclusive"}
    )
    practice_id = text(36)
    therapist_id = text(36)


class FunnelArgsSchema(_ScopeArgs):
    referral_source = one_of(REFERRAL_SOURCES)
    channel = one_of(CHANNELS)
    breakdown = one_of(BREAKDOWNS)
    window_days = fields.Integer(load_default=120, validate=validate.Range(min=1, max=365))


class DropoffArgsSchema(_ScopeArgs):
    step = one_of(FUNNEL_STEPS, required=True)
    referral_source = one_of(REFERRAL_SOURCES)
    channel = one_of(CHANNELS)
    window_days = fields.Integer(load_default=120, validate=validate.Range(min=1, max=365))


class RetentionArgsSchema(_ScopeArgs):
    weeks = fields.Integer(load_default=12, validate=validate.Range(min=1, max=52))


class PracticeArgsSchema(_ScopeArgs):
    """Dates filter the period the report covers (message or reminder dates)."""


class OutcomeBenchmarkArgsSchema(_ScopeArgs):
    """Dates filter the patients by the day their programme started (`started_on`)."""

    timepoint = one_of(FOLLOW_UPS, load_default="month3")


class FunnelStepSchema(Schema):
    key = fields.String()
    count = fields.Integer()
    in_progress = fields.Integer()
    conversion_from_previous = fields.Float(allow_none=True)
    conversion_from_start = fields.Float(allow_none=True)
    median_hours_from_previous = fields.Float(allow_none=True)


class FunnelGroupSchema(Schema):
    label = fields.String(allow_none=True)
    steps = fields.List(fields.Nested(FunnelStepSchema))


class FunnelSchema(Schema):
    steps = fields.List(fields.Nested(FunnelStepSchema))
    breakdown = fields.Dict(keys=fields.String(), values=fields.Nested(FunnelGroupSchema))
    window_days = fields.Integer()


class DropoffItemSchema(Schema):
    invite_id = fields.String()
    invite_code = fields.String()
    patient_id = fields.String(allow_none=True)
    patient_name = fields.String(allow_none=True)
    referral_source = fields.String()
    channel = fields.String()
    invited_at = fields.String()
    previous_step_at = fields.String()
    days_waiting = fields.Integer()
    window_open = fields.Boolean()
    window_closes_at = fields.String()


class DropoffCountSchema(Schema):
    label = fields.String(allow_none=True)
    total = fields.Integer()
    in_progress = fields.Integer()
    dropped = fields.Integer()


class DropoffSchema(Schema):
    step = fields.String()
    previous_step = fields.String()
    window_days = fields.Integer()
    total = fields.Integer()
    in_progress = fields.Integer()
    dropped = fields.Integer()
    by_practice = fields.Dict(keys=fields.String(), values=fields.Nested(DropoffCountSchema))
    waiting = fields.List(fields.Nested(DropoffItemSchema))


class RetentionWeekSchema(Schema):
    week = fields.Integer()
    eligible = fields.Integer()
    active = fields.Integer()
    share = fields.Float(allow_none=True)


class RetentionCohortSchema(Schema):
    cohort = fields.String(metadata={"description": "Monday of the enrolment week"})
    size = fields.Integer()
    weeks = fields.List(fields.Nested(RetentionWeekSchema))


class RetentionSchema(Schema):
    weeks = fields.Integer()
    cohorts = fields.List(fields.Nested(RetentionCohortSchema))
    total = fields.Nested(RetentionCohortSchema)


class BenchmarkScoreSchema(Schema):
    key = fields.String(metadata={"description": "questionnaire"})
    score = fields.String()
    label = fields.String()
    better = fields.String(metadata={"description": "lower | higher"})
    patients = fields.Integer(allow_none=True, metadata={"description": "null when suppressed"})
    suppressed = fields.Boolean()
    mean_baseline = fields.Float(allow_none=True)
    mean_follow_up = fields.Float(allow_none=True)
    mean_change = fields.Float(allow_none=True, metadata={"description": "follow-up - baseline"})
    mic_absolute = fields.Float(allow_none=True)
    mic_relative_percent = fields.Float(allow_none=True)
    share_mic_absolute = fields.Float(allow_none=True)
    share_mic_relative = fields.Float(allow_none=True)


class BenchmarkPracticeSchema(Schema):
    practice_id = fields.String()
    label = fields.String(allow_none=True)
    patients = fields.Integer(allow_none=True, metadata={"description": "null when suppressed"})
    suppressed = fields.Boolean()
    scores = fields.List(fields.Nested(BenchmarkScoreSchema))


class OutcomeBenchmarkSchema(Schema):
    timepoint = fields.String()
    min_group_size = fields.Integer()
    practices = fields.List(fields.Nested(BenchmarkPracticeSchema))


class OpenCycleWaitSchema(Schema):
    count = fields.Integer()
    median_hours_waiting = fields.Float(allow_none=True)
    longest_hours_waiting = fields.Float(allow_none=True)


class ResponseTimeStatsSchema(Schema):
    replies = fields.Integer()
    median_hours = fields.Float(allow_none=True)
    replied_within_48h = fields.Integer()
    share_within_48h = fields.Float(allow_none=True)
    awaiting_reply = fields.Integer()
    awaiting_over_48h = fields.Integer()
    oldest_awaiting_hours = fields.Float(allow_none=True)
    open_cycles = fields.Integer()
    cycles_waiting_on_therapist = fields.Nested(OpenCycleWaitSchema)
    cycles_waiting_on_patient = fields.Nested(OpenCycleWaitSchema)


class ResponseTimeTherapistSchema(ResponseTimeStatsSchema):
    therapist_id = fields.String()
    label = fields.String(allow_none=True)


class ResponseTimePracticeSchema(ResponseTimeStatsSchema):
    practice_id = fields.String()
    label = fields.String(allow_none=True)
    therapists = fields.List(fields.Nested(ResponseTimeTherapistSchema))


class ResponseTimesSchema(Schema):
    reply_within_hours = fields.Integer()
    all = fields.Nested(ResponseTimeStatsSchema)
    practices = fields.List(fields.Nested(ResponseTimePracticeSchema))


class ReminderCategorySchema(Schema):
    category = fields.String()
    scheduled = fields.Integer()
    sent = fields.Integer()
    opened = fields.Integer()
    acted_on = fields.Integer()
    share_opened = fields.Float(allow_none=True)
    share_acted_on = fields.Float(allow_none=True)


class ReminderEffectSchema(Schema):
    acted_within_hours = fields.Integer()
    categories = fields.List(fields.Nested(ReminderCategorySchema))
