"""Request and response shapes of the programme, lessons, progress, /me/today and /me/events."""

from __future__ import annotations

from marshmallow import ValidationError, fields, validate

from coaching.appointments.schemas import AppointmentSchema, AwareDateTime
from coaching.content.models import PROGRESS_STATUSES
from coaching.schemas import BaseSchema, UTCDateTime, one_of, text

MAX_ANSWERS = 50
LESSON_STATUSES = ("not_started", *PROGRESS_STATUSES)


# --- /me/programme ---------------------------------------------------------------------------


class ProgrammeLessonSchema(BaseSchema):
    id = fields.String()
    slug = fields.String()
    title = fields.String()
    completed = fields.Boolean()
    status = fields.String(metadata={"enum": list(LESSON_STATUSES)})


class ProgrammeModuleSchema(BaseSchema):
    slug = fields.String()
    title = fields.String()
    summary = fields.String()
    position = fields.Integer()
    unlocked = fields.Boolean()
    unlocks_on = fields.Date(
        allow_none=True,
        metadata={
            "description": "When the module opens (or opened); for a module waiting on the "
            "previous one, the earliest date"
        },
    )
    completed = fields.Boolean()
    lessons = fields.List(fields.Nested(ProgrammeLessonSchema))


class ProgrammeSchema(BaseSchema):
    enrollment_id = fields.String()
    status = fields.String(metadata={"enum": ["active", "completed", "paused", "withdrawn"]})
    started_on = fields.Date()
    modules = fields.List(fields.Nested(ProgrammeModuleSchema))


# --- /lessons/{id} -----------------------------------------------------------------------------


class MediaSchema(BaseSchema):
    key = fields.String(metadata={"description": "What the app asks the media store for"})
    type = fields.String(metadata={"enum": ["audio", "video", "image"]})
    duration_s = fields.Integer(allow_none=True)
    title = fields.String()


class BlockSchema(BaseSchema):
    """One block; which fields are present depends on `type`."""

    id = fields.String()
    type = fields.String(
        metadata={"enum": ["text", "audio", "video", "image", "exercise", "reflection"]}
    )
    markdown = fields.String(metadata={"description": "text: the Markdown source"})
    html = fields.String(metadata={"description": "text: the Markdown rendered (no raw HTML)"})
    title = fields.String(metadata={"description": "exercise: its title"})
    duration_s = fields.Integer(metadata={"description": "exercise: suggested duration"})
    intro = fields.String(metadata={"description": "exercise: Markdown before the steps"})
    steps = fields.List(fields.String(), metadata={"description": "exercise: the steps"})
    outro = fields.String(metadata={"description": "exercise: Markdown after the steps"})
    question = fields.String(metadata={"description": "reflection: the question"})
    media = fields.Nested(MediaSchema, metadata={"description": "audio, video, image"})
    caption = fields.String(metadata={"description": "audio, video: shown with the media"})
    alt = fields.String(metadata={"description": "image: describes the image"})


class LessonSchema(BaseSchema):
    id = fields.String()
    slug = fields.String()
    module_slug = fields.String()
    module_title = fields.String()
    title = fields.String()
    locale = fields.String(
        metadata={"description": "The locale served (the patient's, else the other)"}
    )
    version = fields.Integer(metadata={"description": "The content version shown"})
    blocks = fields.List(fields.Nested(BlockSchema))


def _at_most_answers(answers: dict) -> None:
    # A function, not validate.Length: apispec documents that as maxLength, which an object
    # does not have (maxProperties is set in the field's metadata instead).
    if len(answers) > MAX_ANSWERS:
        raise ValidationError(f"At most {MAX_ANSWERS} answers.")


class ProgressUpdateSchema(BaseSchema):
    status = one_of(PROGRESS_STATUSES, required=True)
    answers = fields.Dict(
        keys=fields.String(validate=validate.Length(min=1, max=64)),
        values=fields.Raw(allow_none=True),
        validate=_at_most_answers,
        metadata={
            "description": "By block id: a reflection's text, or an exercise's true (done) or "
            "text; null removes an answer",
            "maxProperties": MAX_ANSWERS,
        },
    )


class ProgressSchema(BaseSchema):
    lesson_id = fields.String()
    status = fields.String(metadata={"enum": list(LESSON_STATUSES)})
    started_at = UTCDateTime(allow_none=True)
    completed_at = UTCDateTime(allow_none=True)
    answers = fields.Dict(keys=fields.String(), values=fields.Raw())


# --- /me/today and /me/events -------------------------------------------------------------------


class NextLessonSchema(BaseSchema):
    id = fields.String()
    title = fields.String()
    module_slug = fields.String()
    status = fields.String(metadata={"enum": list(LESSON_STATUSES)})


class NextUnlockSchema(BaseSchema):
    module_slug = fields.String()
    title = fields.String()
    unlocks_on = fields.Date()
    needs_previous_completed = fields.Boolean()


class TodayQuestionnaireSchema(BaseSchema):
    key = fields.String()
    timepoint = fields.String()
    due_on = fields.Date()
    status = fields.String()


class TodaySchema(BaseSchema):
    next_lesson = fields.Nested(NextLessonSchema, allow_none=True)
    next_unlock = fields.Nested(
        NextUnlockSchema,
        allow_none=True,
        metadata={"description": "The next module still locked, and when it opens"},
    )
    due_questionnaires = fields.List(fields.Nested(TodayQuestionnaireSchema))
    unread_messages = fields.Integer()
    next_appointment = fields.Nested(AppointmentSchema, allow_none=True)


class EventCreateSchema(BaseSchema):
    name = text(40, required=True)
    occurred_at = AwareDateTime(metadata={"description": "Default: now"})


class EventSchema(BaseSchema):
    name = fields.String()
    occurred_at = UTCDateTime()
