"""The video-coaching endpoints: who may call what (401/403/404), bad input (400/413/415/422),
and what each answers."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from sqlalchemy import func, select

from coaching.audit.models import AuditEntry
from coaching.extensions import db
from coaching.messaging.models import Message
from tests.conftest import assert_error
from tests.media.fixtures import upload_with_test_client
from tests.messaging.flows import (
    API,
    complete,
    conversation_of,
    send_text,
    send_video,
    start_video,
)


@pytest.fixture
def chat(client, world, sample_videos):
    """A conversation with a text, a ready video from the patient and an open cycle."""
    conversation = conversation_of(client, world.h["patient"])
    text = send_text(client, world.h["patient"], conversation["id"], "Mijn vraag")
    path, content_type = sample_videos["mp4"]
    video = send_video(client, world.h["patient"], conversation["id"], path, content_type)
    cycle = client.post(
        f"{API}/conversations/{conversation['id']}/cycles",
        json={"activity": "Wandelen"},
        headers=world.h["patient"],
    ).get_json()
    return {"conversation": conversation, "text": text, "video": video, "cycle": cycle}


def _endpoints(chat) -> list[tuple[str, str, dict | None]]:
    c, m, v, y = (
        chat["conversation"]["id"],
        chat["text"]["id"],
        chat["video"]["id"],
        chat["cycle"]["id"],
    )
    return [
        ("GET", "/conversations", None),
        ("GET", f"/conversations/{c}", None),
        ("GET", f"/conversations/{c}/messages", None),
        ("POST", f"/conversations/{c}/messages", {"kind": "text", "body": "x"}),
        ("GET", f"/messages/{m}", None),
        ("POST", f"/messages/{v}/upload", None),
        ("POST", f"/messages/{v}/complete", None),
        ("GET", f"/messages/{v}/media", None),
        ("POST", f"/messages/{m}/read", None),
        ("POST", f"/messages/{v}/watched", None),
        ("GET", f"/conversations/{c}/cycles", None),
        ("POST", f"/conversations/{c}/cycles", {"activity": "Fietsen"}),
        ("GET", f"/cycles/{y}", None),
        ("PATCH", f"/cycles/{y}", {"activity": "Fietsen"}),
    ]


def _call(client, method, path, body, headers=None):
    return client.open(f"{API}{path}", method=method, json=body, headers=headers or {})


def test_every_endpoint_needs_a_token(client, chat):
    for method, path, body in _endpoints(chat) + [
        ("GET", "/me/consent/video", None),
        ("DELETE", "/me/consent/video", {"confirm": True}),
    ]:
        assert_error(_call(client, method, path, body), 401)


def test_owners_take_no_part_in_conversations(client, world, chat):
    for method, path, body in _endpoints(chat):
        assert_error(_call(client, method, path, body, world.h["owner"]), 403)
    assert_error(client.get(f"{API}/me/consent/video", headers=world.h["therapist"]), 403)


@pytest.mark.parametrize(
    "who", ["other_patient", "foreign_patient", "colleague", "other_therapist"]
)
def test_another_patients_conversation_messages_media_and_cycles_are_not_found(
    client, world, chat, who
):
    for method, path, body in _endpoints(chat)[1:]:
        assert_error(_call(client, method, path, body, world.h[who]), 404)
    listed = client.get(f"{API}/conversations", headers=world.h[who]).get_json()
    assert chat["conversation"]["id"] not in {c["id"] for c in listed}


def test_patients_need_consent(client, make, world):
    patient = make.patient(world.therapist, consented=False)
    response = client.get(f"{API}/conversations", headers=make.headers(patient))
    assert_error(response, 403, contains="consent")


def test_the_receiver_does_not_see_a_video_before_it_is_ready(client, world, sample_videos):
    path, content_type = sample_videos["mp4"]
    conversation = conversation_of(client, world.h["patient"])
    pending = start_video(client, world.h["patient"], conversation["id"], path, content_type)
    therapist = world.h["therapist"]
    listed = client.get(f"{API}/conversations/{conversation['id']}/messages", headers=therapist)
    assert listed.get_json() == []
    for suffix in ("", "/complete", "/media", "/read", "/upload"):
        method = "GET" if suffix in ("", "/media") else "POST"
        assert_error(
            _call(client, method, f"/messages/{pending['id']}{suffix}", None, therapist), 404
        )
    own = client.get(
        f"{API}/conversations/{conversation['id']}/messages", headers=world.h["patient"]
    )
    assert [m["status"] for m in own.get_json()] == ["awaiting_upload"]


def test_only_the_sender_completes_and_only_the_receiver_reads(client, world, chat):
    video, text = chat["video"], chat["text"]
    assert_error(complete(client, world.h["therapist"], video["id"]), 403)
    assert_error(client.post(f"{API}/messages/{text['id']}/read", headers=world.h["patient"]), 403)
    assert_error(
        client.post(f"{API}/messages/{video['id']}/watched", headers=world.h["patient"]), 403
    )
    assert_error(
        client.post(f"{API}/messages/{video['id']}/upload", headers=world.h["therapist"]), 403
    )


# --- bad input ----------------------------------------------------------------------------


def test_malformed_json_is_400(client, world, chat):
    c = chat["conversation"]["id"]
    for path in (f"/conversations/{c}/messages", f"/conversations/{c}/cycles"):
        response = client.post(
            f"{API}{path}",
            data="{not json",
            content_type="application/json",
            headers=world.h["patient"],
        )
        assert_error(response, 400)
    response = client.delete(
        f"{API}/me/consent/video",
        data="{",
        content_type="application/json",
        headers=world.h["patient"],
    )
    assert_error(response, 400)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "text", "body": "x", "sender_role": "therapist"}, "sender_role"),
        ({"kind": "audio", "body": "x"}, "kind"),
        ({"kind": "text"}, "body"),
        ({"kind": "text", "body": ""}, "body"),
        ({"kind": "text", "body": "x" * 4001}, "body"),
        ({"kind": "text", "body": 12}, "body"),
        ({"kind": "text", "body": "a\x00b"}, "body"),
        ({"kind": "text", "body": "x", "reply_to": "\x00"}, "reply_to"),
        ({"kind": "video", "content_type": "video/mp4\x00", "size_bytes": 10}, "content_type"),
        ({"kind": "text", "body": "x", "size_bytes": 10}, "size_bytes"),
        ({"kind": "video", "content_type": "video/mp4"}, "size_bytes"),
        ({"kind": "video", "size_bytes": 10}, "content_type"),
        ({"kind": "video", "content_type": "video/mp4", "size_bytes": "10"}, "size_bytes"),
        ({"kind": "video", "content_type": "video/mp4", "size_bytes": 0}, "size_bytes"),
        ({"kind": "video", "content_type": "video/mp4", "size_bytes": 1.5}, "size_bytes"),
        ({"kind": "video", "content_type": "v" * 101, "size_bytes": 10}, "content_type"),
        ({"kind": "text", "body": "x", "reply_to": "x" * 37}, "reply_to"),
        ({"kind": "text", "body": "x", "reply_to": "no-such-message"}, "reply_to"),
        ({"kind": "text", "body": "x", "cycle_id": "no-such-cycle"}, "cycle_id"),
        ([], "_schema"),
    ],
)
def test_bad_message_bodies_are_422_naming_the_field(client, world, chat, body, field):
    response = client.post(
        f"{API}/conversations/{chat['conversation']['id']}/messages",
        json=body,
        headers=world.h["patient"],
    )
    assert_error(response, 422, field=field)


def test_video_types_and_sizes_are_checked(client, world, chat, app):
    url = f"{API}/conversations/{chat['conversation']['id']}/messages"
    headers = world.h["patient"]
    wrong_type = client.post(
        url, json={"kind": "video", "content_type": "image/png", "size_bytes": 10}, headers=headers
    )
    assert_error(wrong_type, 415)
    too_big = client.post(
        url,
        json={
            "kind": "video",
            "content_type": "video/webm",
            "size_bytes": app.config["MAX_VIDEO_BYTES"] + 1,
        },
        headers=headers,
    )
    assert_error(too_big, 413)
    huge = client.post(
        url,
        json={"kind": "video", "content_type": "video/mp4", "size_bytes": 10**30},
        headers=headers,
    )
    assert_error(huge, 413)
    largest = client.post(
        url,
        json={
            "kind": "video",
            "content_type": "video/quicktime",
            "size_bytes": app.config["MAX_VIDEO_BYTES"],
        },
        headers=headers,
    )
    assert largest.status_code == 201


def test_a_reply_to_another_conversations_message_is_refused(client, world, chat):
    other = conversation_of(client, world.h["other_patient"])
    theirs = send_text(client, world.h["other_patient"], other["id"], "Van een ander")
    response = client.post(
        f"{API}/conversations/{chat['conversation']['id']}/messages",
        json={"kind": "text", "body": "x", "reply_to": theirs["id"]},
        headers=world.h["therapist"],
    )
    assert_error(response, 422, field="reply_to")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "activity"),
        ({"activity": ""}, "activity"),
        ({"activity": "x" * 201}, "activity"),
        ({"activity": "\x00"}, "activity"),
        ({"activity": "x", "request": "x" * 2001}, "request"),
        ({"activity": "x", "status": "open"}, "status"),
        ({"activity": "x", "message_id": "nope"}, "message_id"),
    ],
)
def test_bad_cycle_bodies_are_422(client, world, chat, body, field):
    response = client.post(
        f"{API}/conversations/{chat['conversation']['id']}/cycles",
        json=body,
        headers=world.h["patient"],
    )
    assert_error(response, 422, field=field)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"status": "paused"}, "status"),
        ({"outcome": "x" * 1001}, "outcome"),
        ({"assignment": 5}, "assignment"),
        ({"phase": "closed"}, "phase"),
    ],
)
def test_bad_cycle_changes_are_422(client, world, chat, body, field):
    response = client.patch(
        f"{API}/cycles/{chat['cycle']['id']}", json=body, headers=world.h["therapist"]
    )
    assert_error(response, 422, field=field)


def test_bad_query_and_consent_bodies_are_422(client, world, chat):
    c = chat["conversation"]["id"]
    assert_error(
        client.get(f"{API}/conversations/{c}/cycles?status=maybe", headers=world.h["patient"]),
        422,
        field="status",
    )
    assert_error(
        client.get(f"{API}/conversations/{c}/messages?page_size=1000", headers=world.h["patient"]),
        422,
        field="page_size",
    )
    for body, field in (
        ({}, "confirm"),
        ({"confirm": "maybe"}, "confirm"),
        ({"confirm": "yes"}, "confirm"),  # every video would go: JSON true only
        ({"confirm": 1}, "confirm"),
        ({"confirm": False}, "confirm"),
    ):
        response = client.delete(f"{API}/me/consent/video", json=body, headers=world.h["patient"])
        assert_error(response, 422, field=field)


# --- answers -------------------------------------------------------------------------------


def test_conversations_list_with_unread_counts_and_names(client, world, chat):
    listed = client.get(f"{API}/conversations", headers=world.h["therapist"])
    assert listed.status_code == 200
    assert json.loads(listed.headers["X-Pagination"])["total"] == 2
    first = listed.get_json()[0]
    assert first["id"] == chat["conversation"]["id"]  # the active one first
    assert first["unread_count"] == 2
    assert first["patient_name"] == world.patient.display_name
    assert first["last_message_at"].endswith("Z")
    assert first["video_enabled"] is True
    mine = client.get(f"{API}/conversations", headers=world.h["patient"]).get_json()
    assert len(mine) == 1 and mine[0]["unread_count"] == 0


def test_messages_are_newest_first_and_paginated(client, world, clock):
    conversation = conversation_of(client, world.h["patient"])
    for n in range(5):
        send_text(client, world.h["patient"], conversation["id"], f"Bericht {n}")
        clock.advance(seconds=30)
    page = client.get(
        f"{API}/conversations/{conversation['id']}/messages?page=1&page_size=2",
        headers=world.h["therapist"],
    )
    assert [m["body"] for m in page.get_json()] == ["Bericht 4", "Bericht 3"]
    assert json.loads(page.headers["X-Pagination"]) == {
        "total": 5,
        "total_pages": 3,
        "page": 1,
        "page_size": 2,
    }
    last = client.get(
        f"{API}/conversations/{conversation['id']}/messages?page=3&page_size=2",
        headers=world.h["therapist"],
    ).get_json()
    assert [m["body"] for m in last] == ["Bericht 0"]
    message = last[0]
    assert set(message) >= {
        "id",
        "sender_role",
        "kind",
        "body",
        "status",
        "duration_s",
        "created_at",
        "read_at",
        "watched_at",
        "reply_to",
    }
    assert message["sender_role"] == "patient" and message["status"] == "ready"


def test_read_and_watched_are_recorded_once(client, world, chat, clock):
    video = chat["video"]
    therapist = world.h["therapist"]
    assert (
        client.post(f"{API}/messages/{video['id']}/watched", headers=therapist).status_code == 204
    )
    seen = client.get(f"{API}/messages/{video['id']}", headers=therapist).get_json()
    assert seen["watched_at"] == seen["read_at"] is not None
    clock.advance(minutes=5)
    assert client.post(f"{API}/messages/{video['id']}/read", headers=therapist).status_code == 204
    again = client.get(f"{API}/messages/{video['id']}", headers=therapist).get_json()
    assert again["read_at"] == seen["read_at"]
    text = chat["text"]
    assert_error(client.post(f"{API}/messages/{text['id']}/watched", headers=therapist), 409)


def test_media_urls_are_short_lived_and_staff_views_are_audited(client, world, chat, clock):
    video = chat["video"]

    def audits():
        return db.session.execute(
            select(func.count(AuditEntry.id)).where(
                AuditEntry.resource_type == "video", AuditEntry.resource_id == video["id"]
            )
        ).scalar_one()

    own = client.get(f"{API}/messages/{video['id']}/media", headers=world.h["patient"])
    assert own.status_code == 200
    assert audits() == 0
    media = client.get(
        f"{API}/messages/{video['id']}/media", headers=world.h["therapist"]
    ).get_json()
    assert audits() == 1
    expires = datetime.fromisoformat(media["expires_at"].replace("Z", "+00:00"))
    assert 0 < (expires - clock.now()).total_seconds() <= 900
    assert media["video_url"] != media["thumbnail_url"]
    for url in (media["video_url"], media["thumbnail_url"]):
        assert world.patient.id not in url and world.patient.display_name not in url
    entry = db.session.execute(
        select(AuditEntry).where(AuditEntry.resource_type == "video")
    ).scalar_one()
    assert (entry.actor_id, entry.patient_id, entry.action) == (
        world.therapist.id,
        world.patient.id,
        "read",
    )


def test_therapist_reads_of_messages_are_audited(client, world, chat):
    client.get(
        f"{API}/conversations/{chat['conversation']['id']}/messages", headers=world.h["therapist"]
    )
    client.get(
        f"{API}/conversations/{chat['conversation']['id']}/messages", headers=world.h["patient"]
    )
    rows = db.session.execute(
        select(AuditEntry.actor_id, AuditEntry.resource_type).where(
            AuditEntry.patient_id == world.patient.id
        )
    ).all()
    assert (world.therapist.id, "conversation") in rows
    assert all(actor == world.therapist.id for actor, _ in rows)


def test_media_of_a_message_without_a_ready_video_is_409(client, world, chat, sample_videos):
    assert_error(
        client.get(f"{API}/messages/{chat['text']['id']}/media", headers=world.h["therapist"]), 409
    )
    path, content_type = sample_videos["mp4"]
    pending = start_video(
        client, world.h["patient"], chat["conversation"]["id"], path, content_type
    )
    assert_error(
        client.get(f"{API}/messages/{pending['id']}/media", headers=world.h["patient"]),
        409,
        contains="not ready",
    )


def test_complete_before_the_upload_arrived_is_409_and_changes_nothing(
    client, world, sample_videos
):
    path, content_type = sample_videos["mp4"]
    conversation = conversation_of(client, world.h["patient"])
    message = start_video(client, world.h["patient"], conversation["id"], path, content_type)
    assert_error(complete(client, world.h["patient"], message["id"]), 409, contains="upload")
    assert db.session.get(Message, message["id"]).status == "awaiting_upload"
    upload_with_test_client(client, message["upload"], path)
    assert complete(client, world.h["patient"], message["id"]).get_json()["status"] == "processing"


def test_a_fresh_upload_url_can_be_fetched_while_waiting(client, world, sample_videos, clock):
    path, content_type = sample_videos["webm_vp8"]
    conversation = conversation_of(client, world.h["patient"])
    message = start_video(client, world.h["patient"], conversation["id"], path, content_type)
    upload = message["upload"]
    assert upload["method"] == "POST" and upload["fields"]["Content-Type"] == content_type
    assert set(upload) == {"method", "url", "fields", "headers", "expires_at"}
    clock.advance(minutes=11)
    assert_error(upload_with_test_client(client, upload, path), 403)
    fresh = client.post(f"{API}/messages/{message['id']}/upload", headers=world.h["patient"])
    assert fresh.status_code == 200
    assert upload_with_test_client(client, fresh.get_json()["upload"], path).status_code == 204
    assert complete(client, world.h["patient"], message["id"]).get_json()["status"] == "processing"
    assert_error(
        client.post(f"{API}/messages/{message['id']}/upload", headers=world.h["patient"]), 409
    )


def test_idempotency_key_sends_a_message_once(client, world):
    conversation = conversation_of(client, world.h["patient"])
    headers = {**world.h["patient"], "Idempotency-Key": "retry-1"}
    url = f"{API}/conversations/{conversation['id']}/messages"
    first = client.post(url, json={"kind": "text", "body": "Eén keer"}, headers=headers)
    second = client.post(url, json={"kind": "text", "body": "Eén keer"}, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.get_json()["id"] == second.get_json()["id"]
    assert db.session.execute(select(func.count(Message.id))).scalar_one() == 1


def test_cycles_are_listed_read_and_changed_by_role(client, world, chat):
    cycle_id = chat["cycle"]["id"]
    c = chat["conversation"]["id"]
    listed = client.get(f"{API}/conversations/{c}/cycles?status=open", headers=world.h["therapist"])
    assert [y["id"] for y in listed.get_json()] == [cycle_id]
    assert (
        client.get(
            f"{API}/conversations/{c}/cycles?status=closed", headers=world.h["patient"]
        ).get_json()
        == []
    )
    one = client.get(f"{API}/cycles/{cycle_id}", headers=world.h["patient"]).get_json()
    assert (one["activity"], one["phase"], one["waiting_on"]) == (
        "Wandelen",
        "requested",
        "therapist",
    )
    edited = client.patch(
        f"{API}/cycles/{cycle_id}",
        json={"request": "Hoe kom ik tot 30 minuten?"},
        headers=world.h["patient"],
    )
    assert edited.status_code == 200 and edited.get_json()["request"].startswith("Hoe")
    for body in ({"assignment": "x"}, {"status": "closed", "outcome": "x"}):
        patch = client.patch(f"{API}/cycles/{cycle_id}", json=body, headers=world.h["patient"])
        assert_error(patch, 403)
    assign = client.patch(
        f"{API}/cycles/{cycle_id}",
        json={"assignment": "Elke dag 5 minuten erbij"},
        headers=world.h["therapist"],
    )
    assert assign.get_json()["assignment"] == "Elke dag 5 minuten erbij"
    no_outcome = client.patch(
        f"{API}/cycles/{cycle_id}", json={"status": "closed"}, headers=world.h["therapist"]
    )
    assert_error(no_outcome, 422, field="outcome")
    closed = client.patch(
        f"{API}/cycles/{cycle_id}",
        json={"status": "closed", "outcome": "Wandelt 30 minuten"},
        headers=world.h["therapist"],
    )
    assert closed.get_json()["phase"] == "closed"
    assert_error(
        client.patch(
            f"{API}/cycles/{cycle_id}", json={"activity": "y"}, headers=world.h["therapist"]
        ),
        409,
    )


def test_video_consent_withdrawal_needs_confirmation_and_can_be_given_again(client, world, chat):
    patient = world.h["patient"]
    assert client.get(f"{API}/me/consent/video", headers=patient).get_json() == {"video": True}
    withdrawn = client.delete(f"{API}/me/consent/video", json={"confirm": True}, headers=patient)
    assert withdrawn.status_code == 200
    assert withdrawn.get_json() == {"video": False, "videos_deleted": 1}
    assert client.get(f"{API}/me/consent/video", headers=patient).get_json() == {"video": False}
    listed = client.get(f"{API}/conversations", headers=world.h["therapist"]).get_json()
    assert listed[0]["video_enabled"] is False
    video = client.get(f"{API}/messages/{chat['video']['id']}", headers=patient).get_json()
    assert video["media"] == "deleted"
    assert_error(client.get(f"{API}/messages/{chat['video']['id']}/media", headers=patient), 409)
    from coaching.enrolment.service import current_consent_version

    again = client.post(
        f"{API}/me/consent",
        json={"version": current_consent_version(), "video": True},
        headers=patient,
    )
    assert again.status_code == 201
    assert client.get(f"{API}/me/consent/video", headers=patient).get_json() == {"video": True}


def test_nothing_gives_500_on_odd_ids(client, world):
    for path in (
        "/conversations/%00/messages",
        "/messages/" + "x" * 500,
        "/cycles/'; DROP TABLE x",
    ):
        response = client.get(f"{API}{path}", headers=world.h["patient"])
        assert response.status_code == 404


def test_the_openapi_document_lists_the_video_coaching_contract(client):
    spec = client.get("/api/openapi.json").get_json()
    paths = spec["paths"]
    for path, method in (
        ("/api/v1/conversations", "get"),
        ("/api/v1/conversations/{conversation_id}/messages", "get"),
        ("/api/v1/conversations/{conversation_id}/messages", "post"),
        ("/api/v1/messages/{message_id}/complete", "post"),
        ("/api/v1/messages/{message_id}/media", "get"),
        ("/api/v1/messages/{message_id}/read", "post"),
        ("/api/v1/conversations/{conversation_id}/cycles", "post"),
        ("/api/v1/cycles/{cycle_id}", "patch"),
        ("/api/v1/me/consent/video", "delete"),
    ):
        assert method in paths[path], (path, method)
    post = paths["/api/v1/conversations/{conversation_id}/messages"]["post"]
    assert {"201", "413", "415"} <= set(post["responses"])
