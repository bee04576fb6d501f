"""Faults of the outside services, made real with a TCP proxy that the test cuts and restores:

- PostgreSQL unreachable → `/healthz` and every request answer a clear 503; once it is back the
  same app serves again, without a restart (the pool tests connections before use);
- the S3 store unreachable → video upload slots fail with 503 and leave nothing half-made; a
  completed upload waits in `awaiting_upload` and completes once the store is back;
- FCM unreachable → notifications stay in the queue and are sent once when it is back.

The PostgreSQL test needs a PostgreSQL server (the one of `COACHING_TEST_DATABASE_URL`, or
127.0.0.1:5432) and uses a database of its own; the server itself is never stopped.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from coaching.extensions import db
from tests.conftest import PASSWORD, assert_error
from tests.trust.proxy import CuttableProxy

DEFAULT_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


# --- PostgreSQL --------------------------------------------------------------------------------


def _server_url():
    raw = os.environ.get("COACHING_TEST_DATABASE_URL")
    url = make_url(raw.replace("postgresql://", "postgresql+psycopg://", 1)) if raw else None
    return url or make_url(DEFAULT_SERVER)


@pytest.fixture
def fault_database():
    """A database of this test's own on the PostgreSQL server (skipped without a server)."""
    server = _server_url()
    name = "test_privacy_faults" + (
        f"_{os.environ['PYTEST_XDIST_WORKER']}" if os.environ.get("PYTEST_XDIST_WORKER") else ""
    )
    admin = create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
            ).first()
            if not exists:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # no server here: nothing to cut
        admin.dispose()
        pytest.skip(f"no PostgreSQL server: {exc}")
    admin.dispose()
    return server.set(database=name)


def _build_schema(app) -> None:
    from flask_migrate import upgrade

    with app.app_context():
        with db.engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        upgrade()


def test_database_down_gives_503_and_recovery_needs_no_restart(other_app, fault_database):
    proxy = CuttableProxy(fault_database.host or "127.0.0.1", fault_database.port or 5432)
    try:
        via_proxy = fault_database.set(host="127.0.0.1", port=proxy.port)
        app = other_app(
            {"SQLALCHEMY_DATABASE_URI": via_proxy.render_as_string(hide_password=False)}
        )
        _build_schema(app)
        with app.app_context():
            from coaching.accounts import service

            service.create_owner(email="owner@example.test", password=PASSWORD)
            db.session.commit()
            db.session.remove()
        client = app.test_client()
        assert client.get("/healthz").get_json() == {"status": "ok", "database": "ok"}
        login = client.post(
            "/api/v1/auth/token", json={"email": "owner@example.test", "password": PASSWORD}
        )
        headers = {"Authorization": f"Bearer {login.get_json()['access_token']}"}
        assert client.get("/api/v1/practices", headers=headers).status_code == 200

        proxy.cut()
        health = client.get("/healthz")
        assert health.status_code == 503
        assert health.get_json() == {"status": "degraded", "database": "unavailable"}
        for response in (
            client.get("/api/v1/practices", headers=headers),
            client.post("/api/v1/practices", json={"name": "P", "city": "C"}, headers=headers),
            client.post(
                "/api/v1/auth/token", json={"email": "owner@example.test", "password": PASSWORD}
            ),
        ):
            body = assert_error(response, 503, contains="database")
            assert int(response.headers["Retry-After"]) > 0
            assert set(body) == {"code", "status", "message"}

        proxy.restore()
        assert client.get("/healthz").status_code == 200
        created = client.post(
            "/api/v1/practices", json={"name": "Na de storing", "city": "Delft"}, headers=headers
        )
        assert created.status_code == 201
        listed = client.get("/api/v1/practices", headers=headers).get_json()
        assert [p["name"] for p in listed] == ["Na de storing"]
    finally:
        proxy.cut()


# --- S3 ------------------------------------------------------------------------------------------


@pytest.fixture
def s3_behind_proxy(app, s3, monkeypatch):
    """The loopback S3 store, reached through a proxy the test can cut."""
    from urllib.parse import urlsplit

    target = urlsplit(s3.server.url)
    proxy = CuttableProxy(target.hostname, target.port)
    monkeypatch.setitem(app.config, "S3_ENDPOINT_URL", f"http://{proxy.address}")
    yield proxy
    proxy.cut()


def _messages(conversation_id):
    from coaching.messaging.models import Message

    db.session.expire_all()
    return (
        db.session.execute(select(Message).where(Message.conversation_id == conversation_id))
        .scalars()
        .all()
    )


def _start_video(client, headers, conversation_id, size=4096):
    return client.post(
        f"/api/v1/conversations/{conversation_id}/messages",
        json={"kind": "video", "content_type": "video/mp4", "size_bytes": size},
        headers=headers,
    )


def test_an_unreachable_store_fails_upload_slots_cleanly(
    client, world, s3, s3_behind_proxy, monkeypatch, sample_videos
):
    from coaching.media.models import MediaDeletion
    from tests.media.fixtures import upload_with_requests

    h = world.h["patient"]
    conversation = client.get("/api/v1/conversations", headers=h).get_json()[0]["id"]
    # Credentials fetched from the platform (as on ECS/EKS) while it cannot be reached: the
    # upload slot cannot be signed.
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    s3_behind_proxy.cut()
    monkeypatch.setenv(
        "AWS_CONTAINER_CREDENTIALS_FULL_URI", f"http://{s3_behind_proxy.address}/creds"
    )
    monkeypatch.setenv("AWS_METADATA_SERVICE_NUM_ATTEMPTS", "1")
    from flask import current_app

    current_app.extensions.pop("media_storage", None)  # a new client sees the environment
    refused = _start_video(client, h, conversation)
    assert_error(refused, 503, contains="store")
    assert _messages(conversation) == []  # nothing half-created

    # With static keys the slot is signed offline; the store is still down at completion.
    from tests.media.s3server import ACCESS_KEY, SECRET_KEY

    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    current_app.extensions.pop("media_storage", None)
    path, content_type = sample_videos["mp4"]
    s3_behind_proxy.restore()
    started = _start_video(client, h, conversation, size=path.stat().st_size)
    assert started.status_code == 201
    message = started.get_json()
    assert upload_with_requests(message["upload"], path).status_code in (200, 204)
    s3_behind_proxy.cut()
    completing = client.post(f"/api/v1/messages/{message['id']}/complete", headers=h)
    assert_error(completing, 503, contains="store")
    (row,) = _messages(conversation)
    assert row.status == "awaiting_upload" and row.completed_at is None
    assert db.session.execute(select(MediaDeletion)).first() is None

    s3_behind_proxy.restore()
    done = client.post(f"/api/v1/messages/{message['id']}/complete", headers=h)
    assert done.status_code == 200 and done.get_json()["status"] == "processing"


# --- FCM -----------------------------------------------------------------------------------------


@pytest.fixture
def fcm_behind_proxy(tmp_path, monkeypatch):
    """A local FCM v1 endpoint (see tests/notifications/test_fcm.py) behind a cuttable proxy."""
    import threading

    import firebase_admin
    from firebase_admin import messaging

    from tests.notifications.test_fcm import FakeFcm, FakeFcmServer, service_account_file

    FakeFcm.requests = []
    server = FakeFcmServer(("127.0.0.1", 0), FakeFcm)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proxy = CuttableProxy("127.0.0.1", server.server_address[1])
    base = f"http://{proxy.address}"
    monkeypatch.setattr(
        messaging._MessagingService, "FCM_URL", base + "/v1/projects/{0}/messages:send"
    )
    credentials = service_account_file(tmp_path, token_uri=base + "/token")
    from coaching.notifications.senders import FcmSender

    sender = FcmSender(str(credentials), app_name="trust-faults")
    yield proxy, sender, FakeFcm
    firebase_admin.delete_app(sender.app)
    proxy.cut()
    server.shutdown()
    server.server_close()


def _queue(make, n):
    from coaching.notifications import service

    patients = []
    for i in range(n):
        patient = make.patient()
        service.register_device(account=patient, token=f"ok-device-{i}", platform="android")
        service.enqueue(
            recipient_id=patient.id,
            category="practice",
            key=f"practice:{patient.id}:fault",
            title={"nl": "Oefenen", "en": "Practise"},
            body={"nl": "Even oefenen?", "en": "Practise a bit?"},
            data={"link": "/today"},
        )
        patients.append(patient)
    db.session.commit()
    return patients


def _rows():
    from coaching.notifications.models import Notification

    db.session.expire_all()
    return db.session.execute(select(Notification)).scalars().all()


def test_an_unreachable_fcm_loses_nothing_and_sends_once_when_back(make, clock, fcm_behind_proxy):
    from coaching.notifications.dispatch import dispatch_due

    proxy, sender, fake = fcm_behind_proxy
    proxy.cut()  # down from the start: not even an OAuth token can be fetched
    _queue(make, 5)
    for _ in range(3):
        try:
            dispatch_due(sender=sender)
        except Exception:  # noqa: S110  (a dispatcher may fail outright; the rows stay queued)
            db.session.rollback()
        rows = _rows()
        assert len(rows) == 5 and all(r.status == "scheduled" for r in rows)
        assert all(r.sent_at is None and r.due_at > clock.now() for r in rows)
        clock.set(max(r.due_at for r in rows) + timedelta(seconds=1))
    assert fake.requests == []

    proxy.restore()
    dispatch_due(sender=sender)
    rows = _rows()
    assert all(r.status == "sent" for r in rows)
    assert sorted(r["body"]["message"]["token"] for r in fake.requests) == [
        f"ok-device-{i}" for i in range(5)
    ]
    clock.advance(hours=1)
    assert dispatch_due(sender=sender) == {}
    assert len(fake.requests) == 5  # once each
