"""Request and response shapes of questionnaires, responses, outcomes, check-ins, alerts and the
decision aid. Answers are checked against the questionnaire definition in the service (each
problem named as `answers.<link_id>`); these schemas check only the outer shape."""

from __future__ import annotations

from marshmallow import ValidationError, fields, validate, validates

from coaching.outcomes.definitions import LOCALES
from coaching.outcomes.schedule import STATUSES, TIMEPOINTS
from coaching.schemas import BaseSchema, StrictBoolean, UTCDateTime, one_of, text

MAX_ANSWERS = 40


class LocaleArgsSchema(BaseSchema):
    locale = one_of(LOCALES, metadata={"description": "Defaults to the account's locale"})


class QuestionnaireSummarySchema(BaseSchema):
    key = fields.String()
    title = fields.String()
    version = fields.String()
    licensed_wording = fields.Boolean(
        metadata={"description": "False: copyrighted wording is shown as placeholders"}
    )


class OptionSchema(BaseSchema):
    value = fields.Raw(metadata={"description": "An integer or a string code"})
    label = fields.String()


class ItemSchema(BaseSchema):
    link_id = fields.String()
    text = fields.String()
    type = fields.String(metadata={"enum": ["choice", "integer", "text"]})
    options = fields.List(fields.Nested(OptionSchema))
    min = fields.Integer()
    max = fields.Integer()
    max_length = fields.Integer()
    required = fields.Boolean()
    initial = fields.String(metadata={"description": "PSFS follow-ups: the baseline activity"})
    read_only = fields.Boolean()


class QuestionnaireSchema(BaseSchema):
    key = fields.String()
    title = fields.String()
    version = fields.String()
    description = fields.String()
    copyright = fields.String()
    licensed_wording = fields.Boolean()
    locale = fields.String()
    items = fields.List(fields.Nested(ItemSchema))


class DueQuestionnaireSchema(BaseSchema):
    """A questionnaire the patient can fill in now (also used in /me/today)."""

    key = fields.String()
    timepoint = fields.String(metadata={"enum": list(TIMEPOINTS)})
    due_on = fields.Date()
    status = fields.String(metadata={"enum": ["due", "overdue"]})


class ScheduleEntrySchema(BaseSchema):
    key = fields.String()
    timepoint = fields.String(metadata={"enum": list(TIMEPOINTS)})
    due_on = fields.Date()
    opens_on = fields.Date()
    closes_on = fields.Date(metadata={"description": "The last day a response is accepted"})
    status = fields.String(metadata={"enum": list(STATUSES)})


class ResponseCreateSchema(BaseSchema):
    answers = fields.Dict(
        keys=fields.String(validate=validate.Length(min=1, max=40)),
        values=fields.Raw(allow_none=True),
        required=True,
        metadata={
            "description": "{link_id: value}; null means not answered",
            "maxProperties": MAX_ANSWERS,
        },
    )
    timepoint = one_of(
        TIMEPOINTS, metadata={"description": "Defaults to the open time point of the questionnaire"}
    )

    @validates("answers")
    def _not_too_many(self, value, **_kwargs):
        if len(value) > MAX_ANSWERS:
            raise ValidationError(f"At most {MAX_ANSWERS} answers.")


class ResponseSchema(BaseSchema):
    id = fields.String()
    key = fields.String()
    timepoint = fields.String()
    submitted_at = UTCDateTime()
    scores = fields.Dict(keys=fields.String(), values=fields.Raw())


class MicSchema(BaseSchema):
    absolute = fields.Float(allow_none=True)
    relative_percent = fields.Float(allow_none=True)


class OutcomePointSchema(BaseSchema):
    timepoint = fields.String()
    submitted_at = UTCDateTime()
    value = fields.Raw()
    change = fields.Float(allow_none=True)
    relative_change_percent = fields.Float(allow_none=True)
    mic_absolute_reached = fields.Boolean(allow_none=True)
    mic_relative_reached = fields.Boolean(allow_none=True)


class OutcomeScoreSchema(BaseSchema):
    key = fields.String()
    score = fields.String()
    label = fields.String()
    type = fields.String(metadata={"enum": ["integer", "number", "text"]})
    better = fields.String(allow_none=True)
    mic = fields.Nested(MicSchema, allow_none=True)
    series = fields.List(fields.Nested(OutcomePointSchema))
    baseline = fields.Raw(allow_none=True)
    latest_timepoint = fields.String(allow_none=True)
    latest = fields.Raw(allow_none=True)
    change = fields.Float(allow_none=True)
    relative_change_percent = fields.Float(allow_none=True)
    mic_absolute_reached = fields.Boolean(allow_none=True)
    mic_relative_reached = fields.Boolean(allow_none=True)


class OutcomesSchema(BaseSchema):
    patient_id = fields.String()
    scores = fields.List(fields.Nested(OutcomeScoreSchema))


class CheckInCreateSchema(BaseSchema):
    back_pain = fields.Integer(required=True, strict=True, validate=validate.Range(min=0, max=10))
    did_committed_action = StrictBoolean(
        allow_none=True,
        metadata={"description": "Whether this week's committed action was done; null: none set"},
    )


class CheckInSchema(BaseSchema):
    id = fields.String()
    week = fields.Integer()
    local_date = fields.Date()
    back_pain = fields.Integer()
    did_committed_action = fields.Boolean(allow_none=True)
    submitted_at = UTCDateTime()


class CheckInPointSchema(CheckInSchema):
    change_from_baseline = fields.Float(allow_none=True)


class TrendSchema(BaseSchema):
    checkins = fields.Integer()
    slope_per_week = fields.Float(allow_none=True)
    direction = fields.String(
        allow_none=True, metadata={"enum": ["improving", "stable", "worsening"]}
    )
    recent_mean = fields.Float(allow_none=True)
    committed_action_share = fields.Float(allow_none=True)


class CheckInSummarySchema(BaseSchema):
    patient_id = fields.String()
    baseline_back_pain = fields.Float(allow_none=True)
    checkins = fields.List(fields.Nested(CheckInPointSchema))
    trend = fields.Nested(TrendSchema)


class AlertQueryArgsSchema(BaseSchema):
    status = one_of(("open", "acknowledged", "all"), load_default="open")


class AlertAcknowledgeSchema(BaseSchema):
    note = text(500, allow_none=True)


class AlertSchema(BaseSchema):
    id = fields.String()
    patient_id = fields.String()
    kind = fields.String(metadata={"enum": ["pain", "disability"]})
    score = fields.String()
    source = fields.String(metadata={"enum": ["response", "checkin"]})
    timepoint = fields.String(allow_none=True)
    baseline_value = fields.Float()
    value = fields.Float()
    change = fields.Float()
    created_at = UTCDateTime()
    status = fields.String(metadata={"enum": ["open", "acknowledged"]})
    acknowledged_at = UTCDateTime(allow_none=True)
    acknowledged_by_id = fields.String(allow_none=True)
    note = fields.String(allow_none=True)


class DecisionAidBaselineSchema(BaseSchema):
    odi_percent = fields.Float(allow_none=True)
    band = fields.String(allow_none=True)
    back_pain = fields.Float(allow_none=True)
    risk = fields.String(allow_none=True)
    risk_meaning = fields.String(allow_none=True)


class DecisionAidOutcomeSchema(BaseSchema):
    key = fields.String()
    score = fields.String()
    label = fields.String()
    timepoint = fields.String()
    shown = fields.Boolean()
    patients = fields.Integer(allow_none=True)
    share_mic_absolute = fields.Float(allow_none=True)
    share_mic_relative = fields.Float(allow_none=True)
    median_change = fields.Float(allow_none=True)


class DecisionAidComparisonSchema(BaseSchema):
    risk = fields.String()
    band = fields.String()
    shown = fields.Boolean()
    patients = fields.Integer(allow_none=True)
    outcomes = fields.List(fields.Nested(DecisionAidOutcomeSchema))


class DecisionAidSchema(BaseSchema):
    patient_id = fields.String()
    baseline = fields.Nested(DecisionAidBaselineSchema)
    comparison = fields.Nested(DecisionAidComparisonSchema, allow_none=True)
    min_group_size = fields.Integer()
    note = fields.String()
