"""The patient's programme and lessons, progress, /me/today and /me/events."""

from __future__ import annotations

from flask import Response, request
from flask.views import MethodView

from coaching.auth import auth_required, current_account
from coaching.content import schemas, service
from coaching.content.loader import digest_of
from coaching.extensions import Blueprint
from coaching.schemas import ErrorSchema
from coaching.web import transaction

blp = Blueprint("content", __name__, url_prefix="/api/v1", description="Programme and lessons")

# The app may keep a lesson and ask whether it changed; the answer is per patient (private).
LESSON_CACHE_CONTROL = "private, no-cache"
# One instance for the ETag's dump (a schema keeps no state between dumps).
_LESSON_SCHEMA = schemas.LessonSchema()


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    if header.strip() == "*":
        return True
    candidates = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return etag in candidates


@blp.route("/me/programme")
class MyProgramme(MethodView):
    @auth_required("patient")
    @blp.response(200, schemas.ProgrammeSchema)
    @blp.alt_response(403, schema=ErrorSchema, description="Consent missing")
    def get(self):
        """Return your programme: modules, lessons, what is unlocked and when the rest opens"""
        return service.programme_view(current_account())


@blp.route("/lessons/<string:lesson_id>")
class LessonById(MethodView):
    @auth_required("patient")
    @blp.response(
        200,
        schemas.LessonSchema,
        headers={
            "ETag": {"description": "Send it back as If-None-Match", "schema": {"type": "string"}}
        },
    )
    @blp.alt_response(304, description="Not modified (If-None-Match matched)")
    @blp.alt_response(403, schema=ErrorSchema, description="Locked (names the unlock date)")
    @blp.alt_response(404, schema=ErrorSchema)
    def get(self, lesson_id):
        """Return a lesson in your language (or the other one when it is missing)"""
        account = current_account()
        access = service.lesson_access(account, lesson_id)
        view = service.lesson_view(access, account.locale)
        etag = f'"{digest_of(_LESSON_SCHEMA.dump(view))[:40]}"'
        headers = {"ETag": etag, "Cache-Control": LESSON_CACHE_CONTROL}
        if _etag_matches(request.headers.get("If-None-Match"), etag):
            return Response(status=304, headers=headers)
        return view, 200, headers


@blp.route("/lessons/<string:lesson_id>/progress")
class LessonProgress(MethodView):
    @auth_required("patient")
    @blp.response(200, schemas.ProgressSchema)
    @blp.alt_response(403, schema=ErrorSchema, description="Locked")
    @blp.alt_response(404, schema=ErrorSchema)
    def get(self, lesson_id):
        """Return your progress in a lesson, with your answers"""
        return service.get_progress(patient=current_account(), lesson_id=lesson_id)

    @transaction()
    @auth_required("patient")
    @blp.arguments(schemas.ProgressUpdateSchema)
    @blp.response(200, schemas.ProgressSchema)
    @blp.alt_response(403, schema=ErrorSchema, description="Locked")
    @blp.alt_response(404, schema=ErrorSchema)
    @blp.alt_response(422, schema=ErrorSchema, description="Names the field or answers.<block id>")
    def put(self, body, lesson_id):
        """Record that you started or completed a lesson, with answers (idempotent)"""
        return service.save_progress(
            patient=current_account(),
            lesson_id=lesson_id,
            status=body["status"],
            answers=body.get("answers"),
        )


@blp.route("/me/today")
class MyToday(MethodView):
    @auth_required("patient")
    @blp.response(200, schemas.TodaySchema)
    def get(self):
        """Return what is next: a lesson, questionnaires, unread messages, an appointment"""
        return service.today_view(current_account())


@blp.route("/me/events")
class MyEvents(MethodView):
    @transaction(idempotent=True)  # API.md: a POST that creates something takes Idempotency-Key
    @auth_required("patient")
    @blp.arguments(schemas.EventCreateSchema)
    @blp.response(202, schemas.EventSchema)
    @blp.alt_response(422, schema=ErrorSchema, description="Not on the allow-list")
    def post(self, body):
        """Report an app event (app_opened, lesson_audio_played, exercise_started, ...)"""
        return service.record_app_event(
            patient=current_account(), name=body["name"], occurred_at=body.get("occurred_at")
        )
