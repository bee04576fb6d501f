"""Video coaching endpoints: conversations, messages and their uploads, coaching cycles, and the
patient's video consent."""

from __future__ import annotations

from dataclasses import asdict

from flask.views import MethodView

from coaching.auth import auth_required, current_account
from coaching.errors import ValidationFailed
from coaching.extensions import Blueprint
from coaching.media.storage import UploadTicket
from coaching.messaging import schemas, service
from coaching.messaging.models import CoachingCycle, Conversation, Message
from coaching.schemas import ErrorSchema
from coaching.web import paginate_select, transaction

blp = Blueprint(
    "messaging",
    __name__,
    url_prefix="/api/v1",
    description="Video coaching: conversations, messages, uploads, coaching cycles",
)

PARTICIPANTS = ("patient", "therapist")


def _upload_view(ticket: UploadTicket | None) -> dict | None:
    return asdict(ticket) if ticket is not None else None


def _message_view(message: Message, account, ticket: UploadTicket | None = None) -> dict:
    view = {
        "id": message.id,
        "conversation_id": message.conversation_id,
        "sender_role": message.sender_role,
        "kind": message.kind,
        "body": message.body,
        "status": message.status,
        "failure_code": message.failure_reason,
        "failure_reason": service.failure_text(message.failure_reason, account.locale),
        "duration_s": message.duration_s,
        "content_type": message.content_type,
        "size_bytes": message.size_bytes,
        "media": message.media_state,
        "reply_to": message.reply_to_id,
        "cycle_id": message.cycle_id,
        "created_at": message.created_at,
        "sent_at": message.sent_at,
        "read_at": message.read_at,
        "watched_at": message.watched_at,
    }
    if ticket is not None:
        view["upload"] = _upload_view(ticket)
    return view


def _conversation_views(conversations: list[Conversation], account) -> list[dict]:
    unread = service.unread_counts(account, [c.id for c in conversations])
    names = service.names_of(conversations)
    return [
        {
            "id": c.id,
            "patient_id": c.patient_id,
            "therapist_id": c.therapist_id,
            "patient_name": names.get(c.patient_id),
            "therapist_name": names.get(c.therapist_id),
            "unread_count": unread.get(c.id, 0),
            "last_message_at": c.last_message_at,
            "created_at": c.created_at,
            "video_enabled": service.is_video_allowed(c.patient_id),
        }
        for c in conversations
    ]


def _cycle_view(cycle: CoachingCycle) -> dict:
    return {
        "id": cycle.id,
        "conversation_id": cycle.conversation_id,
        "activity": cycle.activity,
        "request": cycle.request,
        "assignment": cycle.assignment,
        "outcome": cycle.outcome,
        "status": cycle.status,
        "phase": cycle.phase,
        "waiting_on": service.waiting_on(cycle),
        "waiting_since": cycle.waiting_since if cycle.status == "open" else None,
        "opened_by_role": cycle.opened_by_role,
        "created_at": cycle.created_at,
        "updated_at": cycle.updated_at,
        "closed_at": cycle.closed_at,
    }


@blp.route("/conversations")
class Conversations(MethodView):
    @transaction()
    @auth_required(*PARTICIPANTS)
    @blp.response(200, schemas.ConversationSchema(many=True))
    @blp.paginate()
    def get(self, pagination_parameters):
        """List the caller's conversations, the most recently active first"""
        account = current_account()
        # Names and unread counts only: no health content, so the list itself is not audited;
        # opening a conversation's messages is.
        page = paginate_select(service.conversations_query(account), pagination_parameters)
        return _conversation_views(page, account)


@blp.route("/conversations/<string:conversation_id>")
class ConversationById(MethodView):
    @auth_required(*PARTICIPANTS)
    @blp.response(200, schemas.ConversationSchema)
    @blp.alt_response(404, schema=ErrorSchema)
    def get(self, conversation_id):
        """Return one of the caller's conversations"""
        account = current_account()
        conversation = service.get_conversation_for(account, conversation_id)
        return _conversation_views([conversation], account)[0]


@blp.route("/conversations/<string:conversation_id>/messages")
class ConversationMessages(MethodView):
    @transaction()
    @auth_required(*PARTICIPANTS)
    @blp.response(200, schemas.MessageSchema(many=True))
    @blp.alt_response(404, schema=ErrorSchema)
    @blp.paginate()
    def get(self, conversation_id, pagination_parameters):
        """List a conversation's messages, newest first"""
        account = current_account()
        conversation = service.get_conversation_for(account, conversation_id)
        service.audit_staff(account, conversation, "read", "conversation", conversation.id)
        stmt = service.messages_query(account, conversation)
        return [_message_view(m, account) for m in paginate_select(stmt, pagination_parameters)]

    @transaction(idempotent=True)
    @auth_required(*PARTICIPANTS)
    @blp.arguments(schemas.MessageCreateSchema)
    @blp.response(201, schemas.MessageCreatedSchema)
    @blp.alt_response(403, schema=ErrorSchema, description="Video consent withdrawn")
    @blp.alt_response(404, schema=ErrorSchema)
    @blp.alt_response(409, schema=ErrorSchema, description="The coaching cycle is closed")
    @blp.alt_response(413, schema=ErrorSchema, description="Video larger than allowed")
    @blp.alt_response(415, schema=ErrorSchema, description="Not an accepted video type")
    def post(self, body, conversation_id):
        """Send a text message, or start a video message and get its upload URL"""
        account = current_account()
        conversation = service.get_conversation_for(account, conversation_id)
        message, ticket = service.post_message(account=account, conversation=conversation, **body)
        return _message_view(message, account, ticket)


@blp.route("/messages/<string:message_id>")
class MessageById(MethodView):
    @transaction()
    @auth_required(*PARTICIPANTS)
    @blp.response(200, schemas.MessageSchema)
    @blp.alt_response(404, schema=ErrorSchema)
    def get(self, message_id):
        """Return one message (e.g. to follow a video's status)"""
        account = current_account()
        message, conversation = service.get_message_for(account, message_id)
        service.audit_staff(account, conversation, "read", "message", message.id)
        return _message_view(message, account)


@blp.route("/messages/<string:message_id>/upload")
class MessageUpload(MethodView):
    @auth_required(*PARTICIPANTS)
    @blp.response(200, schemas.UploadTicketSchema)
    @blp.alt_response(403, schema=ErrorSchema, description="Not the sender")
    @blp.alt_response(404, schema=ErrorSchema)
    @blp.alt_response(409, schema=ErrorSchema, description="Not waiting for an upload")
    def post(self, message_id):
        """Get a fresh upload URL for a video still waiting for its bytes"""
        account = current_account()
        message, _ = service.get_message_for(account, message_id)
        return {"upload": _upload_view(service.renew_upload(account=account, message=message))}


@blp.route("/messages/<string:message_id>/complete")
class MessageComplete(MethodView):
    @transaction()
    @auth_required(*PARTICIPANTS)
    @blp.response(200, schemas.CompleteResultSchema)
    @blp.alt_response(403, schema=ErrorSchema, description="Not the sender")
    @blp.alt_response(404, schema=ErrorSchema)
    @blp.alt_response(409, schema=ErrorSchema, description="The upload has not arrived")
    def post(self, message_id):
        """Say the upload is done: the video is checked and then sent"""
        account = current_account()
        message, _ = service.get_message_for(account, message_id)
        message = service.complete_upload(account=account, message=message)
        return {
            "status": message.status,
            "failure_code": message.failure_reason,
            "failure_reason": service.failure_text(message.failure_reason, account.locale),
        }


@blp.route("/messages/<string:message_id>/media")
class MessageMedia(MethodView):
    @transaction()
    @auth_required(*PARTICIPANTS)
    @blp.response(200, schemas.MessageMediaSchema)
    @blp.alt_response(404, schema=ErrorSchema)
    @blp.alt_response(409, schema=ErrorSchema, description="Not ready, expired or deleted")
    def get(self, message_id):
        """Return short-lived URLs to play a video and show its thumbnail"""
        account = current_account()
        message, conversation = service.get_message_for(account, message_id)
        return service.media_urls(account=account, message=message, conversation=conversation)


@blp.route("/messages/<string:message_id>/read")
class MessageRead(MethodView):
    @transaction()
    @auth_required(*PARTICIPANTS)
    @blp.response(204)
    @blp.alt_response(403, schema=ErrorSchema, description="Not the receiver")
    @blp.alt_response(404, schema=ErrorSchema)
    def post(self, message_id):
        """Mark a message read (receiver)"""
        account = current_account()
        message, conversation = service.get_message_for(account, message_id)
        service.mark_read(account=account, message=message)
        service.audit_staff(account, conversation, "update", "message", message.id)


@blp.route("/messages/<string:message_id>/watched")
class MessageWatched(MethodView):
    @transaction()
    @auth_required(*PARTICIPANTS)
    @blp.response(204)
    @blp.alt_response(403, schema=ErrorSchema, description="Not the receiver")
    @blp.alt_response(404, schema=ErrorSchema)
    @blp.alt_response(409, schema=ErrorSchema, description="Not a video")
    def post(self, message_id):
        """Mark a video watched (receiver); it counts as read too"""
        account = current_account()
        message, conversation = service.get_message_for(account, message_id)
        service.mark_watched(account=account, message=message)
        service.audit_staff(account, conversation, "update", "message", message.id)


@blp.route("/conversations/<string:conversation_id>/cycles")
class ConversationCycles(MethodView):
    @transaction()
    @auth_required(*PARTICIPANTS)
    @blp.arguments(schemas.CycleQueryArgsSchema, location="query")
    @blp.response(200, schemas.CycleSchema(many=True))
    @blp.alt_response(404, schema=ErrorSchema)
    @blp.paginate()
    def get(self, args, conversation_id, pagination_parameters):
        """List a conversation's coaching cycles, newest first"""
        account = current_account()
        conversation = service.get_conversation_for(account, conversation_id)
        service.audit_staff(account, conversation, "read", "coaching_cycle", conversation.id)
        stmt = service.cycles_query(conversation, args.get("status"))
        return [_cycle_view(c) for c in paginate_select(stmt, pagination_parameters)]

    @transaction(idempotent=True)
    @auth_required(*PARTICIPANTS)
    @blp.arguments(schemas.CycleCreateSchema)
    @blp.response(201, schemas.CycleSchema)
    @blp.alt_response(404, schema=ErrorSchema)
    def post(self, body, conversation_id):
        """Open a coaching cycle with a request for help about an activity"""
        account = current_account()
        conversation = service.get_conversation_for(account, conversation_id)
        return _cycle_view(service.open_cycle(account=account, conversation=conversation, **body))


@blp.route("/cycles/<string:cycle_id>")
class CycleById(MethodView):
    @transaction()
    @auth_required(*PARTICIPANTS)
    @blp.response(200, schemas.CycleSchema)
    @blp.alt_response(404, schema=ErrorSchema)
    def get(self, cycle_id):
        """Return one coaching cycle"""
        account = current_account()
        cycle, conversation = service.get_cycle_for(account, cycle_id)
        service.audit_staff(account, conversation, "read", "coaching_cycle", cycle.id)
        return _cycle_view(cycle)

    @transaction()
    @auth_required(*PARTICIPANTS)
    @blp.arguments(schemas.CycleUpdateSchema)
    @blp.response(200, schemas.CycleSchema)
    @blp.alt_response(403, schema=ErrorSchema, description="Only the therapist sets that")
    @blp.alt_response(404, schema=ErrorSchema)
    @blp.alt_response(409, schema=ErrorSchema, description="The cycle is closed")
    def patch(self, body, cycle_id):
        """Change a coaching cycle; the therapist sets the assignment and closes it"""
        account = current_account()
        cycle, conversation = service.get_cycle_for(account, cycle_id)
        return _cycle_view(
            service.update_cycle(
                account=account, cycle=cycle, conversation=conversation, changes=body
            )
        )


@blp.route("/me/consent/video")
class MyVideoConsent(MethodView):
    @auth_required("patient", consent=False)
    @blp.response(200, schemas.VideoConsentSchema)
    def get(self):
        """Say whether the patient's consent covers video coaching"""
        return {"video": service.is_video_allowed(current_account().id)}

    @transaction()
    @auth_required("patient", consent=False)
    @blp.arguments(schemas.VideoConsentWithdrawSchema)
    @blp.response(200, schemas.VideoConsentSchema)
    @blp.alt_response(422, schema=ErrorSchema, description="confirm must be true")
    def delete(self, body):
        """Withdraw video consent: no more videos, and every stored video is deleted"""
        if body["confirm"] is not True:
            raise ValidationFailed.field(
                "confirm", "Confirm with true: all stored videos will be deleted"
            )
        deleted = service.withdraw_video_consent(patient=current_account())
        return {"video": False, "videos_deleted": deleted}
