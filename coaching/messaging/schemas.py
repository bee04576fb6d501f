"""Request and response shapes of conversations, messages, uploads and coaching cycles."""

from __future__ import annotations

from marshmallow import ValidationError, fields, validate, validates_schema

from coaching.messaging.models import CYCLE_PHASES, CYCLE_STATUSES, KINDS, VIDEO_TYPES
from coaching.schemas import BaseSchema, StrictBoolean, UTCDateTime, one_of
from coaching.schemas import text as bounded_text

ID_LENGTH = 36


def _no_nul(value: str) -> None:
    # PostgreSQL text cannot hold NUL; no person types one.
    if "\x00" in value:
        raise ValidationError("Must not contain NUL characters")


def text(max_length: int, **kwargs) -> fields.String:
    """Returns a bounded String field that also refuses NUL characters."""
    field = bounded_text(max_length, **kwargs)
    field.validators.append(_no_nul)
    return field


class ConversationSchema(BaseSchema):
    id = fields.String()
    patient_id = fields.String()
    therapist_id = fields.String()
    patient_name = fields.String()
    therapist_name = fields.String()
    unread_count = fields.Integer()
    last_message_at = UTCDateTime(allow_none=True)
    created_at = UTCDateTime()
    video_enabled = fields.Boolean(
        metadata={"description": "False when the patient withdrew video consent"}
    )


class MessageSchema(BaseSchema):
    id = fields.String()
    conversation_id = fields.String()
    sender_role = fields.String(metadata={"description": "patient or therapist"})
    kind = fields.String(metadata={"description": "text or video"})
    body = fields.String(allow_none=True)
    status = fields.String(metadata={"description": "awaiting_upload, processing, ready, failed"})
    failure_code = fields.String(allow_none=True)
    failure_reason = fields.String(
        allow_none=True, metadata={"description": "Why a video failed, in the caller's language"}
    )
    duration_s = fields.Float(allow_none=True)
    content_type = fields.String(allow_none=True)
    size_bytes = fields.Integer(allow_none=True)
    media = fields.String(
        allow_none=True,
        metadata={"description": "stored, expired or deleted (videos; null while uploading)"},
    )
    reply_to = fields.String(allow_none=True)
    cycle_id = fields.String(allow_none=True)
    created_at = UTCDateTime()
    sent_at = UTCDateTime(allow_none=True)
    read_at = UTCDateTime(allow_none=True)
    watched_at = UTCDateTime(allow_none=True)


class UploadSchema(BaseSchema):
    method = fields.String(metadata={"description": "POST (multipart form) or PUT (raw bytes)"})
    url = fields.String()
    # Named `fields` on the wire; a class attribute of that name would hide marshmallow's module.
    form_fields = fields.Dict(
        keys=fields.String(), values=fields.String(), data_key="fields", attribute="fields"
    )
    headers = fields.Dict(keys=fields.String(), values=fields.String())
    expires_at = UTCDateTime()


class MessageCreatedSchema(MessageSchema):
    upload = fields.Nested(UploadSchema, allow_none=True)


class UploadTicketSchema(BaseSchema):
    upload = fields.Nested(UploadSchema)


class MessageCreateSchema(BaseSchema):
    kind = one_of(KINDS, required=True)
    body = text(4000)
    content_type = fields.String(
        validate=[validate.Length(min=1, max=100), _no_nul],
        metadata={"description": f"One of {', '.join(VIDEO_TYPES)} (others: 415)"},
    )
    size_bytes = fields.Integer(
        strict=True,
        validate=validate.Range(min=1),
        metadata={"description": "Exact size of the file; over the limit: 413"},
    )
    reply_to = text(ID_LENGTH, metadata={"description": "Id of the message this answers"})
    cycle_id = text(ID_LENGTH, metadata={"description": "Coaching cycle this message belongs to"})

    @validates_schema
    def _fields_of_kind(self, data, **kwargs):
        if data.get("kind") == "text":
            if not data.get("body"):
                raise ValidationError("A text message needs a body", "body")
            for name in ("content_type", "size_bytes"):
                if name in data:
                    raise ValidationError("Only for video messages", name)
        elif data.get("kind") == "video":
            for name in ("content_type", "size_bytes"):
                if name not in data:
                    raise ValidationError("Required for a video message", name)


class CompleteResultSchema(BaseSchema):
    status = fields.String()
    failure_code = fields.String(allow_none=True)
    failure_reason = fields.String(allow_none=True)


class MessageMediaSchema(BaseSchema):
    video_url = fields.String()
    thumbnail_url = fields.String(allow_none=True)
    expires_at = UTCDateTime()


class CycleSchema(BaseSchema):
    id = fields.String()
    conversation_id = fields.String()
    activity = fields.String()
    request = fields.String(allow_none=True)
    assignment = fields.String(allow_none=True)
    outcome = fields.String(allow_none=True)
    status = fields.String(metadata={"description": ", ".join(CYCLE_STATUSES)})
    phase = fields.String(metadata={"description": ", ".join(CYCLE_PHASES)})
    waiting_on = fields.String(allow_none=True, metadata={"description": "patient or therapist"})
    waiting_since = UTCDateTime(allow_none=True)
    opened_by_role = fields.String()
    created_at = UTCDateTime()
    updated_at = UTCDateTime()
    closed_at = UTCDateTime(allow_none=True)


class CycleCreateSchema(BaseSchema):
    activity = text(200, required=True, metadata={"description": "The activity that matters"})
    request = text(2000, metadata={"description": "The patient's request for help"})
    message_id = text(ID_LENGTH, metadata={"description": "A message holding the request"})


class CycleUpdateSchema(BaseSchema):
    activity = text(200)
    request = text(2000)
    assignment = text(2000, metadata={"description": "Therapist only"})
    outcome = text(1000, metadata={"description": "Therapist only; needed to close"})
    status = one_of(CYCLE_STATUSES, metadata={"description": "Therapist only: closed"})


class CycleQueryArgsSchema(BaseSchema):
    status = one_of(CYCLE_STATUSES)


class VideoConsentSchema(BaseSchema):
    video = fields.Boolean()
    videos_deleted = fields.Integer()


class VideoConsentWithdrawSchema(BaseSchema):
    confirm = StrictBoolean(
        required=True,
        metadata={"description": "Must be true: every stored video is deleted"},
    )
