"""Fixtures of the trust tests: the OpenAPI document, one object of every kind that the paths
name, and a dozen forged access tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import timedelta
from types import SimpleNamespace

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select

from coaching.accounts.models import LoginSession
from coaching.extensions import db
from tests.media.fixtures import live_server, s3, s3_server, sample_videos  # noqa: F401

API = "/api/v1"
METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture(scope="session")
def spec(app) -> dict:
    """The service's OpenAPI document, as clients read it."""
    return app.test_client().get("/api/openapi.json").get_json()


def operations(spec: dict) -> dict[str, dict]:
    """Returns "METHOD /path" → the operation, for every operation of the document."""
    return {
        f"{method.upper()} {path}": op
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if method in METHODS
    }


@pytest.fixture
def objects(client, world, make, clock):
    """One object of every kind a path names, belonging to `world.patient` (and their
    therapist), made through the API where the API can make it."""
    from coaching.notifications import service as notifications
    from coaching.outcomes.models import OutcomeAlert

    h = world.h
    conversation = client.get(f"{API}/conversations", headers=h["patient"]).get_json()[0]
    message = client.post(
        f"{API}/conversations/{conversation['id']}/messages",
        json={"kind": "text", "body": "Hallo"},
        headers=h["patient"],
    ).get_json()
    cycle = client.post(
        f"{API}/conversations/{conversation['id']}/cycles",
        json={"activity": "Tuinieren"},
        headers=h["patient"],
    ).get_json()
    device = client.post(
        f"{API}/me/devices", json={"token": "tok-patient", "platform": "ios"}, headers=h["patient"]
    ).get_json()
    appointment = client.post(
        f"{API}/patients/{world.patient.id}/appointments",
        json={"kind": "in_person", "starts_at": "2026-03-05T10:00:00Z"},
        headers=h["therapist"],
    ).get_json()
    export = client.post(f"{API}/me/export", headers=h["patient"]).get_json()
    notification = notifications.enqueue(
        recipient_id=world.patient.id,
        category="practice",
        key=f"practice:{world.patient.id}:matrix",
        title={"nl": "t", "en": "t"},
        body={"nl": "b", "en": "b"},
        data={"link": "/today"},
    )
    alert = OutcomeAlert(
        patient_id=world.patient.id,
        therapist_id=world.therapist.id,
        kind="pain",
        score="nrs.back_pain",
        source="response",
        timepoint="month3",
        baseline_value=4,
        value=7,
        change=3,
        created_at=clock.now(),
    )
    db.session.add(alert)
    db.session.commit()
    invite = make.invite(world.therapist)
    programme = client.get(f"{API}/me/programme", headers=h["patient"]).get_json() or {}
    lessons = [
        lesson["id"] for module in programme.get("modules", []) for lesson in module["lessons"]
    ]
    for name, made in {
        "conversation": conversation,
        "message": message,
        "cycle": cycle,
        "device": device,
        "appointment": appointment,
        "export": export,
    }.items():
        assert "id" in made, (name, made)
    params = {
        "patient_id": world.patient.id,
        "practice_id": world.practice_a.id,
        "conversation_id": conversation["id"],
        "message_id": message["id"],
        "cycle_id": cycle["id"],
        "device_id": device["id"],
        "appointment_id": appointment["id"],
        "export_id": export["id"],
        "notification_id": notification.id,
        "alert_id": alert.id,
        "code": invite.code,
        "lesson_id": lessons[0] if lessons else "no-lesson-loaded",
        "key": "nrs",
    }
    return SimpleNamespace(params=params)


# --- forged access tokens ----------------------------------------------------------------------


def _b64(data) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def forged_tokens(app, account, clock) -> dict[str, str]:
    """Returns a dozen access tokens an attacker might try, each for a real account and its
    live login session, by name: none of them may be accepted."""
    secret = app.config["SECRET_KEY"]
    session_id = (
        db.session.execute(select(LoginSession.id).where(LoginSession.account_id == account.id))
        .scalars()
        .first()
    )
    now = int(clock.now().timestamp())
    claims = {
        "sub": account.id,
        "role": account.role,
        "sid": session_id,
        "typ": "access",
        "aud": app.config["JWT_AUDIENCE"],
        "iss": app.config["JWT_ISSUER"],
        "iat": now,
        "nbf": now,
        "exp": now + 900,
        "jti": "forged",
    }
    kid = {"kid": app.config["JWT_KEY_ID"]}

    def hs(changes=None, *, key=secret, alg="HS256", headers=kid):
        return jwt.encode({**claims, **(changes or {})}, key, algorithm=alg, headers=headers)

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = _b64({"alg": "HS256", "typ": "JWT", **kid})
    body = _b64(claims)
    confused = hmac.new(public_pem, f"{header}.{body}".encode(), hashlib.sha256).digest()
    hour = int(timedelta(hours=1).total_seconds())
    return {
        "alg_none": f"{_b64({'alg': 'none', 'typ': 'JWT', **kid})}.{body}.",
        "alg_none_signed": f"{_b64({'alg': 'none', **kid})}.{body}.{_b64(b'x')}",
        "rs256_own_key": jwt.encode(claims, rsa_key, algorithm="RS256", headers=kid),
        "hs_rs_confusion": f"{header}.{body}.{_b64(confused)}",
        "hs512": hs(alg="HS512", key=secret * 2),
        "wrong_secret": hs(key="another-secret-that-is-long-enough-0123456789"),
        "wrong_audience": hs({"aud": "someone-else"}),
        "wrong_issuer": hs({"iss": "someone-else"}),
        "wrong_type": hs({"typ": "refresh"}),
        "expired": hs({"iat": now - 2 * hour, "nbf": now - 2 * hour, "exp": now - hour}),
        "not_yet_valid": hs({"nbf": now + hour, "exp": now + 2 * hour}),
        "unknown_key_id": hs(headers={"kid": "k-unknown"}),
        "other_session": hs({"sid": "00000000-0000-0000-0000-000000000000"}),
        "tampered_role": _tamper(hs(), {"role": "owner"}),
    }


def _tamper(token: str, changes: dict) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return f"{header}.{_b64({**claims, **changes})}.{signature}"


def pytest_terminal_summary(terminalreporter):
    """Print how much the fuzzing sent and what it got back."""
    from tests.trust.test_fuzz import COUNTS

    if COUNTS:
        statuses = ", ".join(
            f"{key.split()[1]}: {n}"
            for key, n in sorted(COUNTS.items())
            if key.startswith("status")
        )
        terminalreporter.write_line(
            f"schemathesis: {COUNTS['examples']} examples, {COUNTS['requests']} requests "
            f"({statuses})"
        )


@pytest.fixture
def other_app(tmp_path, clock):
    """Returns a factory of further apps with their own settings (e.g. production, CORS).

    `api` and `limiter` are module-level singletons that `init_app` rebinds to the newest app;
    they are put back afterwards so that the session's app keeps working.
    """
    from coaching import create_app
    from coaching.extensions import api, limiter

    saved_api = (api._app, api.config, api.spec)
    saved_limiter = (limiter._storage, limiter._limiter, limiter._storage_uri)
    made = []

    def factory(overrides: dict | None = None):
        settings = {
            "ENV": "testing",
            "TESTING": True,
            "SECRET_KEY": "another-test-secret-key-0123456789-abcdefgh",
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'other.db'}",
            "MEDIA_ROOT": str(tmp_path / "media"),
            "ARGON2_MEMORY_KIB": 1024,
            "ARGON2_TIME_COST": 1,
            "RATELIMIT_STORAGE_URI": "memory://",
            "SCHEDULER_IN_PROCESS": "false",
            **(overrides or {}),
        }
        new = create_app(settings, clock=clock)
        made.append(new)
        return new

    yield factory
    for new in made:
        with new.app_context():
            db.session.remove()
            db.engine.dispose()
    api._app, api.config, api.spec = saved_api
    limiter._storage, limiter._limiter, limiter._storage_uri = saved_limiter
