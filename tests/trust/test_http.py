"""Security headers, CORS for a dashboard on another origin, and the configurable body-size limit."""

from __future__ import annotations

import pytest

from tests.conftest import assert_error

ORIGIN = "https://dashboard.example.nl"


def test_json_answers_carry_the_security_headers(client, world):
    for response in (
        client.get("/api/v1/me", headers=world.h["patient"]),
        client.get("/api/v1/me"),  # errors too
    ):
        headers = response.headers
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["Referrer-Policy"] == "no-referrer"
        assert headers["Cache-Control"] == "no-store"
        assert headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"
        assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
        assert "camera=()" in headers["Permissions-Policy"]
        assert "Strict-Transport-Security" not in headers  # only in production (behind TLS)
        assert "Access-Control-Allow-Origin" not in headers  # no CORS unless configured


def test_pages_keep_their_own_content_security_policy(client):
    docs = client.get("/api/docs")
    assert docs.status_code == 200
    # The API's strict JSON policy is not forced on HTML pages (Swagger UI runs its scripts).
    assert (
        docs.headers.get("Content-Security-Policy") != "default-src 'none'; frame-ancestors 'none'"
    )
    assert docs.headers["X-Frame-Options"] == "DENY"


def test_production_adds_hsts(other_app):
    app = other_app({"ENV": "production", "ARGON2_MEMORY_KIB": 19456})
    response = app.test_client().get("/api/v1/consent")
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"


@pytest.fixture
def cors_client(other_app):
    app = other_app({"CORS_ORIGINS": f"{ORIGIN}, https://second.example.nl"})
    return app.test_client()


def test_cors_preflight_allows_the_configured_dashboard(cors_client):
    response = cors_client.options(
        "/api/v1/metrics/funnel",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "Authorization",
        },
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "authorization" in response.headers["Access-Control-Allow-Headers"].lower()
    assert "Access-Control-Allow-Credentials" not in response.headers  # bearer tokens, no cookies


def test_cors_exposes_the_pagination_header_to_the_dashboard(cors_client):
    response = cors_client.get("/api/v1/consent", headers={"Origin": ORIGIN})
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "X-Pagination" in response.headers["Access-Control-Expose-Headers"]


def test_cors_refuses_other_origins(cors_client):
    response = cors_client.get("/api/v1/consent", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in response.headers
    # The media upload and download URLs are not part of the dashboard's API.
    media = cors_client.get("/media/download/x", headers={"Origin": ORIGIN})
    assert "Access-Control-Allow-Origin" not in media.headers


def test_bodies_over_the_configured_limit_are_413(client, world, app, monkeypatch):
    monkeypatch.setitem(app.config, "MAX_CONTENT_LENGTH", 2048)
    big = {"name": "x" * 100, "city": "y" * 100, "pad": "z" * 3000}
    response = client.post("/api/v1/practices", json=big, headers=world.h["owner"])
    assert_error(response, 413)
    fits = client.post(
        "/api/v1/practices", json={"name": "P", "city": "C"}, headers=world.h["owner"]
    )
    assert fits.status_code == 201


def test_the_default_limit_is_one_mebibyte(client, world, app):
    assert app.config["MAX_CONTENT_LENGTH"] == 1024 * 1024
    body = '{"name": "' + "x" * (1024 * 1024) + '", "city": "c"}'
    response = client.post(
        "/api/v1/practices",
        data=body,
        headers={**world.h["owner"], "Content-Type": "application/json"},
    )
    assert_error(response, 413)


def test_video_uploads_have_their_own_limit_not_the_json_one(client, world, app, monkeypatch):
    from tests.media.fixtures import upload_with_test_client

    monkeypatch.setitem(app.config, "MAX_CONTENT_LENGTH", 1024)
    conversation = client.get("/api/v1/conversations", headers=world.h["patient"]).get_json()[0]
    data = b"\x00" * 50_000
    message = client.post(
        f"/api/v1/conversations/{conversation['id']}/messages",
        json={"kind": "video", "content_type": "video/mp4", "size_bytes": len(data)},
        headers=world.h["patient"],
    ).get_json()
    uploaded = upload_with_test_client(client, message["upload"], None, data=data)
    assert uploaded.status_code == 204
