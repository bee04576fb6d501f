"""The whole round trip over real HTTP, as the apps do it, on both media backends:

- `local`: the app served by a real HTTP server on loopback; uploads and downloads through the
  service's own signed URLs;
- `s3`: the app talking boto3 to an S3-protocol server on loopback; the phone uploads with a plain
  HTTP client straight to the store (presigned POST) and plays through presigned GETs.

A patient records and sends a video, the therapist sees it unread, watches it (seeking works),
replies with a video, and the patient watches the reply.
"""

from __future__ import annotations

import io

import pytest
import requests
from PIL import Image

from coaching import clock as app_clock
from coaching.extensions import db
from coaching.media.storage import get_storage
from coaching.messaging import service
from coaching.messaging.models import Message
from tests.media.fixtures import upload_with_requests

API = "/api/v1"


class Phone:
    """An app on a phone: a plain HTTP client with one account's token."""

    def __init__(self, base: str, make, account) -> None:
        self.base, self.make, self.account = base, make, account

    def _headers(self) -> dict:
        return self.make.headers(self.account)  # a fresh token: tests move the clock

    def get(self, path: str, **kw):
        return requests.get(f"{self.base}{API}{path}", headers=self._headers(), timeout=30, **kw)

    def post(self, path: str, body: dict | None = None):
        return requests.post(
            f"{self.base}{API}{path}", json=body, headers=self._headers(), timeout=30
        )

    def send_video(self, conversation_id: str, path, content_type: str, **extra) -> dict:
        created = self.post(
            f"/conversations/{conversation_id}/messages",
            {
                "kind": "video",
                "content_type": content_type,
                "size_bytes": path.stat().st_size,
                **extra,
            },
        )
        assert created.status_code == 201, created.text
        message = created.json()
        uploaded = upload_with_requests(message["upload"], path)
        assert uploaded.status_code == 204, uploaded.text
        done = self.post(f"/messages/{message['id']}/complete")
        assert done.status_code == 200, done.text
        assert done.json()["status"] == "processing"
        return message


def _scheduler_tick() -> None:
    """What `scheduler tick` does for video coaching (the test thread plays the scheduler)."""
    service.process_pending_videos(app_clock.now())
    service.purge_deleted_media(app_clock.now())
    db.session.rollback()


def _round_trip(base: str, make, world, sample_videos, clock) -> dict:
    patient = Phone(base, make, world.patient)
    therapist = Phone(base, make, world.therapist)
    db.session.rollback()  # no open transaction while the server threads write

    conversation = patient.get("/conversations").json()[0]
    mp4, mp4_type = sample_videos["mp4_audio"]
    sent = patient.send_video(conversation["id"], mp4, mp4_type)
    assert therapist.get("/conversations").json()[0]["unread_count"] == 0  # not ready yet
    _scheduler_tick()

    mine = patient.get(f"/messages/{sent['id']}").json()
    assert mine["status"] == "ready" and mine["duration_s"] == pytest.approx(2.0, abs=0.15)
    inbox = therapist.get("/conversations").json()
    assert inbox[0]["id"] == conversation["id"] and inbox[0]["unread_count"] == 1
    listed = therapist.get(f"/conversations/{conversation['id']}/messages").json()
    assert [m["id"] for m in listed] == [sent["id"]]

    media = therapist.get(f"/messages/{sent['id']}/media").json()
    full = requests.get(media["video_url"], timeout=30)
    assert full.status_code == 200 and full.content == mp4.read_bytes()
    # Seeking: the player asks for a byte range.
    seek = requests.get(media["video_url"], headers={"Range": "bytes=1000-1999"}, timeout=30)
    assert seek.status_code == 206
    assert seek.content == mp4.read_bytes()[1000:2000]
    thumb = requests.get(media["thumbnail_url"], timeout=30)
    assert thumb.headers["Content-Type"] == "image/jpeg"
    assert Image.open(io.BytesIO(thumb.content)).size == (96, 64)
    assert therapist.post(f"/messages/{sent['id']}/watched").status_code == 204
    assert therapist.get("/conversations").json()[0]["unread_count"] == 0

    clock.advance(hours=2)
    webm, webm_type = sample_videos["webm_vp9"]
    reply = therapist.send_video(conversation["id"], webm, webm_type, reply_to=sent["id"])
    _scheduler_tick()
    assert patient.get("/conversations").json()[0]["unread_count"] == 1
    newest = patient.get(f"/conversations/{conversation['id']}/messages").json()[0]
    assert (newest["id"], newest["reply_to"], newest["status"]) == (
        reply["id"],
        sent["id"],
        "ready",
    )
    played = requests.get(
        patient.get(f"/messages/{reply['id']}/media").json()["video_url"], timeout=30
    )
    assert played.content == webm.read_bytes()
    assert patient.post(f"/messages/{reply['id']}/watched").status_code == 204
    assert patient.get(f"/messages/{reply['id']}").json()["watched_at"] is not None
    return {"conversation": conversation, "sent": sent, "reply": reply, "patient": patient}


def test_local_round_trip_over_real_http(live_server, make, world, sample_videos, clock):
    result = _round_trip(live_server, make, world, sample_videos, clock)
    key = db.session.get(Message, result["sent"]["id"]).media_key
    assert get_storage().path(key).stat().st_size == sample_videos["mp4_audio"][0].stat().st_size


def test_s3_round_trip_over_real_http(live_server, make, world, sample_videos, s3, clock):
    result = _round_trip(live_server, make, world, sample_videos, clock)
    row = db.session.get(Message, result["sent"]["id"])
    head = s3.client.head_object(Bucket=s3.bucket, Key=row.media_key)
    assert head["ContentLength"] == row.size_bytes
    assert head["ContentType"] == "video/mp4"
    assert s3.client.head_object(Bucket=s3.bucket, Key=row.thumbnail_key)["ContentType"] == (
        "image/jpeg"
    )
    upload = result["sent"]["upload"]
    assert upload["url"].startswith(s3.server.url)  # straight to the store, not through the API
    assert (
        "content-length-range"
        in __import__("base64").b64decode(upload["fields"]["policy"]).decode()
    )


def test_s3_wrong_length_is_refused_by_the_store_and_never_completes(
    live_server, make, world, sample_videos, s3
):
    patient = Phone(live_server, make, world.patient)
    db.session.rollback()
    conversation = patient.get("/conversations").json()[0]
    path, content_type = sample_videos["mp4"]
    size = path.stat().st_size
    created = patient.post(
        f"/conversations/{conversation['id']}/messages",
        {"kind": "video", "content_type": content_type, "size_bytes": size},
    ).json()
    longer = upload_with_requests(created["upload"], data=path.read_bytes() + b"extra bytes")
    assert longer.status_code == 400 and "EntityTooLarge" in longer.text
    shorter = upload_with_requests(created["upload"], data=path.read_bytes()[:-10])
    assert shorter.status_code == 400 and "EntityTooSmall" in shorter.text
    assert s3.server.policy_check.refused[-2:] == ["EntityTooLarge", "EntityTooSmall"]
    early = patient.post(f"/messages/{created['id']}/complete")
    assert early.status_code == 409  # the HEAD check finds nothing
    assert upload_with_requests(created["upload"], path).status_code == 204
    assert patient.post(f"/messages/{created['id']}/complete").json()["status"] == "processing"


def test_s3_junk_fails_and_its_object_is_deleted(live_server, make, world, sample_videos, s3):
    patient = Phone(live_server, make, world.patient)
    db.session.rollback()
    conversation = patient.get("/conversations").json()[0]
    path, content_type = sample_videos["junk"]
    message = patient.send_video(conversation["id"], path, content_type)
    _scheduler_tick()
    failed = patient.get(f"/messages/{message['id']}").json()
    assert (failed["status"], failed["failure_code"]) == ("failed", "not_a_video")
    assert failed["failure_reason"]
    key = db.session.get(Message, message["id"]).media_key
    assert get_storage().size_of(key) is None


def test_s3_consent_withdrawal_deletes_the_objects(live_server, make, world, sample_videos, s3):
    patient = Phone(live_server, make, world.patient)
    db.session.rollback()
    conversation = patient.get("/conversations").json()[0]
    path, content_type = sample_videos["mp4"]
    message = patient.send_video(conversation["id"], path, content_type)
    _scheduler_tick()
    row = db.session.get(Message, message["id"])
    keys = (row.media_key, row.thumbnail_key)
    db.session.rollback()
    withdrawn = requests.delete(
        f"{live_server}{API}/me/consent/video",
        json={"confirm": True},
        headers=make.headers(world.patient),
        timeout=30,
    )
    assert withdrawn.json() == {"video": False, "videos_deleted": 1}
    _scheduler_tick()
    assert all(get_storage().size_of(k) is None for k in keys)


def test_local_body_larger_than_declared_is_cut_off_over_real_http(
    live_server, make, world, sample_videos, clock
):
    patient = Phone(live_server, make, world.patient)
    db.session.rollback()
    conversation = patient.get("/conversations").json()[0]
    path, content_type = sample_videos["mp4"]
    created = patient.post(
        f"/conversations/{conversation['id']}/messages",
        {"kind": "video", "content_type": content_type, "size_bytes": path.stat().st_size - 100},
    ).json()
    cut = upload_with_requests(created["upload"], path)
    assert cut.status_code == 413
    assert patient.post(f"/messages/{created['id']}/complete").status_code == 409
    clock.advance(hours=24)
    service.expire_stale_uploads(app_clock.now())
    db.session.rollback()
    failed = patient.get(f"/messages/{created['id']}").json()
    assert (failed["status"], failed["failure_code"]) == ("failed", "upload_expired")


def test_local_expired_playback_url_is_refused_over_real_http(
    live_server, make, world, sample_videos, clock
):
    patient = Phone(live_server, make, world.patient)
    therapist = Phone(live_server, make, world.therapist)
    db.session.rollback()
    conversation = patient.get("/conversations").json()[0]
    path, content_type = sample_videos["mp4"]
    message = patient.send_video(conversation["id"], path, content_type)
    _scheduler_tick()
    url = therapist.get(f"/messages/{message['id']}/media").json()["video_url"]
    assert requests.head(url, timeout=30).status_code == 200
    clock.advance(minutes=15)
    expired = requests.get(url, timeout=30)
    assert expired.status_code == 403
    assert expired.json()["code"] == 403


def test_s3_an_upload_again_after_the_check_never_reaches_the_receiver(
    live_server, make, world, sample_videos, s3
):
    # A presigned POST works until it expires: the sender can write its key again, same length
    # and type. The receiver must still get the bytes the check read.
    patient = Phone(live_server, make, world.patient)
    therapist = Phone(live_server, make, world.therapist)
    db.session.rollback()
    conversation = patient.get("/conversations").json()[0]
    path, content_type = sample_videos["mp4"]
    checked = path.read_bytes()
    message = patient.send_video(conversation["id"], path, content_type)
    _scheduler_tick()
    assert patient.get(f"/messages/{message['id']}").json()["status"] == "ready"
    row = db.session.get(Message, message["id"])
    assert row.media_etag == s3.client.head_object(Bucket=s3.bucket, Key=row.media_key)["ETag"]
    db.session.rollback()

    other = bytes(reversed(checked))  # other bytes, the very same length and type
    again = upload_with_requests(message["upload"], data=other)
    assert again.status_code == 204, again.text  # the store took it: the URL still works
    media = therapist.get(f"/messages/{message['id']}/media").json()
    assert set(media) == {"video_url", "thumbnail_url", "expires_at"}
    played = requests.get(media["video_url"], timeout=30)
    assert played.status_code == 200 and played.content == checked
    seek = requests.get(media["video_url"], headers={"Range": "bytes=100-199"}, timeout=30)
    assert seek.status_code == 206 and seek.content == checked[100:200]

    # The uploaded object is deleted, and so is a later write through its URL.
    upload_key = message["upload"]["fields"]["key"]
    _scheduler_tick()
    assert get_storage().size_of(upload_key) is None
    assert upload_with_requests(message["upload"], data=other).status_code == 204
    _scheduler_tick()
    assert get_storage().size_of(upload_key) is None
    assert requests.get(media["video_url"], timeout=30).content == checked


def test_s3_consent_withdrawal_deletes_the_uploaded_and_the_checked_objects(
    live_server, make, world, sample_videos, s3
):
    patient = Phone(live_server, make, world.patient)
    db.session.rollback()
    conversation = patient.get("/conversations").json()[0]
    path, content_type = sample_videos["mp4"]
    message = patient.send_video(conversation["id"], path, content_type)
    _scheduler_tick()
    row = db.session.get(Message, message["id"])
    keys = (message["upload"]["fields"]["key"], row.media_key, row.thumbnail_key)
    assert keys[0] != keys[1]
    db.session.rollback()
    withdrawn = requests.delete(
        f"{live_server}{API}/me/consent/video",
        json={"confirm": True},
        headers=make.headers(world.patient),
        timeout=30,
    )
    assert withdrawn.json() == {"video": False, "videos_deleted": 1}
    _scheduler_tick()
    assert all(get_storage().size_of(k) is None for k in keys)
