"""Response shapes and query arguments of the access log."""

from __future__ import annotations

from datetime import UTC, datetime

from marshmallow import ValidationError, fields, validates_schema

from coaching.schemas import BaseSchema, UTCDateTime


class AccessLogEntrySchema(BaseSchema):
    occurred_at = UTCDateTime()
    actor_name = fields.String(allow_none=True)
    actor_role = fields.String()
    action = fields.String()
    resource_type = fields.String()


class AuditEntrySchema(BaseSchema):
    id = fields.String()
    seq = fields.Integer()
    occurred_at = UTCDateTime()
    actor_id = fields.String(allow_none=True)
    actor_role = fields.String()
    patient_id = fields.String()
    action = fields.String()
    resource_type = fields.String()
    resource_id = fields.String(allow_none=True)
    client_address = fields.String(allow_none=True)


class AuditQueryArgsSchema(BaseSchema):
    patient_id = fields.String(validate=lambda v: 0 < len(v) <= 36)
    actor_id = fields.String(validate=lambda v: 0 < len(v) <= 36)
    from_ = fields.DateTime(data_key="from", metadata={"description": "inclusive, ISO 8601"})
    to = fields.DateTime(metadata={"description": "exclusive, ISO 8601"})

    @validates_schema
    def _range(self, data, **kwargs):
        for key in ("from_", "to"):
            if key in data and data[key].tzinfo is None:
                raise ValidationError("Give a time zone (e.g. Z).", key.rstrip("_"))
            if key in data:
                # 9999-12-31T23:59:59-12:00 is a valid time that UTC cannot write (the database
                # stores UTC), nor 0001-01-01T00:00:00+01:00.
                try:
                    data[key].astimezone(UTC)
                except OverflowError:
                    raise ValidationError(
                        f"Must be between {datetime.min.isoformat()}Z and"
                        f" {datetime.max.replace(microsecond=0).isoformat()}Z.",
                        key.rstrip("_"),
                    ) from None
        if "from_" in data and "to" in data and data["from_"] > data["to"]:
            raise ValidationError("Must not be after 'to'.", "from")
