"""Response shapes and query arguments of the access log."""

from __future__ import annotations

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
        if "from_" in data and "to" in data and data["from_"] > data["to"]:
            raise ValidationError("Must not be after 'to'.", "from")
