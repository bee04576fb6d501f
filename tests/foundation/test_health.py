"""`/healthz`, and the OpenAPI document and docs with their static assets."""

from __future__ import annotations

import json
import socket

from tests.conftest import assert_error


def test_healthz_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "ok"}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed


def test_healthz_503_when_postgresql_is_unreachable(make_app):
    url = f"postgresql://postgres@127.0.0.1:{_closed_port()}/nothing"
    app = make_app({"SQLALCHEMY_DATABASE_URI": url})
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json() == {"status": "degraded", "database": "unavailable"}


def test_healthz_503_when_the_sqlite_folder_is_missing(make_app, tmp_path):
    app = make_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'missing' / 'x.db'}"})
    client = app.test_client()
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["database"] == "unavailable"
    # An API call needing the database answers 503 in the error shape too, never 500.
    response = client.post(
        "/api/v1/auth/token", json={"email": "a@example.test", "password": "whatever-123"}
    )
    assert_error(response, 503)
    assert response.headers["Retry-After"]
    # And the health check recovers by itself once the database is back.
    (tmp_path / "missing").mkdir()
    assert client.get("/healthz").status_code == 200


def test_openapi_document_describes_the_foundation(client):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    spec = response.get_json()
    assert spec["openapi"].startswith("3.")
    assert spec["info"]["title"] == "Coaching API"
    paths = spec["paths"]
    for path, method in [
        ("/api/v1/auth/token", "post"),
        ("/api/v1/auth/refresh", "post"),
        ("/api/v1/auth/logout", "post"),
        ("/api/v1/me", "get"),
        ("/api/v1/me", "patch"),
        ("/api/v1/practices", "post"),
        ("/api/v1/practices", "get"),
        ("/api/v1/practices/{practice_id}/therapists", "post"),
        ("/api/v1/practices/{practice_id}/therapists", "get"),
        ("/api/v1/invites", "post"),
        ("/api/v1/invites", "get"),
        ("/api/v1/invites/{code}", "get"),
        ("/api/v1/invites/{code}", "delete"),
        ("/api/v1/patients", "post"),
        ("/api/v1/consent", "get"),
        ("/api/v1/me/consent", "post"),
    ]:
        assert method in paths[path], (path, method)
    assert "bearerAuth" in spec["components"]["securitySchemes"]
    assert paths["/api/v1/me"]["get"]["security"] == [{"bearerAuth": []}]
    assert "security" not in paths["/api/v1/invites/{code}"]["get"]


def test_docs_page_and_its_static_assets(client):
    page = client.get("/api/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "/api/docs/static/swagger-ui-bundle.js" in html
    assert "/api/openapi.json" in html
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "swagger-ui-standalone-preset.js"):
        response = client.get(f"/api/docs/static/{asset}")
        assert response.status_code == 200, asset
        assert len(response.data) > 1000
        response.close()
    assert client.get("/api/docs/static/no-such-file.js").status_code == 404
    assert client.get("/api/docs/static/../../wsgi.py").status_code == 404


def test_openapi_documents_the_pagination_header_that_is_sent(client, make):
    """X-Pagination as API.md has it (total, total_pages, page, page_size), not smorest's own
    fields; and an object's size limit as maxProperties (maxLength is for strings)."""
    spec = client.get("/api/openapi.json").get_json()
    documented = spec["components"]["headers"]["PAGINATION"]["schema"]
    assert "PaginationMetadata" not in spec["components"].get("schemas", {})
    owner = make.owner()
    response = client.get("/api/v1/practices", headers=make.headers(owner))
    sent = json.loads(response.headers["X-Pagination"])
    assert set(sent) == set(documented["properties"]) == set(documented["required"])
    progress = spec["paths"]["/api/v1/lessons/{lesson_id}/progress"]["put"]["requestBody"]
    ref = progress["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    answers = spec["components"]["schemas"][ref]["properties"]["answers"]
    assert answers["maxProperties"] == 50 and "maxLength" not in answers
