"""Bad input on every request body of the foundation: malformed JSON → 400; JSON that is not an
object, wrong types, null, unknown fields, oversized or unstorable strings and missing required
fields → 422 naming the field; nothing changes in the database and nothing answers 500."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from coaching.enrolment import service as enrolment
from coaching.extensions import db, limiter
from tests.conftest import PASSWORD, assert_error
from tests.foundation.conftest import table_counts


@dataclass
class Endpoint:
    method: str
    path: str  # may name {practice}
    role: str | None  # whose token is sent (None: anonymous)
    valid: dict  # a body that would succeed
    required: tuple[str, ...]
    strings: dict[str, int] = field(default_factory=dict)  # string field → its maximum length
    wrong_types: dict[str, list] = field(default_factory=dict)  # field → values of a wrong type


ENDPOINTS = {
    "login": Endpoint(
        "post",
        "/api/v1/auth/token",
        None,
        {"email": "{owner_email}", "password": PASSWORD},
        ("email", "password"),
        {"email": 254, "password": 200},
    ),
    "refresh": Endpoint(
        "post",
        "/api/v1/auth/refresh",
        None,
        {"refresh_token": "anything"},
        ("refresh_token",),
        {"refresh_token": 200},
    ),
    "logout": Endpoint(
        "post",
        "/api/v1/auth/logout",
        "therapist",
        {"refresh_token": "anything"},
        ("refresh_token",),
        {"refresh_token": 200},
    ),
    "patch_me": Endpoint(
        "patch",
        "/api/v1/me",
        "patient",
        {"display_name": "Name", "locale": "en", "timezone": "Europe/Amsterdam"},
        (),
        {"display_name": 120, "timezone": 64},
        {"locale": [1, True, ["nl"]]},
    ),
    "practice": Endpoint(
        "post",
        "/api/v1/practices",
        "owner",
        {"name": "Fysio", "city": "Delft"},
        ("name", "city"),
        {"name": 200, "city": 120},
    ),
    "therapist": Endpoint(
        "post",
        "/api/v1/practices/{practice}/therapists",
        "owner",
        {"email": "t@example.test", "display_name": "T", "password": PASSWORD},
        ("email", "display_name", "password"),
        {"email": 254, "display_name": 120, "password": 200},
    ),
    "invite": Endpoint(
        "post",
        "/api/v1/invites",
        "therapist",
        {"referral_source": "gp", "channel": "email", "expires_in_days": 30},
        ("referral_source", "channel"),
        {},
        {
            "referral_source": [1, True, ["gp"], {"a": "gp"}],
            "channel": [1, False, ["email"]],
            "expires_in_days": ["30", 30.5, True, [30], {"d": 30}],
        },
    ),
    "registration": Endpoint(
        "post",
        "/api/v1/patients",
        None,
        {
            "invite_code": "{invite_code}",
            "email": "new@example.test",
            "password": PASSWORD,
            "display_name": "New",
            "locale": "nl",
            "timezone": "Europe/Amsterdam",
        },
        ("invite_code", "email", "password", "display_name", "locale", "timezone"),
        {"invite_code": 40, "email": 254, "password": 200, "display_name": 120, "timezone": 64},
        {"locale": [1, ["nl"]]},
    ),
    "consent": Endpoint(
        "post",
        "/api/v1/me/consent",
        "new_patient",
        {"version": "{consent_version}", "video": True},
        ("version",),
        {"version": 20},
        {"video": ["maybe", [True], {"v": 1}, 2]},
    ),
}


def _cases(endpoint: Endpoint):
    """Yield (label, raw body or JSON value, field the error must name or None, status)."""
    yield "malformed", "{not json", None, 400
    yield "truncated", '{"a": ', None, 400
    yield "trailing-comma", '{"a": 1,}', None, 400
    for label, value in (("array", [endpoint.valid]), ("string", "x"), ("number", 5)):
        yield f"not-an-object-{label}", value, "_schema", 422
    yield "null-body", None, "_schema", 422
    yield "unknown-field", {**endpoint.valid, "is_admin": True}, "is_admin", 422
    for name in endpoint.required:
        yield f"missing-{name}", {k: v for k, v in endpoint.valid.items() if k != name}, name, 422
    for name in endpoint.valid:
        yield f"null-{name}", {**endpoint.valid, name: None}, name, 422
    for name, maximum in endpoint.strings.items():
        too_long = "x" * (maximum + 1)
        if name == "email":
            too_long = "x" * (maximum - 11) + "@example.test"
        yield f"oversized-{name}", {**endpoint.valid, name: too_long}, name, 422
        for label, value in (("int", 12345), ("bool", True), ("list", ["a"]), ("obj", {"a": 1})):
            yield f"type-{name}-{label}", {**endpoint.valid, name: value}, name, 422
        for label, value in (("nul", "a\u0000b"), ("surrogate", "a\ud800b")):
            yield f"unstorable-{name}-{label}", {**endpoint.valid, name: value}, name, 422
    for name, values in endpoint.wrong_types.items():
        for n, value in enumerate(values):
            yield f"type-{name}-{n}", {**endpoint.valid, name: value}, name, 422


def _fill(value, context: dict):
    if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
        return context.get(value[1:-1], value)
    return value


@pytest.mark.parametrize("name", list(ENDPOINTS))
def test_bad_bodies_are_refused_and_change_nothing(client, people, make, name):
    endpoint = ENDPOINTS[name]
    context = {
        "owner_email": people.owner.email,
        "invite_code": make.invite(people.therapist).code,
        "consent_version": enrolment.current_consent_version(),
        "practice": people.practice_a.id,
    }
    endpoint = Endpoint(
        endpoint.method,
        endpoint.path.format(**context),
        endpoint.role,
        {k: _fill(v, context) for k, v in endpoint.valid.items()},
        endpoint.required,
        endpoint.strings,
        endpoint.wrong_types,
    )
    headers = {"Content-Type": "application/json"}
    if endpoint.role:
        headers.update(people.h[endpoint.role])
    before = table_counts()
    checked = 0
    for label, body, field_name, status in _cases(endpoint):
        limiter.reset()  # some of these endpoints allow only a few requests a minute
        raw = body if isinstance(body, str) and status == 400 else json.dumps(body)
        response = getattr(client, endpoint.method)(endpoint.path, data=raw, headers=headers)
        assert response.status_code != 500, (label, response.get_json())
        assert response.status_code == status, (label, response.get_json())
        assert_error(response, status, field=field_name)
        checked += 1
    assert table_counts() == before
    assert checked > 8


def test_oversized_json_body_is_413_on_every_endpoint(client, people):
    raw = '{"x": "' + "y" * (1024 * 1024 + 1) + '"}'
    headers = {"Content-Type": "application/json"}
    for endpoint in ENDPOINTS.values():
        path = endpoint.path.replace("{practice}", "p")
        auth = people.h[endpoint.role] if endpoint.role else {}
        response = getattr(client, endpoint.method)(path, data=raw, headers={**headers, **auth})
        assert_error(response, 413)


def test_deeply_nested_json_is_400_everywhere(client, people):
    headers = {"Content-Type": "application/json"}
    for endpoint in ENDPOINTS.values():
        limiter.reset()
        path = endpoint.path.replace("{practice}", "p")
        auth = people.h[endpoint.role] if endpoint.role else {}
        response = getattr(client, endpoint.method)(
            path, data="[" * 100000 + "]" * 100000, headers={**headers, **auth}
        )
        assert_error(response, 400)


def test_bodies_that_are_not_json_are_415_and_change_nothing(client, people):
    """API.md: JSON in and out, 415 for a wrong media type. A JSON text sent as text/plain, or a
    form, was read as no body at all (`PATCH /me` answered 200 and changed nothing)."""
    auths = {e.role: people.h[e.role] if e.role else {} for e in ENDPOINTS.values()}
    db.session.commit()  # the people and their logins: counting rolls back first
    before = table_counts()
    checked = 0
    for endpoint in ENDPOINTS.values():
        path = endpoint.path.replace("{practice}", "p")
        auth = auths[endpoint.role]
        for content_type, body in (
            ("text/plain", json.dumps(endpoint.valid)),
            ("application/x-www-form-urlencoded", "name=x&city=y"),
        ):
            limiter.reset()
            response = getattr(client, endpoint.method)(
                path, data=body, headers={**auth, "Content-Type": content_type}
            )
            assert_error(response, 415)
            assert "JSON" in response.get_json()["message"]
            checked += 1
    assert checked > 8
    assert table_counts() == before
    # A request without a body needs no content type.
    assert client.get("/api/v1/me", headers=people.h["owner"]).status_code == 200
    assert client.post("/api/v1/auth/logout", headers=people.h["owner"]).status_code != 415
