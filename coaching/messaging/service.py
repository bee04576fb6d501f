"""Video coaching: conversations, text and video messages, coaching cycles, video consent, and
the jobs that check uploaded videos and let stored ones go.

A video message moves `awaiting_upload` → `processing` → `ready` | `failed`. The app uploads the
bytes straight to the store (a presigned POST on S3, a signed URL of the service locally), then
calls `complete`, which checks that the object exists with the declared size. The real check
(PyAV: a video stream, the duration, a thumbnail) runs in the scheduler (`process_pending_videos`).

Visibility: each side sees all of its own messages; the other side's only once they were sent
(`sent_at`: at once for text, when ready for video). Another patient's conversation, message or
cycle is always NotFound.
"""

from __future__ import annotations

import logging
import re
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

from flask import current_app
from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from coaching import clock
from coaching.accounts.models import Account
from coaching.audit import service as audit
from coaching.enrolment import service as enrolment
from coaching.enrolment.models import ConsentAcceptance, Enrollment
from coaching.errors import (
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
)
from coaching.extensions import db
from coaching.media import service as media
from coaching.media.storage import UploadTicket, get_storage, new_key
from coaching.media.video import VideoRejected, inspect_video
from coaching.messaging.models import VIDEO_TYPES, CoachingCycle, Conversation, Message
from coaching.metrics import service as metrics
from coaching.notifications import service as notifications

log = logging.getLogger(__name__)

PARTICIPANT_ROLES = ("patient", "therapist")
OTHER_ROLE = {"patient": "therapist", "therapist": "patient"}
WAITING_ON = {"requested": "therapist", "attempted": "therapist", "answered": "patient"}
# A scheduler process holds a video it checks this long; after a crash another one takes over.
PROCESSING_LEASE = timedelta(minutes=10)
MAX_PROCESSING_ATTEMPTS = 3
# Ids are UUIDs; anything else cannot name a row (and must not reach the database as is).
ID_PATTERN = re.compile(r"^[0-9a-fA-F-]{1,36}$")

# Why a video failed, as the sender's app shows it (in the sender's language).
FAILURE_REASONS = {
    "size_mismatch": {
        "en": "The uploaded file is not the size announced for it. Please send it again.",
        "nl": "Het geüploade bestand is niet zo groot als aangekondigd. Stuur het opnieuw.",
    },
    "upload_expired": {
        "en": "The upload was never finished. Please send the video again.",
        "nl": "Het uploaden is nooit afgerond. Stuur de video opnieuw.",
    },
    "not_a_video": {
        "en": "This file is not a video that can be played.",
        "nl": "Dit bestand is geen video die kan worden afgespeeld.",
    },
    "truncated": {
        "en": "The video is incomplete, probably cut off while sending. Please send it again.",
        "nl": "De video is onvolledig, waarschijnlijk afgebroken bij het versturen. "
        "Stuur hem opnieuw.",
    },
    "no_video_stream": {
        "en": "The file has sound but no picture.",
        "nl": "Het bestand heeft wel geluid maar geen beeld.",
    },
    "too_long": {
        "en": "The video is longer than {minutes} minutes. Please record a shorter one.",
        "nl": "De video duurt langer dan {minutes} minuten. Neem een kortere op.",
    },
    "wrong_type": {
        "en": "The file is not the kind of video it was announced as.",
        "nl": "Het bestand is niet het soort video dat werd aangekondigd.",
    },
    "consent_withdrawn": {
        "en": "Video coaching was switched off, so the video was deleted.",
        "nl": "Videocoaching is uitgezet, daarom is de video verwijderd.",
    },
    "deleted": {
        "en": "The video was deleted.",
        "nl": "De video is verwijderd.",
    },
    "processing_error": {
        "en": "The video could not be processed. Please send it again.",
        "nl": "De video kon niet worden verwerkt. Stuur hem opnieuw.",
    },
}

NOTIFICATION_TEXT = {
    "patient": {
        "title": {
            "nl": "Nieuw bericht van je fysiotherapeut",
            "en": "New message from your physio",
        },
        "body": {"nl": "Open de app om het te bekijken.", "en": "Open the app to see it."},
    },
    "therapist": {
        "title": {"nl": "Nieuw bericht van een patiënt", "en": "New message from a patient"},
        "body": {"nl": "Open de app om het te bekijken.", "en": "Open the app to see it."},
    },
}


def _config(name: str):
    return current_app.config[name]


def failure_text(code: str | None, locale: str) -> str | None:
    """Returns the reason of a failed video in a locale (Dutch or English), or None."""
    if code is None:
        return None
    texts = FAILURE_REASONS.get(code, FAILURE_REASONS["processing_error"])
    text = texts.get(locale, texts["nl"])
    return text.format(minutes=max(1, round(_config("MAX_VIDEO_SECONDS") / 60)))


# --- conversations ------------------------------------------------------------------------


def ensure_conversation(*, patient_id: str, therapist_id: str) -> Conversation:
    """Returns the conversation of a patient and therapist, opening it if it does not exist."""
    stmt = select(Conversation).where(
        Conversation.patient_id == patient_id, Conversation.therapist_id == therapist_id
    )
    conversation = db.session.execute(stmt).scalar_one_or_none()
    if conversation is not None:
        return conversation
    try:
        # A savepoint: two first requests racing to open it must not fail the outer work.
        with db.session.begin_nested():
            conversation = Conversation(
                patient_id=patient_id, therapist_id=therapist_id, created_at=clock.now()
            )
            db.session.add(conversation)
    except IntegrityError:
        conversation = db.session.execute(stmt).scalar_one()
    return conversation


def _open_conversation_on_registration(*, patient, enrollment) -> None:
    ensure_conversation(patient_id=patient.id, therapist_id=enrollment.therapist_id)


def _is_awaiting_upload(key: str) -> bool:
    """Returns whether a video message still waits for the bytes of this key."""
    return (
        db.session.execute(
            select(Message.id).where(
                Message.media_key == key,
                Message.status == "awaiting_upload",
                Message.upload_expires_at > clock.now(),
            )
        ).first()
        is not None
    )


def _register_hooks() -> None:
    for hooks, hook in (
        (enrolment.REGISTRATION_HOOKS, _open_conversation_on_registration),
        (media.UPLOAD_CHECKS, _is_awaiting_upload),
    ):
        # Once per function, even if this module is imported again.
        name = hook.__qualname__
        if not any(
            getattr(h, "__module__", None) == __name__ and getattr(h, "__qualname__", None) == name
            for h in hooks
        ):
            hooks.append(hook)


_register_hooks()


def _ensure_for(account: Account) -> None:
    """Open conversations that patients registered before this domain existed still lack.

    Not for a closed account (erased, its medical record kept): erasure deleted its
    conversation, and a new one would list the patient again and take messages for nobody.
    """
    if account.role == "patient":
        if account.therapist_id is not None:
            ensure_conversation(patient_id=account.id, therapist_id=account.therapist_id)
        return
    missing = db.session.execute(
        select(Account.id).where(
            Account.role == "patient",
            Account.therapist_id == account.id,
            Account.is_active.is_(True),
            ~exists().where(
                Conversation.patient_id == Account.id, Conversation.therapist_id == account.id
            ),
        )
    ).scalars()
    for patient_id in list(missing):
        ensure_conversation(patient_id=patient_id, therapist_id=account.id)


def _participant_clause(account: Account):
    if account.role == "patient":
        return Conversation.patient_id == account.id
    if account.role == "therapist":
        return Conversation.therapist_id == account.id
    raise Forbidden("Only patients and therapists take part in conversations")


def conversations_query(account: Account):
    """Returns a select() of the caller's conversations, the most recently active first."""
    _ensure_for(account)
    return (
        select(Conversation)
        .where(_participant_clause(account))
        .order_by(
            Conversation.last_message_at.is_(None),
            Conversation.last_message_at.desc(),
            Conversation.created_at.desc(),
            Conversation.id,
        )
    )


def get_conversation_for(account: Account, conversation_id: str) -> Conversation:
    """Returns a conversation the caller takes part in, or raises NotFound."""
    if not ID_PATTERN.match(conversation_id):
        raise NotFound("Conversation not found")
    conversation = db.session.execute(
        select(Conversation).where(Conversation.id == conversation_id, _participant_clause(account))
    ).scalar_one_or_none()
    if conversation is None:
        raise NotFound("Conversation not found")
    return conversation


def unread_counts(account: Account, conversation_ids: list[str]) -> dict[str, int]:
    """Returns per conversation how many messages from the other side the caller has not read."""
    if not conversation_ids or account.role not in PARTICIPANT_ROLES:
        return {}
    rows = db.session.execute(
        select(Message.conversation_id, func.count(Message.id))
        .where(
            Message.conversation_id.in_(conversation_ids),
            Message.sender_role == OTHER_ROLE[account.role],
            Message.sent_at.is_not(None),
            Message.read_at.is_(None),
        )
        .group_by(Message.conversation_id)
    ).all()
    return dict(rows)


def unread_count(account) -> int:
    """Returns how many messages from the other side the account has not read (all
    conversations); 0 for accounts that take part in none."""
    if account.role not in PARTICIPANT_ROLES:
        return 0
    return db.session.execute(
        select(func.count(Message.id))
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(
            _participant_clause(account),
            Message.sender_role == OTHER_ROLE[account.role],
            Message.sent_at.is_not(None),
            Message.read_at.is_(None),
        )
    ).scalar_one()


def names_of(conversations: list[Conversation]) -> dict[str, str]:
    """Returns display names of everyone taking part in these conversations, by account id."""
    ids = {c.patient_id for c in conversations} | {c.therapist_id for c in conversations}
    if not ids:
        return {}
    return dict(
        db.session.execute(
            select(Account.id, Account.display_name).where(Account.id.in_(ids))
        ).all()
    )


def is_video_allowed(patient_id: str) -> bool:
    """Returns whether the patient's current consent covers video coaching."""
    acceptance = enrolment.current_acceptance(patient_id)
    return acceptance is not None and acceptance.is_video_accepted


def audit_staff(account: Account, conversation: Conversation, action: str, kind: str, rid: str):
    """Record a therapist's read or change of a patient's coaching data (no-op for patients)."""
    if account.role != "patient":
        audit.record(
            actor=account,
            patient_id=conversation.patient_id,
            action=action,
            resource_type=kind,
            resource_id=rid,
        )


# --- messages -----------------------------------------------------------------------------


def _visible_clause(account: Account):
    return or_(Message.sender_role == account.role, Message.sent_at.is_not(None))


def messages_query(account: Account, conversation: Conversation):
    """Returns a select() of the messages the caller may see in a conversation, newest first."""
    return (
        select(Message)
        .where(Message.conversation_id == conversation.id, _visible_clause(account))
        .order_by(Message.created_at.desc(), Message.id.desc())
    )


def get_message_for(account: Account, message_id: str) -> tuple[Message, Conversation]:
    """Returns a message the caller may see, with its conversation, or raises NotFound."""
    if not ID_PATTERN.match(message_id):
        raise NotFound("Message not found")
    row = db.session.execute(
        select(Message, Conversation)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(Message.id == message_id, _participant_clause(account), _visible_clause(account))
    ).first()
    if row is None:
        raise NotFound("Message not found")
    return row[0], row[1]


def _message_in(conversation: Conversation, account: Account, message_id: str, field: str):
    if not ID_PATTERN.match(message_id):
        raise ValidationFailed.field(field, "No such message in this conversation")
    message = db.session.execute(
        select(Message).where(
            Message.id == message_id,
            Message.conversation_id == conversation.id,
            _visible_clause(account),
        )
    ).scalar_one_or_none()
    if message is None:
        raise ValidationFailed.field(field, "No such message in this conversation")
    return message


def _cycle_in(conversation: Conversation, cycle_id: str) -> CoachingCycle:
    if not ID_PATTERN.match(cycle_id):
        raise ValidationFailed.field("cycle_id", "No such coaching cycle in this conversation")
    cycle = db.session.execute(
        select(CoachingCycle).where(
            CoachingCycle.id == cycle_id, CoachingCycle.conversation_id == conversation.id
        )
    ).scalar_one_or_none()
    if cycle is None:
        raise ValidationFailed.field("cycle_id", "No such coaching cycle in this conversation")
    return cycle


def post_message(
    *,
    account: Account,
    conversation: Conversation,
    kind: str,
    body: str | None = None,
    content_type: str | None = None,
    size_bytes: int | None = None,
    reply_to: str | None = None,
    cycle_id: str | None = None,
) -> tuple[Message, UploadTicket | None]:
    """Returns a new message and, for a video, how to upload its bytes."""
    patient = db.session.get(Account, conversation.patient_id)
    if patient is None or not patient.is_active:
        # A closed account (erased, its conversation kept as part of the medical record): nobody
        # can sign in to read the message, and its notification would go to nobody.
        raise NotFound("Conversation not found")
    now = clock.now()
    if kind == "video":
        if content_type not in VIDEO_TYPES:
            raise UnsupportedMediaType(f"Videos must be one of {', '.join(VIDEO_TYPES)}")
        limit = _config("MAX_VIDEO_BYTES")
        if size_bytes > limit:
            raise PayloadTooLarge(f"A video may be at most {limit} bytes")
        if not is_video_allowed(conversation.patient_id):
            raise Forbidden("Video coaching is switched off: the patient withdrew video consent")
    parent = _message_in(conversation, account, reply_to, "reply_to") if reply_to else None
    cycle = _cycle_in(conversation, cycle_id) if cycle_id else None
    if cycle is None and parent is not None and parent.cycle_id is not None:
        inherited = db.session.get(CoachingCycle, parent.cycle_id)
        cycle = inherited if inherited is not None and inherited.status == "open" else None
    if cycle is not None and cycle.status != "open":
        raise Conflict("This coaching cycle is closed")
    message = Message(
        conversation_id=conversation.id,
        sender_id=account.id,
        sender_role=account.role,
        kind=kind,
        body=body,
        reply_to_id=parent.id if parent else None,
        cycle_id=cycle.id if cycle else None,
        created_at=now,
        processing_attempts=0,
    )
    ticket = None
    if kind == "video":
        message.status = "awaiting_upload"
        message.content_type = content_type
        message.size_bytes = size_bytes
        message.media_key = new_key()
        message.upload_expires_at = now + timedelta(hours=_config("UPLOAD_EXPIRY_HOURS"))
        ticket = get_storage().upload_ticket(
            key=message.media_key, content_type=content_type, size=size_bytes
        )
    else:
        message.status = "ready"
    db.session.add(message)
    db.session.flush()
    if kind == "text":
        _on_sent(message, conversation, now)
    if account.role == "patient":
        metrics.record_activity(patient_id=account.id, kind="message_sent", occurred_at=now)
    audit_staff(account, conversation, "create", "message", message.id)
    db.session.flush()
    return message, ticket


def _require_sender(account: Account, message: Message) -> None:
    if message.sender_role != account.role:
        raise Forbidden("Only the sender can do this")


def renew_upload(*, account: Account, message: Message) -> UploadTicket:
    """Returns a fresh upload URL for a video still awaiting its upload (flaky networks)."""
    _require_sender(account, message)
    if message.kind != "video" or message.status != "awaiting_upload":
        raise Conflict("This message is not waiting for an upload")
    if message.upload_expires_at <= clock.now():
        raise Conflict("The time to upload this video has passed; send a new message")
    return get_storage().upload_ticket(
        key=message.media_key, content_type=message.content_type, size=message.size_bytes
    )


def complete_upload(*, account: Account, message: Message) -> Message:
    """Returns the message after its sender said the upload is done.

    The object must exist with the declared size; then the message waits for the video check.
    Completing again, or completing a message that is past this step, changes nothing.
    """
    _require_sender(account, message)
    if message.kind != "video" or message.status != "awaiting_upload":
        return message
    now = clock.now()
    if message.upload_expires_at <= now:
        _fail(message, "upload_expired")
        return message
    size = get_storage().size_of(message.media_key)
    if size is None:
        raise Conflict("The upload has not arrived yet: upload the file first, then complete")
    if size != message.size_bytes:
        _fail(message, "size_mismatch")
        return message
    message.status = "processing"
    message.completed_at = now
    db.session.flush()
    return message


def _fail(message: Message, code: str) -> None:
    message.status = "failed"
    message.failure_reason = code
    message.processing_lease_until = None
    _let_media_go(message, "deleted", reason=code)
    db.session.flush()


def _let_media_go(message: Message, state: str, *, reason: str) -> bool:
    """Schedule deletion of a message's stored objects; returns whether any were still held."""
    if message.media_key is None or message.media_state in ("expired", "deleted"):
        return False
    media.schedule_deletion(key=message.media_key, reason=reason)
    media.schedule_deletion(key=message.thumbnail_key, reason=reason)
    message.media_state = state
    return True


def _on_sent(message: Message, conversation: Conversation, now: datetime) -> None:
    """The message became visible to the receiver: notify, move the cycle, count uptake."""
    message.sent_at = now
    conversation.last_message_at = now
    if message.cycle_id is not None:
        _advance_cycle(db.session.get(CoachingCycle, message.cycle_id), message, now)
    db.session.flush()
    _notify_receiver(message, conversation, now)
    earlier_video_from_other_side = db.session.execute(
        select(Message.id)
        .where(
            Message.conversation_id == conversation.id,
            Message.sender_role == OTHER_ROLE[message.sender_role],
            Message.kind == "video",
            Message.sent_at.is_not(None),
            Message.sent_at <= now,
        )
        .limit(1)
    ).first()
    if earlier_video_from_other_side is not None:
        metrics.record_patient_event(
            patient_id=conversation.patient_id, name="first_video_exchanged", occurred_at=now
        )


def _notify_receiver(message: Message, conversation: Conversation, now: datetime) -> None:
    receiver_role = OTHER_ROLE[message.sender_role]
    receiver_id = (
        conversation.patient_id if receiver_role == "patient" else conversation.therapist_id
    )
    # Several messages in a row make one notification: a burst is what the sender sent since
    # the receiver last answered or read something here, and the key names its first message.
    last_answer = (
        select(func.max(Message.sent_at))
        .where(Message.conversation_id == conversation.id, Message.sender_role == receiver_role)
        .scalar_subquery()
    )
    last_read = (
        select(func.max(Message.read_at))
        .where(
            Message.conversation_id == conversation.id,
            Message.sender_role == message.sender_role,
        )
        .scalar_subquery()
    )
    first_of_burst = db.session.execute(
        select(Message.id)
        .where(
            Message.conversation_id == conversation.id,
            Message.sender_role == message.sender_role,
            Message.sent_at.is_not(None),
            or_(last_answer.is_(None), Message.sent_at > last_answer),
            or_(last_read.is_(None), Message.sent_at > last_read),
        )
        .order_by(Message.sent_at, Message.created_at, Message.id)
        .limit(1)
    ).scalar_one_or_none()
    text = NOTIFICATION_TEXT[receiver_role]
    notifications.enqueue(
        recipient_id=receiver_id,
        category="message",
        key=f"message:{conversation.id}:{receiver_id}:{first_of_burst or message.id}",
        title=text["title"],
        body=text["body"],
        data={"link": f"/conversations/{conversation.id}", "conversation_id": conversation.id},
        scheduled_for=now,
    )


def mark_read(*, account: Account, message: Message) -> None:
    """Record that the receiver has read a message (again: no change)."""
    if message.sender_role == account.role:
        raise Forbidden("Only the receiver marks a message read")
    now = clock.now()
    if _set_once(message, "read_at", now) and account.role == "patient":
        metrics.record_activity(patient_id=account.id, kind="message_read", occurred_at=now)
    db.session.flush()


def _set_once(message: Message, name: str, now: datetime) -> bool:
    """Set a message's `read_at` or `watched_at` unless it is set; returns whether this did.

    A compare-and-set in the database, not on the row as loaded: two devices reading the same
    message at once both loaded it unread, and both would record the patient's activity.
    """
    column = getattr(Message, name)
    changed = db.session.execute(
        update(Message)
        .where(Message.id == message.id, column.is_(None))
        .values({name: now})
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.refresh(message, [name])
    return changed == 1


def mark_watched(*, account: Account, message: Message) -> None:
    """Record that the receiver has played a video (which also reads it)."""
    if message.sender_role == account.role:
        raise Forbidden("Only the receiver marks a video watched")
    if message.kind != "video":
        raise Conflict("Only a video can be watched")
    now = clock.now()
    if _set_once(message, "watched_at", now) and account.role == "patient":
        metrics.record_activity(patient_id=account.id, kind="video_watched", occurred_at=now)
    _set_once(message, "read_at", now)
    db.session.flush()


def media_urls(*, account: Account, message: Message, conversation: Conversation) -> dict:
    """Returns short-lived URLs to play a ready video and see its thumbnail (staff: audited)."""
    if message.kind != "video":
        raise Conflict("This message has no video")
    if message.media_state in ("expired", "deleted"):
        raise Conflict(f"This video is no longer available ({message.media_state})")
    if message.status != "ready":
        raise Conflict("This video is not ready yet")
    storage = get_storage()
    video_url, expires_at = storage.download_url(
        key=message.media_key, content_type=message.content_type
    )
    thumbnail_url = None
    if message.thumbnail_key:
        thumbnail_url, _ = storage.download_url(
            key=message.thumbnail_key, content_type="image/jpeg"
        )
    audit_staff(account, conversation, "read", "video", message.id)
    return {"video_url": video_url, "thumbnail_url": thumbnail_url, "expires_at": expires_at}


# --- coaching cycles ----------------------------------------------------------------------


def cycles_query(conversation: Conversation, status: str | None = None):
    """Returns a select() of a conversation's coaching cycles, newest first."""
    stmt = select(CoachingCycle).where(CoachingCycle.conversation_id == conversation.id)
    if status is not None:
        stmt = stmt.where(CoachingCycle.status == status)
    return stmt.order_by(CoachingCycle.created_at.desc(), CoachingCycle.id)


def get_cycle_for(account: Account, cycle_id: str) -> tuple[CoachingCycle, Conversation]:
    """Returns a coaching cycle of a conversation the caller takes part in, or NotFound."""
    if not ID_PATTERN.match(cycle_id):
        raise NotFound("Coaching cycle not found")
    row = db.session.execute(
        select(CoachingCycle, Conversation)
        .join(Conversation, Conversation.id == CoachingCycle.conversation_id)
        .where(CoachingCycle.id == cycle_id, _participant_clause(account))
    ).first()
    if row is None:
        raise NotFound("Coaching cycle not found")
    return row[0], row[1]


def waiting_on(cycle: CoachingCycle) -> str | None:
    """Returns whose turn it is in an open cycle: "therapist" or "patient" (None when closed)."""
    return WAITING_ON.get(cycle.phase) if cycle.status == "open" else None


def open_cycle(
    *,
    account: Account,
    conversation: Conversation,
    activity: str,
    request: str | None = None,
    message_id: str | None = None,
) -> CoachingCycle:
    """Returns a new cycle opened with a request for help about an activity that matters to the
    patient (optionally holding the message that asks it)."""
    now = clock.now()
    message = _message_in(conversation, account, message_id, "message_id") if message_id else None
    cycle = CoachingCycle(
        conversation_id=conversation.id,
        activity=activity,
        request=request,
        status="open",
        phase="requested",
        waiting_since=now,
        opened_by_role=account.role,
        created_at=now,
        updated_at=now,
    )
    db.session.add(cycle)
    db.session.flush()
    if message is not None:
        message.cycle_id = cycle.id
    audit_staff(account, conversation, "create", "coaching_cycle", cycle.id)
    db.session.flush()
    return cycle


THERAPIST_ONLY = ("assignment", "outcome", "status")


def update_cycle(
    *, account: Account, cycle: CoachingCycle, conversation: Conversation, changes: dict
) -> CoachingCycle:
    """Returns the cycle after a change; only the therapist sets the assignment and closes it
    (with an outcome); a closed cycle no longer changes."""
    if cycle.status == "closed":
        raise Conflict("This coaching cycle is closed")
    if account.role != "therapist":
        for name in THERAPIST_ONLY:
            if name in changes:
                raise Forbidden(f"Only the therapist can change {name}")
    now = clock.now()
    for name in ("activity", "request", "assignment", "outcome"):
        if name in changes:
            setattr(cycle, name, changes[name])
    if changes.get("status") == "closed":
        if not cycle.outcome:
            raise ValidationFailed.field("outcome", "Closing a cycle needs a short outcome")
        cycle.status = "closed"
        cycle.phase = "closed"
        cycle.closed_at = now
    cycle.updated_at = now
    audit_staff(account, conversation, "update", "coaching_cycle", cycle.id)
    db.session.flush()
    return cycle


def _advance_cycle(cycle: CoachingCycle | None, message: Message, now: datetime) -> None:
    if cycle is None or cycle.status != "open":
        return
    if message.sender_role == "therapist" and cycle.phase != "answered":
        cycle.phase, cycle.waiting_since = "answered", now
    elif message.sender_role == "patient" and cycle.phase == "answered":
        cycle.phase, cycle.waiting_since = "attempted", now
    cycle.updated_at = now


# --- for other domains: work list, reminders, /me/today ------------------------------------


def _awaiting_reply_stmt():
    """Per conversation, the oldest patient message sent after the therapist's last one."""
    last_reply = (
        select(
            Message.conversation_id.label("conversation_id"),
            func.max(Message.sent_at).label("at"),
        )
        .where(Message.sender_role == "therapist", Message.sent_at.is_not(None))
        .group_by(Message.conversation_id)
        .subquery()
    )
    since = func.min(Message.sent_at).label("since")
    return (
        select(Conversation.therapist_id, Conversation.patient_id, since)
        .join(Message, Message.conversation_id == Conversation.id)
        .outerjoin(last_reply, last_reply.c.conversation_id == Conversation.id)
        .where(
            Message.sender_role == "patient",
            Message.sent_at.is_not(None),
            or_(last_reply.c.at.is_(None), Message.sent_at > last_reply.c.at),
        )
        .group_by(Conversation.therapist_id, Conversation.patient_id)
    )


def worklist_extras(*, therapist, patient_ids) -> dict[str, dict]:
    """Returns for each of the therapist's patients: `unread_messages`, `awaiting_reply_since`
    (the oldest patient message not yet answered, or None) and `open_cycles` (each with whom it
    waits on and since when)."""
    patient_ids = list(patient_ids)
    extras: dict[str, dict] = {
        pid: {"unread_messages": 0, "awaiting_reply_since": None, "open_cycles": []}
        for pid in patient_ids
    }
    if not patient_ids:
        return extras
    mine = and_(Conversation.therapist_id == therapist.id, Conversation.patient_id.in_(patient_ids))
    for patient_id, count in db.session.execute(
        select(Conversation.patient_id, func.count(Message.id))
        .join(Message, Message.conversation_id == Conversation.id)
        .where(
            mine,
            Message.sender_role == "patient",
            Message.sent_at.is_not(None),
            Message.read_at.is_(None),
        )
        .group_by(Conversation.patient_id)
    ):
        extras[patient_id]["unread_messages"] = count
    for _, patient_id, since in db.session.execute(_awaiting_reply_stmt().where(mine)):
        extras[patient_id]["awaiting_reply_since"] = since
    for cycle, patient_id in db.session.execute(
        select(CoachingCycle, Conversation.patient_id)
        .join(Conversation, Conversation.id == CoachingCycle.conversation_id)
        .where(mine, CoachingCycle.status == "open")
        .order_by(CoachingCycle.waiting_since)
    ):
        extras[patient_id]["open_cycles"].append(
            {
                "id": cycle.id,
                "activity": cycle.activity,
                "phase": cycle.phase,
                "waiting_on": waiting_on(cycle),
                "waiting_since": cycle.waiting_since,
            }
        )
    return extras


def messages_awaiting_reply(older_than: datetime) -> list[tuple[str, str, datetime]]:
    """Returns (therapist_id, patient_id, since) for every conversation whose oldest unanswered
    patient message was sent at or before `older_than`."""
    stmt = _awaiting_reply_stmt()
    stmt = stmt.having(func.min(Message.sent_at) <= older_than)
    return [tuple(row) for row in db.session.execute(stmt)]


# --- video consent ------------------------------------------------------------------------


def withdraw_video_consent(*, patient: Account) -> int:
    """Switch video coaching off for a patient: no new videos, and every stored video of their
    conversations is deleted (after the commit). Returns how many videos were deleted."""
    acceptances = db.session.execute(
        select(ConsentAcceptance).where(
            ConsentAcceptance.patient_id == patient.id, ConsentAcceptance.withdrawn_at.is_(None)
        )
    ).scalars()
    for acceptance in acceptances:
        acceptance.is_video_accepted = False
    return delete_patient_videos(patient_id=patient.id, reason="consent_withdrawn")


def delete_patient_videos(*, patient_id: str, reason: str = "deleted") -> int:
    """Delete every video of a patient's conversations (both sides) and fail the unfinished ones;
    the messages stay, with media `deleted`. Returns how many stored videos were let go."""
    messages = db.session.execute(
        select(Message)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(Conversation.patient_id == patient_id, Message.kind == "video")
    ).scalars()
    deleted = 0
    for message in messages:
        if message.status in ("awaiting_upload", "processing"):
            _fail(message, reason if reason in FAILURE_REASONS else "deleted")
        elif _let_media_go(message, "deleted", reason=reason):
            deleted += 1
    db.session.flush()
    return deleted


# --- jobs ---------------------------------------------------------------------------------


def _claim_next_video(now: datetime) -> str | None:
    """Returns the id of a video to check, leased to this process, or None when there is none."""
    free = and_(
        Message.status == "processing",
        or_(Message.processing_lease_until.is_(None), Message.processing_lease_until < now),
    )
    candidates = db.session.execute(
        select(Message.id).where(free).order_by(Message.completed_at, Message.id).limit(5)
    ).scalars()
    for message_id in list(candidates):
        # Compare-and-set: of several scheduler processes exactly one wins each video.
        taken = db.session.execute(
            update(Message)
            .where(Message.id == message_id, free)
            .values(
                processing_lease_until=now + PROCESSING_LEASE,
                processing_attempts=Message.processing_attempts + 1,
            )
            .execution_options(synchronize_session=False)
        ).rowcount
        db.session.commit()
        if taken == 1:
            return message_id
    return None


def process_pending_videos(now: datetime, *, limit: int = 20) -> int:
    """Check completed uploads with PyAV, one at a time; returns how many were checked.

    `now` is when the run started. A run of large videos outlasts PROCESSING_LEASE, so each
    claim (and each video sent) reads the clock again: a lease dated from the start would
    already have run out and let another process take the same video.
    """
    checked = 0
    while checked < limit:
        message_id = _claim_next_video(clock.now())
        if message_id is None:
            break
        _check_video(message_id)
        checked += 1
    return checked


def _let_orphans_go(*, video_key: str | None, thumbnail_key: str | None) -> None:
    """The message was erased while its video was checked: queue what the check left behind.

    Erasure queued the video it found; queueing it again costs one more (idempotent) delete
    and does not depend on how far the erasure got before the check looked.
    """
    media.schedule_deletion(key=video_key, reason="orphan_video")
    media.schedule_deletion(key=thumbnail_key, reason="orphan_thumbnail")
    db.session.commit()


def _check_video(message_id: str) -> None:
    message = db.session.get(Message, message_id, populate_existing=True)
    if message is None:
        # Erased since the claim: erasure queued the video; nothing else was stored yet.
        db.session.commit()
        return
    if message.processing_attempts > MAX_PROCESSING_ATTEMPTS:
        _fail(message, "processing_error")
        db.session.commit()
        return
    storage = get_storage()
    content_type, key = message.content_type, message.media_key
    db.session.commit()  # no transaction stays open while the file is read
    thumbnail_key = new_key()
    sealed_key = None
    try:
        with (
            storage.fetch_version(key) as (path, etag),
            tempfile.TemporaryDirectory(prefix="coaching-thumb-") as folder,
        ):
            thumbnail = Path(folder) / "thumbnail.jpg"
            info = inspect_video(
                path,
                content_type=content_type,
                max_duration_s=_config("MAX_VIDEO_SECONDS"),
                thumbnail_path=thumbnail,
            )
            # The upload URL may still work: keep exactly the checked bytes where it cannot write
            # (a replaced object raises ObjectChanged, and a later run checks the new bytes).
            sealed_key, sealed_etag = storage.seal(key=key, etag=etag, content_type=content_type)
            storage.save_file(key=thumbnail_key, path=thumbnail, content_type="image/jpeg")
    except VideoRejected as rejected:
        log.info("video %s rejected: %s", message_id, rejected)
        message = db.session.get(Message, message_id, populate_existing=True)
        if message is None:
            # Erased during the check; the rejection came before any thumbnail was stored.
            _let_orphans_go(video_key=key, thumbnail_key=None)
            return
        if message.status == "processing":
            _fail(message, rejected.code)
        db.session.commit()
        return
    except Exception:
        # The store or the disk failed: the lease runs out and a later run tries again.
        log.exception("video %s could not be checked; it will be tried again", message_id)
        db.session.rollback()
        if sealed_key not in (None, key):
            media.schedule_deletion(key=sealed_key, reason="orphan_video")
            db.session.commit()
        return
    copy = sealed_key if sealed_key != key else None
    message = db.session.get(Message, message_id, populate_existing=True)
    if message is None:
        media.schedule_deletion(key=copy, reason="orphan_video")
        _let_orphans_go(video_key=key, thumbnail_key=thumbnail_key)
        return
    if message.status != "processing":
        # Consent was withdrawn (or the upload expired) while the check ran.
        media.schedule_deletion(key=thumbnail_key, reason="orphan_thumbnail")
        media.schedule_deletion(key=copy, reason="orphan_video")
        db.session.commit()
        return
    if copy is not None:
        # The uploaded object goes; late writes through its URL are deleted too (media service).
        media.schedule_deletion(key=message.media_key, reason="sealed_upload")
        message.media_key = copy
    message.media_etag = sealed_etag
    message.status = "ready"
    message.duration_s = info.duration_s
    message.thumbnail_key = thumbnail_key
    message.media_state = "stored"
    message.processing_lease_until = None
    conversation = db.session.get(Conversation, message.conversation_id)
    # Sent now, not when the run started: the check may have taken minutes.
    _on_sent(message, conversation, clock.now())
    db.session.commit()


def expire_stale_uploads(now: datetime, *, batch: int = 200) -> int:
    """Fail video messages whose upload never finished in time and delete what arrived."""
    expired = 0
    while True:
        messages = (
            db.session.execute(
                select(Message)
                .where(Message.status == "awaiting_upload", Message.upload_expires_at <= now)
                .order_by(Message.upload_expires_at)
                .limit(batch)
            )
            .scalars()
            .all()
        )
        for message in messages:
            _fail(message, "upload_expired")
        db.session.commit()
        expired += len(messages)
        if len(messages) < batch:
            return expired


# The programme's own length: month 3 is its end (INSTRUMENTS.md). A patient who stops before
# completing it has ended it once this has passed and they have not been back since.
PROGRAMME_LENGTH = timedelta(days=91)


def apply_media_retention(now: datetime, *, batch: int = 200) -> int:
    """Delete the videos of patients whose programme ended more than the retention period ago;
    the messages stay, with media `expired`. Returns how many videos were let go.

    A programme ends when the patient completes it, or, for a patient who stopped, at the
    latest of its planned end (enrolment + PROGRAMME_LENGTH), the patient's last activity and
    the conversation's last message: coming back, or a new message, starts the period again.
    """
    cutoff = now - timedelta(days=_config("VIDEO_RETENTION_DAYS"))
    completed = and_(Enrollment.completed_at.is_not(None), Enrollment.completed_at <= cutoff)
    stopped = and_(
        Enrollment.completed_at.is_(None),
        Enrollment.enrolled_at <= cutoff - PROGRAMME_LENGTH,
        or_(Enrollment.last_active_at.is_(None), Enrollment.last_active_at <= cutoff),
        or_(Conversation.last_message_at.is_(None), Conversation.last_message_at <= cutoff),
    )
    ended = (
        select(Enrollment.id)
        .where(Enrollment.patient_id == Conversation.patient_id, or_(completed, stopped))
        .exists()
    )
    expired = 0
    while True:
        messages = (
            db.session.execute(
                select(Message)
                .join(Conversation, Conversation.id == Message.conversation_id)
                .where(ended, Message.kind == "video", Message.media_state == "stored")
                .limit(batch)
            )
            .scalars()
            .all()
        )
        for message in messages:
            _let_media_go(message, "expired", reason="retention")
        db.session.commit()
        expired += len(messages)
        if len(messages) < batch:
            return expired


def purge_deleted_media(now: datetime) -> int:
    """Delete the objects recorded for deletion from the store; returns how many."""
    return media.purge_pending(now)
