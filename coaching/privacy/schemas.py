"""Request and response shapes of the privacy endpoints."""

from __future__ import annotations

from marshmallow import fields

from coaching.privacy.models import EXPORT_STATUSES
from coaching.schemas import BaseSchema, StrictBoolean, UTCDateTime, one_of, text


class ExportSchema(BaseSchema):
    id = fields.String(required=True)
    status = one_of(EXPORT_STATUSES, required=True)
    requested_at = UTCDateTime(required=True)
    completed_at = UTCDateTime(allow_none=True)
    # Until then the ZIP can be downloaded; afterwards it is deleted.
    expires_at = UTCDateTime(allow_none=True)
    size_bytes = fields.Integer(allow_none=True)
    # A short-lived URL to the ZIP (only when ready); ask again for a fresh one.
    download_url = fields.String(allow_none=True)
    download_expires_at = UTCDateTime(allow_none=True)


class EraseMeSchema(BaseSchema):
    password = text(200, required=True, min_length=1)


class ErasureRequestSchema(BaseSchema):
    reason = text(500, required=True)
    # The caregiver decided (WGBO art. 7:455) that the medical record may be destroyed too.
    # It cannot be undone: a JSON true only, not "yes", "on" or 1.
    destroy_medical_record = StrictBoolean(load_default=False)


class ErasureSchema(BaseSchema):
    id = fields.String(required=True)
    patient_id = fields.String(required=True)
    status = one_of(("erased", "closed_retained"), required=True)
    requested_at = UTCDateTime(required=True)
    requested_by_role = fields.String(required=True)
    retained = fields.List(fields.String(), required=True)
    retained_until = UTCDateTime(allow_none=True)
