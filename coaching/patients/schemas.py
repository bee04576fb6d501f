"""Response shapes of the therapist's work list and patient detail.

Other domains add fields per patient (see `coaching.patients.service`); the ones known here are
documented, and any other field a domain adds is passed on as JSON.
"""

from __future__ import annotations

from datetime import date, datetime

from marshmallow import INCLUDE, fields, post_dump

from coaching.appointments.schemas import AppointmentSchema
from coaching.db import utc_iso
from coaching.enrolment.models import ENROLLMENT_STATUSES
from coaching.patients.service import SORTS
from coaching.schemas import BaseSchema, UTCDateTime, one_of


def jsonable(value):
    """Returns a value with dates and times as the contract writes them."""
    if isinstance(value, datetime):
        return utc_iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


class WorklistArgsSchema(BaseSchema):
    status = one_of(ENROLLMENT_STATUSES)
    sort = one_of(
        SORTS,
        load_default="name",
        metadata={
            "description": "name; attention (waiting longest for a reply, open alerts, unread "
            "messages first); last_active (most recent first)"
        },
    )


class ModuleSummarySchema(BaseSchema):
    slug = fields.String()
    title = fields.String()
    position = fields.Integer()
    unlocked = fields.Boolean()
    unlocks_on = fields.Date(allow_none=True)
    lessons_completed = fields.Integer()
    lessons_total = fields.Integer()


class ProgressSummarySchema(BaseSchema):
    modules_completed = fields.Integer()
    modules_total = fields.Integer()
    lessons_completed = fields.Integer()
    lessons_total = fields.Integer()


class OpenCycleSchema(BaseSchema):
    id = fields.String()
    activity = fields.String(allow_none=True)
    phase = fields.String(allow_none=True)
    waiting_on = fields.String(allow_none=True)
    waiting_since = UTCDateTime(allow_none=True)


class _WithExtras(BaseSchema):
    """Passes on fields other domains add (so the documented shape allows more properties)."""

    class Meta(BaseSchema.Meta):
        unknown = INCLUDE

    @post_dump(pass_original=True)
    def _pass_extras(self, data, original, **kwargs):
        for key, value in original.items():
            if key not in self.fields and not key.startswith("_"):
                data[key] = jsonable(value)
        return data


class WorklistItemSchema(_WithExtras):
    id = fields.String()
    display_name = fields.String()
    enrolled_on = fields.Date()
    status = fields.String(metadata={"enum": list(ENROLLMENT_STATUSES)})
    last_active_at = UTCDateTime(allow_none=True)
    current_module = fields.Nested(
        ModuleSummarySchema,
        allow_none=True,
        metadata={"description": "The first module not completed (null when all are)"},
    )
    progress = fields.Nested(ProgressSummarySchema)
    unread_messages = fields.Integer()
    awaiting_reply_since = UTCDateTime(allow_none=True)
    next_appointment = fields.Nested(AppointmentSchema, allow_none=True)
    open_alerts = fields.Integer(metadata={"description": "From outcomes, when present"})
    risk = fields.String(allow_none=True, metadata={"description": "STarT Back group"})
    risk_meaning = fields.String(
        allow_none=True, metadata={"description": "The group's stepped-care meaning"}
    )
    open_cycles = fields.List(
        fields.Nested(OpenCycleSchema), metadata={"description": "From messaging, when present"}
    )


class LessonProgressSchema(BaseSchema):
    id = fields.String()
    slug = fields.String()
    title = fields.String()
    status = fields.String(metadata={"enum": ["not_started", "started", "completed"]})
    started_at = UTCDateTime(allow_none=True)
    completed_at = UTCDateTime(allow_none=True)


class ModuleProgressSchema(ModuleSummarySchema):
    completed = fields.Boolean()
    completed_at = UTCDateTime(allow_none=True)
    lessons = fields.List(fields.Nested(LessonProgressSchema))


class ReflectionSchema(BaseSchema):
    lesson_id = fields.String()
    lesson_title = fields.String()
    module_slug = fields.String()
    block_id = fields.String()
    block_type = fields.String(metadata={"enum": ["reflection", "exercise"]})
    question = fields.String(metadata={"description": "As the patient saw it"})
    answer = fields.String()
    answered_at = UTCDateTime()
    updated_at = UTCDateTime()


class PatientDetailSchema(WorklistItemSchema):
    email = fields.String()
    locale = fields.String()
    timezone = fields.String()
    completed_at = UTCDateTime(allow_none=True)
    modules = fields.List(fields.Nested(ModuleProgressSchema))
    reflections = fields.List(fields.Nested(ReflectionSchema))
    upcoming_appointments = fields.List(fields.Nested(AppointmentSchema))
