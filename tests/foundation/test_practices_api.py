"""Practices and their therapists: owner-only endpoints, pagination, duplicates."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from coaching.accounts.models import Account
from coaching.extensions import db
from coaching.practices.models import Practice
from tests.conftest import PASSWORD, assert_error
from tests.foundation.conftest import table_counts

THERAPIST = {"email": "new.therapist@example.test", "display_name": "Nieuw", "password": PASSWORD}


def _endpoints(people):
    practice = people.practice_a.id
    return [
        ("post", "/api/v1/practices", {"name": "P", "city": "C"}),
        ("get", "/api/v1/practices", None),
        ("post", f"/api/v1/practices/{practice}/therapists", THERAPIST),
        ("get", f"/api/v1/practices/{practice}/therapists", None),
    ]


def test_anonymous_gets_401(client, people):
    endpoints = _endpoints(people)
    before = table_counts()
    for method, path, body in endpoints:
        assert_error(getattr(client, method)(path, json=body), 401)
    assert table_counts() == before


@pytest.mark.parametrize(
    "role", ["patient", "new_patient", "therapist", "other_therapist", "foreign_patient"]
)
def test_other_roles_get_403(client, people, role):
    headers = people.h[role]
    endpoints = _endpoints(people)
    before = table_counts()
    for method, path, body in endpoints:
        response = getattr(client, method)(path, json=body, headers=headers)
        if role == "new_patient":
            # A patient without consent is stopped by the role check or the consent gate: 403.
            assert_error(response, 403)
        else:
            assert_error(response, 403, contains="owner")
    assert table_counts() == before


def test_owner_creates_a_practice(client, people):
    response = client.post(
        "/api/v1/practices",
        json={"name": " Fysio Oost ", "city": "Zwolle"},
        headers=people.h["owner"],
    )
    assert response.status_code == 201
    body = response.get_json()
    assert set(body) == {"id", "name", "city"}
    assert body["name"] == "Fysio Oost" and body["city"] == "Zwolle"
    assert db.session.get(Practice, body["id"]).name == "Fysio Oost"


def test_owner_lists_every_practice_with_pagination(client, people, make):
    for n in range(3):
        make.practice(name=f"Z practice {n}")
    people.practice_a, people.practice_b  # noqa: B018  (made now, listed first by name)
    response = client.get("/api/v1/practices?page_size=2", headers=people.h["owner"])
    assert response.status_code == 200
    assert json.loads(response.headers["X-Pagination"]) == {
        "total": 5,
        "total_pages": 3,
        "page": 1,
        "page_size": 2,
    }
    assert [p["name"] for p in response.get_json()] == ["Practice A", "Practice B"]
    last = client.get("/api/v1/practices?page=3&page_size=2", headers=people.h["owner"])
    assert [p["name"] for p in last.get_json()] == ["Z practice 2"]
    assert json.loads(last.headers["X-Pagination"])["page"] == 3
    beyond = client.get("/api/v1/practices?page=4&page_size=2", headers=people.h["owner"])
    assert beyond.status_code == 200 and beyond.get_json() == []


def test_default_page_size_is_20(client, people):
    response = client.get("/api/v1/practices", headers=people.h["owner"])
    assert json.loads(response.headers["X-Pagination"]) == {
        "total": 0,
        "total_pages": 0,
        "page": 1,
        "page_size": 20,
    }


def test_bad_pagination_is_422(client, people):
    headers = people.h["owner"]
    for query, field in [
        ("page_size=101", "page_size"),
        ("page_size=0", "page_size"),
        ("page_size=abc", "page_size"),
        ("page=0", "page"),
        ("page=-1", "page"),
        ("page=1.5", "page"),
    ]:
        assert_error(client.get(f"/api/v1/practices?{query}", headers=headers), 422, field)


def test_page_size_100_is_allowed_and_a_huge_page_is_empty(client, people):
    ok = client.get("/api/v1/practices?page_size=100", headers=people.h["owner"])
    assert ok.status_code == 200
    huge = client.get(
        "/api/v1/practices?page=99999999999999999999&page_size=100", headers=people.h["owner"]
    )
    assert huge.status_code == 200 and huge.get_json() == []


def test_owner_creates_a_therapist_who_can_sign_in(client, people):
    practice = people.practice_b
    response = client.post(
        f"/api/v1/practices/{practice.id}/therapists",
        json={**THERAPIST, "email": "New.Therapist@Example.test"},
        headers=people.h["owner"],
    )
    assert response.status_code == 201
    body = response.get_json()
    assert set(body) == {"id", "email", "display_name", "practice_id"}
    assert body["email"] == "new.therapist@example.test"
    assert body["practice_id"] == practice.id
    stored = db.session.get(Account, body["id"])
    assert stored.role == "therapist" and stored.password_hash.startswith("$argon2id$")
    login = client.post(
        "/api/v1/auth/token", json={"email": THERAPIST["email"], "password": PASSWORD}
    )
    assert login.status_code == 200 and login.get_json()["role"] == "therapist"


def test_duplicate_therapist_email_is_409(client, people):
    path = f"/api/v1/practices/{people.practice_a.id}/therapists"
    assert client.post(path, json=THERAPIST, headers=people.h["owner"]).status_code == 201
    people.patient  # noqa: B018
    before = table_counts()
    again = client.post(
        path, json={**THERAPIST, "email": THERAPIST["email"].upper()}, headers=people.h["owner"]
    )
    assert_error(again, 409)
    patient_email = client.post(
        path, json={**THERAPIST, "email": people.patient.email}, headers=people.h["owner"]
    )
    assert_error(patient_email, 409)
    assert table_counts() == before


def test_unknown_practice_is_404(client, people):
    for method, body in (("post", THERAPIST), ("get", None)):
        response = getattr(client, method)(
            "/api/v1/practices/00000000-0000-0000-0000-000000000000/therapists",
            json=body,
            headers=people.h["owner"],
        )
        assert_error(response, 404)
        response = getattr(client, method)(
            "/api/v1/practices/%00/therapists", json=body, headers=people.h["owner"]
        )
        assert_error(response, 404)
    assert (
        db.session.execute(select(Account).where(Account.email == THERAPIST["email"])).first()
        is None
    )


def test_owner_lists_the_therapists_of_any_practice(client, people):
    people.therapist, people.colleague, people.other_therapist  # noqa: B018
    a = client.get(
        f"/api/v1/practices/{people.practice_a.id}/therapists", headers=people.h["owner"]
    )
    assert a.status_code == 200
    assert {t["id"] for t in a.get_json()} == {people.therapist.id, people.colleague.id}
    assert json.loads(a.headers["X-Pagination"])["total"] == 2
    assert all(set(t) == {"id", "email", "display_name", "practice_id"} for t in a.get_json())
    b = client.get(
        f"/api/v1/practices/{people.practice_b.id}/therapists", headers=people.h["owner"]
    )
    assert [t["id"] for t in b.get_json()] == [people.other_therapist.id]


def test_therapist_list_leaves_out_patients(client, people):
    people.patient  # noqa: B018  (a patient of practice A)
    response = client.get(
        f"/api/v1/practices/{people.practice_a.id}/therapists", headers=people.h["owner"]
    )
    assert people.patient.id not in {t["id"] for t in response.get_json()}
