"""The FCM sender, through firebase-admin itself, against a local HTTP endpoint on 127.0.0.1 that
answers as FCM's HTTP v1 API does (`POST /v1/projects/<p>/messages:send`) and as Google's OAuth
token endpoint does (the fake service account's `token_uri` points at it)."""

from __future__ import annotations

import functools
import json
import threading
import uuid
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from coaching.extensions import db
from coaching.notifications import service
from coaching.notifications.dispatch import dispatch_due
from coaching.notifications.models import Device
from coaching.notifications.senders import FcmSender, PushMessage, get_sender

PROJECT = "demo-coaching"
FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"


def _error(code: int, status: str, message: str, fcm_code: str | None = None) -> dict:
    details = [{"@type": FCM_ERROR, "errorCode": fcm_code}] if fcm_code else []
    return {"error": {"code": code, "message": message, "status": status, "details": details}}


# token prefix -> (HTTP status, body, headers)
ANSWERS = {
    "ok": (200, None, {}),
    "unregistered": (
        404,
        _error(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED"),
        {},
    ),
    "unavailable": (
        503,
        _error(503, "UNAVAILABLE", "The service is currently unavailable.", "UNAVAILABLE"),
        {},
    ),
    "quota": (
        429,
        _error(429, "RESOURCE_EXHAUSTED", "Quota exceeded.", "QUOTA_EXCEEDED"),
        {"Retry-After": "300"},
    ),
    # What FCM answers for a malformed registration token: INVALID_ARGUMENT naming the field.
    "badtoken": (
        400,
        {
            "error": {
                "code": 400,
                "message": "The registration token is not a valid FCM registration token",
                "status": "INVALID_ARGUMENT",
                "details": [
                    {"@type": FCM_ERROR, "errorCode": "INVALID_ARGUMENT"},
                    {
                        "@type": "type.googleapis.com/google.rpc.BadRequest",
                        "fieldViolations": [
                            {
                                "field": "message.token",
                                "description": "Invalid registration token",
                            }
                        ],
                    },
                ],
            }
        },
        {},
    ),
    # A proxy in front of FCM answering with a Retry-After that is neither seconds nor a date.
    "oddretry": (
        503,
        _error(503, "UNAVAILABLE", "The service is currently unavailable.", "UNAVAILABLE"),
        {"Retry-After": "1.5"},
    ),
    "quotanowait": (
        429,
        _error(429, "RESOURCE_EXHAUSTED", "Quota exceeded.", "QUOTA_EXCEEDED"),
        {},
    ),
    "invalid": (
        400,
        _error(
            400, "INVALID_ARGUMENT", "Request contains an invalid argument.", "INVALID_ARGUMENT"
        ),
        {},
    ),
}


class FakeFcmServer(ThreadingHTTPServer):
    request_queue_size = 1024  # send_each opens one connection per message at once
    daemon_threads = True


class FakeFcm(BaseHTTPRequestHandler):
    requests: list = []
    token_requests = 0

    def log_message(self, *args):  # keep the test output clean
        pass

    def _answer(self, status: int, body: dict, headers: dict | None = None) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(raw)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(raw)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path == "/token":
            type(self).token_requests += 1
            return self._answer(
                200,
                {"access_token": "fake-access-token", "expires_in": 3600, "token_type": "Bearer"},
            )
        if self.path != f"/v1/projects/{PROJECT}/messages:send":
            return self._answer(404, _error(404, "NOT_FOUND", "no such path"))
        body = json.loads(raw)
        type(self).requests.append(
            {"body": body, "authorization": self.headers.get("Authorization")}
        )
        token = body["message"]["token"]
        status, answer, headers = ANSWERS[token.split("-")[0]]
        if status == 200:
            answer = {"name": f"projects/{PROJECT}/messages/{uuid.uuid4().hex}"}
        self._answer(status, answer, headers)


@functools.cache
def _rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def service_account_file(folder, *, token_uri: str):
    """Write a service-account JSON whose OAuth token endpoint is the local fake; returns its path.

    Its universe is not Google's, so google-auth makes no access-boundary lookup at
    iamcredentials.googleapis.com (these tests talk to 127.0.0.1 only).
    """
    pem = (
        _rsa_key()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    path = folder / "service-account.json"
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": PROJECT,
                "private_key_id": "test-key",
                "private_key": pem,
                "client_email": f"push@{PROJECT}.iam.gserviceaccount.com",
                "client_id": "1",
                "token_uri": token_uri,
                "universe_domain": "coaching.test",
            }
        )
    )
    return path


@pytest.fixture
def fcm(tmp_path, monkeypatch):
    """A local FCM endpoint, a fake service account pointing at it, and an FcmSender."""
    import firebase_admin
    from firebase_admin import messaging

    FakeFcm.requests = []
    FakeFcm.token_requests = 0
    server = FakeFcmServer(("127.0.0.1", 0), FakeFcm)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setattr(
        messaging._MessagingService, "FCM_URL", base + "/v1/projects/{0}/messages:send"
    )
    key = _rsa_key()
    credentials = service_account_file(tmp_path, token_uri=base + "/token")
    apps = []

    class Fcm:
        path = str(credentials)
        public_key = key.public_key()
        requests = FakeFcm.requests

        def sender(self, name=None):
            sender = FcmSender(self.path, app_name=name or f"test-{uuid.uuid4().hex}")
            apps.append(sender.app)
            return sender

    yield Fcm()
    for firebase_app in apps:
        firebase_admin.delete_app(firebase_app)
    server.shutdown()
    server.server_close()


def _device_and_row(make, h, token: str, locale="nl"):
    patient = make.patient(locale=locale)
    device = h.device(patient, token=token, platform="android")
    row = service.enqueue(
        recipient_id=patient.id,
        category="practice",
        key=f"practice:{patient.id}:2026-03-02",
        title={"nl": "Tijd om te oefenen", "en": "Time to practise"},
        body={"nl": "Een paar minuten?", "en": "A few minutes?"},
        data={"link": "/today"},
    )
    db.session.commit()
    return device.id, row.id


def _row(h, row_id):
    return next(r for r in h.rows() if r.id == row_id)


def test_success_carries_the_key_as_tag_and_collapse_id_and_only_the_deep_link(fcm, make, h):
    device_id, row_id = _device_and_row(make, h, "ok-device-1")
    counts = dispatch_due(sender=fcm.sender())
    assert counts == {"claimed": 1, "sent": 1}
    row = _row(h, row_id)
    assert row.status == "sent"
    (request,) = fcm.requests
    # Signed by the service account's key (a self-signed JWT outside Google's universe).
    scheme, _, token = request["authorization"].partition(" ")
    claims = jwt.decode(token, fcm.public_key, algorithms=["RS256"], options={"verify_aud": False})
    assert scheme == "Bearer" and claims["iss"] == f"push@{PROJECT}.iam.gserviceaccount.com"
    message = request["body"]["message"]
    assert message["token"] == "ok-device-1"
    assert message["notification"] == {"title": "Tijd om te oefenen", "body": "Een paar minuten?"}
    assert message["data"] == {"link": "/today"}
    assert message["android"]["notification"]["tag"] == row.idempotency_key
    assert message["apns"]["headers"]["apns-collapse-id"] == row.idempotency_key
    assert message["webpush"]["notification"]["tag"] == row.idempotency_key
    assert len(json.dumps(message["data"]).encode()) < 4096


def test_unregistered_deactivates_the_device(fcm, make, h):
    device_id, row_id = _device_and_row(make, h, "unregistered-device")
    dispatch_due(sender=fcm.sender())
    row = _row(h, row_id)
    assert row.status == "skipped"
    assert "Unregistered" in row.last_error
    device = db.session.get(Device, device_id)
    db.session.refresh(device)
    assert device.is_active is False


def test_unavailable_is_retried_later(fcm, make, h):
    _, row_id = _device_and_row(make, h, "unavailable-device")
    sender = fcm.sender()
    dispatch_due(sender=sender)
    row = _row(h, row_id)
    assert row.status == "scheduled"
    assert row.due_at > h.clock.now()
    assert "unavailable" in row.last_error.lower()
    assert len(fcm.requests) == 1  # the queue retries, not firebase-admin in a sleeping loop
    h.clock.set(row.due_at)
    dispatch_due(sender=sender)
    assert len(fcm.requests) == 2
    assert _row(h, row_id).attempts == 2


def test_429_with_retry_after_waits_at_least_that_long(fcm, make, h):
    _, row_id = _device_and_row(make, h, "quota-device")
    dispatch_due(sender=fcm.sender())
    row = _row(h, row_id)
    assert row.status == "scheduled"
    assert row.due_at - h.clock.now() >= timedelta(seconds=300)
    assert "QuotaExceeded" in row.last_error
    assert len(fcm.requests) == 1


def test_invalid_argument_fails_without_retry(fcm, make, h):
    device_id, row_id = _device_and_row(make, h, "invalid-device")
    dispatch_due(sender=fcm.sender())
    row = _row(h, row_id)
    assert row.status == "failed"
    assert "InvalidArgument" in row.last_error
    h.clock.advance(hours=2)
    dispatch_due(sender=fcm.sender())
    assert len(fcm.requests) == 1
    assert db.session.get(Device, device_id).is_active is True


def test_an_invalid_registration_token_deactivates_the_device(fcm, make, h):
    device_id, row_id = _device_and_row(make, h, "badtoken-device")
    dispatch_due(sender=fcm.sender())
    assert _row(h, row_id).status == "skipped"  # its only device is gone: nothing to retry
    device = db.session.get(Device, device_id)
    db.session.refresh(device)
    assert device.is_active is False
    h.clock.advance(hours=2)
    dispatch_due(sender=fcm.sender())
    assert len(fcm.requests) == 1


def test_quota_exceeded_without_retry_after_waits_at_least_a_minute(fcm, make, h):
    _, row_id = _device_and_row(make, h, "quotanowait-device")
    dispatch_due(sender=fcm.sender())
    row = _row(h, row_id)
    assert row.status == "scheduled"
    assert row.due_at - h.clock.now() >= timedelta(minutes=1)
    h.clock.advance(seconds=59)
    dispatch_due(sender=fcm.sender())
    assert len(fcm.requests) == 1


def test_one_good_device_is_enough_and_the_dead_one_goes(fcm, make, h):
    patient = make.patient()
    h.device(patient, token="ok-phone")
    dead = h.device(patient, token="unregistered-tablet", platform="ios").id
    service.enqueue(
        recipient_id=patient.id,
        category="message",
        key="message:two-devices",
        title={"nl": "t", "en": "t"},
        body={"nl": "b", "en": "b"},
    )
    db.session.commit()
    dispatch_due(sender=fcm.sender())
    assert h.rows()[0].status == "sent"
    db.session.expire_all()
    assert db.session.get(Device, dead).is_active is False


def test_send_each_gets_batches_of_at_most_500(fcm, monkeypatch, app):
    from firebase_admin import messaging

    sizes = []
    real = messaging.send_each

    def spy(messages, dry_run=False, app=None):
        sizes.append(len(messages))
        return real(messages, dry_run=dry_run, app=app)

    monkeypatch.setattr(messaging, "send_each", spy)
    messages = [
        PushMessage(f"n{i}", f"key-{i}", f"d{i}", f"ok-{i}", "android", "t", "b", {"link": "/"})
        for i in range(501)
    ]
    results = fcm.sender().send(messages)
    assert sizes == [500, 1]
    assert len(results) == 501 and all(r.ok for r in results)


def test_an_oversized_payload_is_refused_before_sending(fcm, app):
    message = PushMessage("n", "k", "d", "ok-1", "android", "t", "b", {"link": "/" + "x" * 5000})
    (result,) = fcm.sender().send([message])
    assert result.kind == "permanent"
    assert fcm.requests == []


def test_firebase_is_initialised_only_for_push_sender_fcm(fcm, app):
    import firebase_admin

    with pytest.raises(ValueError):
        firebase_admin.get_app("coaching")  # the log sender never touches Firebase
    saved = dict(app.config), app.extensions.pop("push_sender", None)
    app.config.update(PUSH_SENDER="fcm", FIREBASE_CREDENTIALS=fcm.path)
    try:
        sender = get_sender()
        assert isinstance(sender, FcmSender)
        assert sender.app.name == "coaching"
        assert sender.app.project_id == PROJECT
    finally:
        app.config.clear()
        app.config.update(saved[0])
        app.extensions.pop("push_sender", None)
        firebase_admin.delete_app(firebase_admin.get_app("coaching"))


def test_an_unreadable_retry_after_costs_no_second_push_to_the_good_device(fcm, make, h):
    patient = make.patient()
    h.device(patient, token="ok-phone")
    h.device(patient, token="oddretry-tablet", platform="ios")
    service.enqueue(
        recipient_id=patient.id,
        category="message",
        key="message:odd-retry-after",
        title={"nl": "t", "en": "t"},
        body={"nl": "b", "en": "b"},
    )
    db.session.commit()
    sender = fcm.sender()
    assert dispatch_due(sender=sender) == {"claimed": 1, "sent": 1}
    h.clock.advance(hours=2)
    dispatch_due(sender=sender)
    phone = [r for r in fcm.requests if r["body"]["message"]["token"] == "ok-phone"]
    assert len(phone) == 1


def test_a_failing_chunk_leaves_the_results_of_the_chunks_sent_before_it(fcm, monkeypatch, app):
    from firebase_admin import exceptions, messaging

    real = messaging.send_each
    calls = []

    def second_fails(messages, dry_run=False, app=None):
        calls.append(len(messages))
        if len(calls) == 2:
            raise exceptions.UnknownError("connection pool broke")
        return real(messages, dry_run=dry_run, app=app)

    monkeypatch.setattr(messaging, "send_each", second_fails)
    messages = [
        PushMessage(f"n{i}", f"key-{i}", f"d{i}", f"ok-{i}", "android", "t", "b", {"link": "/"})
        for i in range(501)
    ]
    results = fcm.sender().send(messages)
    assert [r.kind for r in results] == ["ok"] * 500 + ["transient"]


def test_a_send_to_fcm_ends_well_within_the_dispatchers_lease(fcm, app):
    """firebase-admin waits 120 s for an answer by default, as long as the lease: a slow FCM
    would let another dispatcher claim the rows still being sent and push them again."""
    import firebase_admin
    from firebase_admin import messaging

    from coaching.notifications.dispatch import setting

    saved = dict(app.config), app.extensions.pop("push_sender", None)
    app.config.update(PUSH_SENDER="fcm", FIREBASE_CREDENTIALS=fcm.path)
    try:
        sender = get_sender()
        timeout = messaging._get_messaging_service(sender.app)._client.timeout
        # One connection retry (the transport's own) and the answer: three waits at most.
        assert timeout and 3 * timeout < setting("PUSH_LEASE_SECONDS")
    finally:
        app.config.clear()
        app.config.update(saved[0])
        app.extensions.pop("push_sender", None)
        firebase_admin.delete_app(firebase_admin.get_app("coaching"))
