"""Every error answers in the contract's shape `{code, status, message, errors?}`: routing errors,
malformed bodies, too large bodies, database faults and unexpected exceptions."""

from __future__ import annotations

import pytest
from flask import Blueprint

from coaching.errors import (
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
    error_body,
)
from tests.conftest import assert_error

JSON = {"Content-Type": "application/json"}


def test_unknown_route_is_404_in_the_error_shape(client):
    body = assert_error(client.get("/api/v1/no-such-thing"), 404)
    assert "errors" not in body
    assert_error(client.get("/nothing-here"), 404)


def test_wrong_method_is_405_with_allow(client):
    response = client.delete("/healthz")
    assert_error(response, 405)
    assert "GET" in response.headers["Allow"]
    response = client.put("/api/v1/auth/token", json={})
    assert_error(response, 405)
    assert "POST" in response.headers["Allow"]


def test_malformed_json_is_400_without_field_errors(client, people):
    for raw in ("{bad", '{"name": "x",}', "\xff", "{'name': 'x'}", "[" * 200000, "{" * 50000):
        response = client.post("/api/v1/practices", data=raw, headers={**people.h["owner"], **JSON})
        body = assert_error(response, 400)
        assert "json" in body["message"].lower()
        assert "errors" not in body  # `errors` only for validation


def test_invalid_utf8_is_400(client, people):
    response = client.post(
        "/api/v1/practices", data=b'{"name": "\xff\xfe"}', headers={**people.h["owner"], **JSON}
    )
    assert_error(response, 400)


def test_body_over_the_limit_is_413(client, people):
    raw = '{"name": "' + "x" * (1024 * 1024) + '", "city": "x"}'
    response = client.post("/api/v1/practices", data=raw, headers={**people.h["owner"], **JSON})
    assert_error(response, 413)


def test_validation_errors_name_the_field(client, people):
    response = client.post(
        "/api/v1/practices", json={"name": 5, "extra": 1}, headers=people.h["owner"]
    )
    body = assert_error(response, 422, field="name")
    assert set(body["errors"]) == {"name", "city", "extra"}
    assert body["errors"]["extra"] == ["Unknown field."]


def test_nested_errors_are_named_by_their_dotted_path(client, people):
    h = people.h["patient"]
    response = client.put(
        "/api/v1/me/reminder-settings",
        json={"daily_time": "19:00", "quiet_hours": {"start": "25:00", "end": "07:00"}},
        headers=h,
    )
    body = assert_error(response, 422, field="quiet_hours.start")
    response = client.post(
        "/api/v1/me/questionnaires/nrs/responses",
        json={"answers": {"x" * 60: 1, "back_pain": 3, "leg_pain": 2}},
        headers=h,
    )
    body = assert_error(response, 422, field="answers." + "x" * 60)
    assert list(body["errors"]) == ["answers." + "x" * 60]


def test_security_headers_on_answers(client):
    response = client.get("/api/v1/nothing")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (Unauthorized(), 401),
        (Forbidden(), 403),
        (NotFound(), 404),
        (Conflict(), 409),
        (PayloadTooLarge(), 413),
        (UnsupportedMediaType(), 415),
        (ValidationFailed.field("when", "Not a date."), 422),
        (ServiceUnavailable(), 503),
    ],
)
def test_domain_errors_map_to_their_status(app, error, code):
    with app.test_request_context():
        handler = app.error_handler_spec[None][None]
        response = app.make_response(_handle(handler, error))
    assert response.status_code == code
    body = response.get_json()
    assert body["code"] == code and body["status"] and body["message"]
    if code == 422:
        assert body["errors"] == {"when": ["Not a date."]}
        assert "when" in body["message"]
    else:
        assert "errors" not in body
    if code == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def _handle(handlers, error):
    for cls in type(error).__mro__:
        if cls in handlers:
            return handlers[cls](error)
    raise AssertionError(f"no handler for {type(error)}")


def test_error_body_for_an_unknown_status():
    assert error_body(599, None) == {"code": 599, "status": "Error", "message": "Error"}


def test_unexpected_exception_is_500_in_the_error_shape(make_app, caplog):
    app = make_app()
    broken = Blueprint("broken", __name__)

    @broken.get("/broken")
    def explode():
        raise RuntimeError("secret detail")

    app.register_blueprint(broken)
    response = app.test_client().get("/broken")
    body = assert_error(response, 500)
    assert "secret detail" not in response.get_data(as_text=True)
    assert body["message"] == "Internal server error"
    assert any("unhandled error" in r.getMessage() for r in caplog.records)


def test_recursion_outside_json_is_still_a_500(make_app, caplog):
    app = make_app()
    broken = Blueprint("recursive", __name__)

    @broken.get("/recurse")
    def recurse():
        def down(n):
            return down(n + 1)

        return down(0)

    app.register_blueprint(broken)
    assert_error(app.test_client().get("/recurse"), 500)
