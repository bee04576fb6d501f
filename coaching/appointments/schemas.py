"""Request and response shapes of appointments."""

from __future__ import annotations

from datetime import UTC

from marshmallow import ValidationError, fields, validate

from coaching.appointments.models import KINDS
from coaching.appointments.service import MAX_DURATION, MIN_DURATION, SCOPES
from coaching.db import utc_iso
from coaching.schemas import BaseSchema, UTCDateTime, one_of, text

DEFAULT_DURATION = 45


class AwareDateTime(fields.AwareDateTime):
    """An ISO 8601 timestamp with a time zone (naive ones are refused), kept in UTC."""

    def _deserialize(self, value, attr, data, **kwargs):
        result = super()._deserialize(value, attr, data, **kwargs)
        if not 2000 <= result.year <= 2100:
            raise ValidationError("Out of range.")
        return result.astimezone(UTC)

    def _serialize(self, value, attr, obj, **kwargs):
        return utc_iso(value)


class AppointmentCreateSchema(BaseSchema):
    starts_at = AwareDateTime(required=True, metadata={"description": "With a time zone, e.g. Z"})
    duration_minutes = fields.Integer(
        strict=True,
        load_default=DEFAULT_DURATION,
        validate=validate.Range(min=MIN_DURATION, max=MAX_DURATION),
    )
    kind = one_of(KINDS, required=True)
    note = text(1000, metadata={"description": "Seen by the patient too"})


class AppointmentSchema(BaseSchema):
    id = fields.String()
    patient_id = fields.String()
    therapist_id = fields.String()
    starts_at = UTCDateTime()
    ends_at = UTCDateTime()
    duration_minutes = fields.Integer()
    kind = fields.String(metadata={"enum": list(KINDS)})
    note = fields.String(allow_none=True)
    status = fields.String(metadata={"enum": ["planned", "cancelled"]})
    created_at = UTCDateTime()
    cancelled_at = UTCDateTime(allow_none=True)
    cancelled_by = fields.String(allow_none=True)
    cancel_reason = fields.String(allow_none=True)


class AppointmentQueryArgsSchema(BaseSchema):
    scope = one_of(
        SCOPES,
        load_default="all",
        metadata={"description": "all (by time), upcoming (not cancelled) or past"},
    )


class CancelSchema(BaseSchema):
    reason = text(500)
