"""Rate limits on sign-in, refresh, the invite look-up and registration; and the same limits kept
in Redis (the storage several instances share) when `TEST_REDIS_URL` is set."""

from __future__ import annotations

import os
import uuid

import pytest

from coaching.accounts import service as accounts
from coaching.extensions import db, limiter
from tests.conftest import PASSWORD, assert_error


def _from(address: str) -> dict:
    return {"environ_base": {"REMOTE_ADDR": address}}


def _fail_login(client, email: str, address: str = "127.0.0.1"):
    return client.post(
        "/api/v1/auth/token", json={"email": email, "password": "wrong-password"}, **_from(address)
    )


def _assert_429(response):
    body = assert_error(response, 429)
    assert "too many" in body["message"].lower()
    assert int(response.headers["Retry-After"]) > 0


def test_repeated_login_failures_are_429_with_retry_after(client, people):
    email = people.owner.email
    for _ in range(10):
        assert_error(_fail_login(client, email), 401)
    _assert_429(_fail_login(client, email))
    # Now even the right password waits: guessing is what is being slowed down.
    right = client.post("/api/v1/auth/token", json={"email": email, "password": PASSWORD})
    _assert_429(right)


def test_failures_against_one_email_are_limited_across_addresses(client, people):
    email = people.owner.email
    for n in range(10):
        assert_error(_fail_login(client, email, f"10.0.0.{n}"), 401)
    _assert_429(_fail_login(client, email, "10.0.1.1"))
    # Another account from a fresh address is not affected.
    other = client.post(
        "/api/v1/auth/token",
        json={"email": people.therapist.email, "password": PASSWORD},
        **_from("10.0.2.1"),
    )
    assert other.status_code == 200


def test_failures_from_one_address_are_limited_across_emails(client, people):
    for n in range(10):
        assert_error(_fail_login(client, f"nobody{n}@example.test", "10.9.9.9"), 401)
    _assert_429(_fail_login(client, "someone.else@example.test", "10.9.9.9"))
    assert_error(_fail_login(client, "someone.else@example.test", "10.9.9.10"), 401)


def test_successful_logins_do_not_count(client, people):
    email = people.owner.email
    for _ in range(15):
        response = client.post("/api/v1/auth/token", json={"email": email, "password": PASSWORD})
        assert response.status_code == 200
        # Retry-After is for refusals (429, 503): on a 200 it would tell a client to wait.
        assert "Retry-After" not in response.headers
        assert "X-RateLimit-Limit" in response.headers


def test_refresh_is_limited(client, people):
    for _ in range(30):
        assert_error(client.post("/api/v1/auth/refresh", json={"refresh_token": "nope"}), 401)
    _assert_429(client.post("/api/v1/auth/refresh", json={"refresh_token": "nope"}))


def test_invite_look_up_is_limited_per_address(client, make, people):
    code = make.invite(people.therapist).code
    for n in range(20):
        path = f"/api/v1/invites/{code}" if n % 2 else "/api/v1/invites/ZZZZZZZZZZ"
        assert client.get(path, **_from("10.1.1.1")).status_code in (200, 404)
    _assert_429(client.get(f"/api/v1/invites/{code}", **_from("10.1.1.1")))
    assert client.get(f"/api/v1/invites/{code}", **_from("10.1.1.2")).status_code == 200
    # Revoking (the therapist's DELETE on the same path) is not limited by look-ups.
    response = client.delete(
        f"/api/v1/invites/{code}", headers=people.h["therapist"], **_from("10.1.1.1")
    )
    assert response.status_code == 204


def test_registration_is_limited_per_address(client):
    body = {
        "invite_code": "ZZZZZZZZZZ",
        "email": "p@example.test",
        "password": PASSWORD,
        "display_name": "P",
        "locale": "nl",
        "timezone": "Europe/Amsterdam",
    }
    for _ in range(10):
        assert_error(client.post("/api/v1/patients", json=body, **_from("10.2.2.2")), 404)
    _assert_429(client.post("/api/v1/patients", json=body, **_from("10.2.2.2")))
    assert_error(client.post("/api/v1/patients", json=body, **_from("10.2.2.3")), 404)


def test_limits_come_from_the_settings(client, app, monkeypatch, people):
    monkeypatch.setitem(app.config, "RATELIMIT_LOGIN", "2 per minute")
    email = people.owner.email
    for _ in range(2):
        assert_error(_fail_login(client, email), 401)
    _assert_429(_fail_login(client, email))


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("TEST_REDIS_URL")
    if not url:
        pytest.skip("TEST_REDIS_URL is not set (e.g. redis://127.0.0.1:6379/0); .ci/run sets it")
    return url


def test_limits_are_kept_in_redis(redis_url, make_app):
    import redis

    prefix = f"test-foundation-{uuid.uuid4().hex}"
    server = redis.Redis.from_url(redis_url)
    app = make_app({"RATELIMIT_STORAGE_URI": redis_url, "RATELIMIT_KEY_PREFIX": prefix})
    try:
        assert type(limiter._storage).__name__.lower().startswith("redis")
        with app.app_context():
            db.create_all()
            accounts.create_owner(email="boss@example.test", password=PASSWORD)
            db.session.commit()
        client = app.test_client()
        for _ in range(10):
            assert_error(_fail_login(client, "boss@example.test"), 401)
        keys = [key.decode() for key in server.scan_iter(match=f"*{prefix}*")]
        assert keys, "no rate-limit counters were written to Redis"
        counts = [int(server.get(key)) for key in keys if server.type(key) == b"string"]
        assert 10 in counts
        # A second instance sharing the storage sees the same counts: a new client, new app.
        second = make_app({"RATELIMIT_STORAGE_URI": redis_url, "RATELIMIT_KEY_PREFIX": prefix})
        with second.app_context():
            db.create_all()
        _assert_429(_fail_login(second.test_client(), "boss@example.test"))
    finally:
        for key in server.scan_iter(match=f"*{prefix}*"):
            server.delete(key)
        server.close()
