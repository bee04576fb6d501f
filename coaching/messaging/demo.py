"""Demo conversations for `flask --app wsgi demo seed`: coaching cycles with real (tiny) videos
made with PyAV, checked by the real video check and stored in the configured media store.

Safe to run again: a conversation that already has messages is left alone.
"""

from __future__ import annotations

import tempfile
from datetime import timedelta
from pathlib import Path

from flask import current_app
from sqlalchemy import select

from coaching import clock
from coaching.enrolment import service as enrolment
from coaching.extensions import db
from coaching.media.samples import write_video
from coaching.media.storage import get_storage, new_key
from coaching.media.video import inspect_video
from coaching.messaging import service
from coaching.messaging.models import CoachingCycle, Message

# (activity, the patient's request, the therapist's answer, the assignment, answered?)
STORIES = [
    (
        "Tuinieren",
        "Ik wil weer in de tuin werken, maar bukken doet pijn. Hoe pak ik dat aan?",
        "Mooi doel. Kijk in de video hoe je door je knieën gaat en je werk in stukjes verdeelt.",
        "Drie keer deze week 10 minuten wieden, met een pauze na elke 5 minuten.",
        True,
    ),
    (
        "Fietsen naar het werk",
        "Ik durf niet meer te fietsen sinds de pijn erger werd. Kun je me helpen?",
        None,
        None,
        False,
    ),
    (
        "Picking up my grandchild",
        "I would love to lift my grandson again without being afraid. Where do I start?",
        "Let's start light: watch how I lift a bag of groceries, then try it with a pillow.",
        "Lift something of 2-3 kg five times a day, breathing out as you lift.",
        True,
    ),
]


def _store_video(path: Path, content_type: str) -> tuple[str, str, float]:
    """Check a sample video like an upload and store it; returns (key, thumbnail key, duration)."""
    storage = get_storage()
    with tempfile.TemporaryDirectory(prefix="coaching-demo-") as folder:
        thumbnail = Path(folder) / "thumbnail.jpg"
        info = inspect_video(
            path,
            content_type=content_type,
            max_duration_s=current_app.config["MAX_VIDEO_SECONDS"],
            thumbnail_path=thumbnail,
        )
        key, thumbnail_key = new_key(), new_key()
        storage.save_file(key=key, path=path, content_type=content_type)
        storage.save_file(key=thumbnail_key, path=thumbnail, content_type="image/jpeg")
    return key, thumbnail_key, info.duration_s


def _message(conversation, *, role: str, sender_id: str, at, cycle, body=None, video=None):
    message = Message(
        conversation_id=conversation.id,
        sender_id=sender_id,
        sender_role=role,
        kind="video" if video else "text",
        body=body,
        status="ready",
        cycle_id=cycle.id if cycle else None,
        created_at=at,
        processing_attempts=0,
    )
    if video:
        path, content_type = video
        key, thumbnail_key, duration = _store_video(path, content_type)
        message.content_type = content_type
        message.size_bytes = path.stat().st_size
        message.media_key, message.thumbnail_key = key, thumbnail_key
        message.duration_s, message.media_state = duration, "stored"
        message.completed_at = at
    db.session.add(message)
    db.session.flush()
    service._on_sent(message, conversation, at)
    return message


def seed(ctx, progress) -> None:
    """Add coaching conversations with videos for the first consented demo patients."""
    # Patients still in the programme (others' demo data backdates some to completed long ago,
    # whose videos the retention job would let go).
    patients = [
        p
        for p in ctx.patients
        if service.is_video_allowed(p.id)
        and getattr(enrolment.enrollment_for(p.id), "status", None) == "active"
    ][: len(STORIES)]
    now = clock.now()
    with tempfile.TemporaryDirectory(prefix="coaching-demo-videos-") as folder:
        videos = {
            "patient": (write_video(Path(folder) / "patient.mp4", seconds=3), "video/mp4"),
            "therapist": (
                write_video(Path(folder) / "therapist.webm", content_type="video/webm", seconds=4),
                "video/webm",
            ),
        }
        for index, (patient, story) in enumerate(zip(patients, STORIES, strict=False)):
            conversation = service.ensure_conversation(
                patient_id=patient.id, therapist_id=patient.therapist_id
            )
            has_messages = db.session.execute(
                select(Message.id).where(Message.conversation_id == conversation.id).limit(1)
            ).first()
            if has_messages:
                continue
            activity, request, answer, assignment, answered = story
            start = now - timedelta(days=3 - index, hours=2)
            cycle = CoachingCycle(
                conversation_id=conversation.id,
                activity=activity,
                request=request,
                status="open",
                phase="requested",
                waiting_since=start,
                opened_by_role="patient",
                created_at=start,
                updated_at=start,
            )
            db.session.add(cycle)
            db.session.flush()
            ask = _message(
                conversation,
                role="patient",
                sender_id=patient.id,
                at=start,
                cycle=cycle,
                body=request,
            )
            shown = _message(
                conversation,
                role="patient",
                sender_id=patient.id,
                at=start + timedelta(minutes=2),
                cycle=cycle,
                video=videos["patient"],
            )
            if answered:
                at = start + timedelta(hours=20)
                reply = _message(
                    conversation,
                    role="therapist",
                    sender_id=patient.therapist_id,
                    at=at,
                    cycle=cycle,
                    body=answer,
                )
                reply.reply_to_id = ask.id
                _message(
                    conversation,
                    role="therapist",
                    sender_id=patient.therapist_id,
                    at=at + timedelta(minutes=1),
                    cycle=cycle,
                    video=videos["therapist"],
                )
                cycle.assignment = assignment
                ask.read_at = shown.read_at = shown.watched_at = at
            db.session.flush()
    progress.update(0)
