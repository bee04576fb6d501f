"""The consent document, accepting it, and the consent gate on patient endpoints."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from coaching.enrolment import service
from coaching.enrolment.models import ConsentAcceptance
from coaching.extensions import db
from tests.conftest import START, assert_error
from tests.foundation.conftest import bearer, table_counts


@pytest.fixture
def consent_dir(tmp_path, monkeypatch):
    """Point the service at a folder of consent documents the test writes."""
    monkeypatch.setattr(service, "CONSENT_DIR", tmp_path)
    service._consent_documents.cache_clear()
    yield tmp_path
    service._consent_documents.cache_clear()


def _write(folder, version: str) -> None:
    for locale in ("nl", "en"):
        (folder / f"{version}.{locale}.md").write_text(f"{locale} text {version}", "utf-8")


# --- the document -------------------------------------------------------------------------------


def test_consent_document_in_dutch_by_default(client):
    response = client.get("/api/v1/consent")
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"version", "locale", "text"}
    assert body["locale"] == "nl" and body["version"] == service.current_consent_version()
    for heading in ("Wat we verzamelen", "Wie het ziet", "Hoe lang we het bewaren", "intrekt"):
        assert heading in body["text"]


def test_consent_document_in_english(client):
    by_query = client.get("/api/v1/consent?locale=en").get_json()
    assert by_query["locale"] == "en"
    for heading in ("What we collect", "Why we collect it", "Who sees it", "How long we keep it"):
        assert heading in by_query["text"]
    assert "How to withdraw" in by_query["text"]
    by_header = client.get("/api/v1/consent", headers={"Accept-Language": "en-US,en;q=0.8"})
    assert by_header.get_json() == by_query
    dutch = client.get("/api/v1/consent?locale=nl", headers={"Accept-Language": "en"}).get_json()
    assert dutch["locale"] == "nl" and dutch["version"] == by_query["version"]


def test_unknown_locale_is_422_and_an_unknown_language_falls_back_to_dutch(client):
    assert_error(client.get("/api/v1/consent?locale=de"), 422, field="locale")
    german = client.get("/api/v1/consent", headers={"Accept-Language": "de-DE"})
    assert german.get_json()["locale"] == "nl"


def test_consent_document_is_public_and_answers_signed_in_callers_too(client, people):
    assert client.get("/api/v1/consent", headers=people.h["new_patient"]).status_code == 200
    assert client.get("/api/v1/consent", headers=people.h["therapist"]).status_code == 200


def test_newest_version_wins_by_number(client, consent_dir):
    for version in ("1.0", "1.9", "1.10"):
        _write(consent_dir, version)
    assert service.current_consent_version() == "1.10"
    assert client.get("/api/v1/consent?locale=en").get_json() == {
        "version": "1.10",
        "locale": "en",
        "text": "en text 1.10",
    }


# --- accepting ----------------------------------------------------------------------------------


def test_accepting_the_current_version(client, people):
    headers = people.h["new_patient"]
    version = client.get("/api/v1/consent").get_json()["version"]
    response = client.post("/api/v1/me/consent", json={"version": version}, headers=headers)
    assert response.status_code == 201
    body = response.get_json()
    assert body == {"version": version, "accepted_at": "2026-03-02T09:00:00Z", "video": True}
    row = db.session.execute(
        select(ConsentAcceptance).where(ConsentAcceptance.patient_id == people.new_patient.id)
    ).scalar_one()
    assert row.version == version and row.accepted_at == START and row.locale == "nl"


def test_accepting_without_video(client, people):
    response = client.post(
        "/api/v1/me/consent",
        json={"version": service.current_consent_version(), "video": False},
        headers=people.h["new_patient"],
    )
    assert response.status_code == 201 and response.get_json()["video"] is False


def test_accepting_twice_keeps_one_acceptance(client, people, clock):
    headers = people.h["new_patient"]
    version = service.current_consent_version()
    first = client.post("/api/v1/me/consent", json={"version": version}, headers=headers)
    clock.advance(minutes=5)
    second = client.post("/api/v1/me/consent", json={"version": version}, headers=headers)
    assert second.status_code == 201
    assert second.get_json()["accepted_at"] == first.get_json()["accepted_at"]
    count = db.session.execute(
        select(ConsentAcceptance).where(ConsentAcceptance.patient_id == people.new_patient.id)
    ).all()
    assert len(count) == 1


def test_outdated_version_is_409(client, people, consent_dir):
    _write(consent_dir, "1.0")
    _write(consent_dir, "2.0")
    headers = people.h["new_patient"]
    before = table_counts()
    for version in ("1.0", "0.1", "3.0"):
        response = client.post("/api/v1/me/consent", json={"version": version}, headers=headers)
        body = assert_error(response, 409)
        assert "2.0" in body["message"]
    assert table_counts() == before
    ok = client.post("/api/v1/me/consent", json={"version": "2.0"}, headers=headers)
    assert ok.status_code == 201


def test_a_new_version_closes_the_gate_until_accepted(client, people, consent_dir):
    _write(consent_dir, "1.0")
    headers = people.h["new_patient"]
    client.post("/api/v1/me/consent", json={"version": "1.0"}, headers=headers)
    assert client.get("/api/v1/me/programme", headers=headers).status_code == 200
    _write(consent_dir, "1.1")
    service._consent_documents.cache_clear()
    assert_error(client.get("/api/v1/me/programme", headers=headers), 403, contains="consent")
    assert (
        client.post("/api/v1/me/consent", json={"version": "1.1"}, headers=headers).status_code
        == 201
    )
    assert client.get("/api/v1/me/programme", headers=headers).status_code == 200


def test_withdrawn_consent_closes_the_gate(client, people, clock):
    headers = people.h["patient"]
    assert client.get("/api/v1/me/programme", headers=headers).status_code == 200
    row = db.session.execute(
        select(ConsentAcceptance).where(ConsentAcceptance.patient_id == people.patient.id)
    ).scalar_one()
    row.withdrawn_at = clock.now()
    db.session.commit()
    assert_error(client.get("/api/v1/me/programme", headers=headers), 403, contains="consent")


def test_only_patients_accept_consent(client, people):
    version = service.current_consent_version()
    assert_error(client.post("/api/v1/me/consent", json={"version": version}), 401)
    for role in ("therapist", "owner"):
        response = client.post(
            "/api/v1/me/consent", json={"version": version}, headers=people.h[role]
        )
        assert_error(response, 403)


ACCEPT_ERRORS = [
    ({}, "version"),
    ({"version": ""}, "version"),
    ({"version": 1.0}, "version"),
    ({"version": "1" * 21}, "version"),
    ({"version": "1.0", "video": "maybe"}, "video"),
    ({"version": "1.0", "video": None}, "video"),
    ({"version": "1.0", "patient_id": "x"}, "patient_id"),
    ({"version": "1.0", "accepted_at": "2020-01-01T00:00:00Z"}, "accepted_at"),
]


def test_accept_validation(client, people):
    headers = people.h["new_patient"]
    before = table_counts()
    for body, field in ACCEPT_ERRORS:
        response = client.post("/api/v1/me/consent", json=body, headers=headers)
        assert response.status_code == 422, body
        assert_error(response, 422, field=field)
    assert table_counts() == before


# --- the gate -----------------------------------------------------------------------------------


def test_gate_before_and_after_consent(client, people):
    headers = people.h["new_patient"]
    body = assert_error(
        client.get("/api/v1/me/programme", headers=headers), 403, contains="consent"
    )
    assert "errors" not in body
    # The exempt endpoints work without consent.
    assert client.get("/api/v1/me", headers=headers).status_code == 200
    assert client.patch("/api/v1/me", json={"locale": "en"}, headers=headers).status_code == 200
    assert client.get("/api/v1/consent", headers=headers).status_code == 200
    pair = client.post(
        "/api/v1/auth/token",
        json={"email": people.new_patient.email, "password": "correct-horse-battery"},
    ).get_json()
    refreshed = client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert refreshed.status_code == 200
    version = service.current_consent_version()
    assert (
        client.post("/api/v1/me/consent", json={"version": version}, headers=headers).status_code
        == 201
    )
    programme = client.get("/api/v1/me/programme", headers=headers)
    assert programme.status_code == 200
    assert programme.get_json()["status"] == "active"
    # The new access token from the refresh works past the gate too.
    fresh = bearer(refreshed.get_json()["access_token"])
    assert client.get("/api/v1/me/programme", headers=fresh).status_code == 200


def test_the_gate_never_applies_to_staff(client, people):
    for role in ("therapist", "owner"):
        assert_error(
            client.get("/api/v1/me/programme", headers=people.h[role]), 403, contains="patient"
        )
