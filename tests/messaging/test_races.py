"""Requests about one message arriving at once: each answered as if it came alone, and what
they record recorded once (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading

from sqlalchemy import func, select

from coaching.extensions import db
from coaching.messaging import service
from coaching.messaging.models import Message
from coaching.metrics.models import PatientActivity
from tests.messaging.flows import API, conversation_of, send_text


def _at_once(app, paths: list[str], headers: dict) -> list[int]:
    """POSTs each path from its own thread; returns the statuses."""
    statuses: list[int] = []

    def post(path):
        statuses.append(app.test_client().post(path, headers=headers).status_code)

    threads = [threading.Thread(target=post, args=(p,)) for p in paths]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return statuses


def _meet_after_reading(monkeypatch, name: str) -> None:
    """Makes two requests wait for each other once both have loaded the message (unread)."""
    barrier, original = threading.Barrier(2), getattr(service, name)

    def synchronised(**kwargs):
        barrier.wait(timeout=10)
        return original(**kwargs)

    monkeypatch.setattr(service, name, synchronised)


def _activities(patient, kind: str) -> int:
    return db.session.execute(
        select(func.count())
        .select_from(PatientActivity)
        .where(PatientActivity.patient_id == patient.id, PatientActivity.kind == kind)
    ).scalar_one()


def test_reading_a_message_on_two_devices_at_once_is_one_read(app, client, world, monkeypatch):
    conversation = conversation_of(client, world.h["patient"])
    message = send_text(client, world.h["therapist"], conversation["id"], "Hoe ging het?")
    _meet_after_reading(monkeypatch, "mark_read")
    path = f"{API}/messages/{message['id']}/read"
    assert _at_once(app, [path, path], world.h["patient"]) == [204, 204]
    monkeypatch.undo()
    db.session.expire_all()
    assert db.session.get(Message, message["id"]).read_at is not None
    assert _activities(world.patient, "message_read") == 1


def test_watching_a_video_on_two_devices_at_once_is_one_watch(
    app, client, world, monkeypatch, sample_videos
):
    from tests.messaging.flows import send_video

    conversation = conversation_of(client, world.h["patient"])
    path_, content_type = sample_videos["mp4"]
    video = send_video(client, world.h["therapist"], conversation["id"], path_, content_type)
    assert video["status"] == "ready"
    _meet_after_reading(monkeypatch, "mark_watched")
    path = f"{API}/messages/{video['id']}/watched"
    assert _at_once(app, [path, path], world.h["patient"]) == [204, 204]
    monkeypatch.undo()
    assert _activities(world.patient, "video_watched") == 1
