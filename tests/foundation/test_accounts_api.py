"""`GET/PATCH /me` for every role, and what an account may change about itself."""

from __future__ import annotations

import pytest

from coaching.accounts.models import Account
from coaching.extensions import db
from tests.conftest import assert_error
from tests.foundation.conftest import table_counts

FIELDS = {
    "id",
    "email",
    "role",
    "display_name",
    "locale",
    "timezone",
    "practice_id",
    "therapist_id",
}


def test_me_needs_a_token(client):
    assert_error(client.get("/api/v1/me"), 401)
    assert_error(client.patch("/api/v1/me", json={"locale": "en"}), 401)


def test_me_of_a_patient_names_practice_and_therapist(client, people):
    response = client.get("/api/v1/me", headers=people.h["patient"])
    assert response.status_code == 200
    me = response.get_json()
    assert set(me) == FIELDS
    assert me["id"] == people.patient.id and me["role"] == "patient"
    assert me["practice_id"] == people.practice_a.id
    assert me["therapist_id"] == people.therapist.id
    assert me["locale"] == "nl" and me["timezone"] == "Europe/Amsterdam"


def test_me_of_a_therapist_and_an_owner(client, people):
    therapist = client.get("/api/v1/me", headers=people.h["therapist"]).get_json()
    assert therapist["role"] == "therapist"
    assert therapist["practice_id"] == people.practice_a.id
    assert therapist["therapist_id"] == people.therapist.id
    owner = client.get("/api/v1/me", headers=people.h["owner"]).get_json()
    assert set(owner) == FIELDS
    assert owner["role"] == "owner"
    assert owner["practice_id"] is None and owner["therapist_id"] is None


def test_me_works_before_consent(client, people):
    headers = people.h["new_patient"]
    assert client.get("/api/v1/me", headers=headers).status_code == 200
    response = client.patch("/api/v1/me", json={"locale": "en"}, headers=headers)
    assert response.status_code == 200 and response.get_json()["locale"] == "en"


@pytest.mark.parametrize("role", ["patient", "therapist", "owner"])
def test_every_role_may_change_its_own_account(client, people, role):
    response = client.patch(
        "/api/v1/me",
        json={"display_name": "  New Name ", "locale": "en", "timezone": "America/New_York"},
        headers=people.h[role],
    )
    assert response.status_code == 200
    body = response.get_json()
    assert (body["display_name"], body["locale"], body["timezone"]) == (
        "New Name",
        "en",
        "America/New_York",
    )
    db.session.expire_all()
    stored = db.session.get(Account, getattr(people, role).id)
    assert (stored.display_name, stored.locale, stored.timezone) == (
        "New Name",
        "en",
        "America/New_York",
    )
    again = client.get("/api/v1/me", headers=people.h[role]).get_json()
    assert again["display_name"] == "New Name"


def test_empty_patch_changes_nothing(client, people):
    before = client.get("/api/v1/me", headers=people.h["patient"]).get_json()
    response = client.patch("/api/v1/me", json={}, headers=people.h["patient"])
    assert response.status_code == 200 and response.get_json() == before


def test_patch_changes_only_the_callers_account(client, people):
    other = people.other_patient
    client.patch("/api/v1/me", json={"display_name": "Mine"}, headers=people.h["patient"])
    db.session.expire_all()
    assert db.session.get(Account, other.id).display_name != "Mine"


PATCH_ERRORS = [
    ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
    ({"timezone": "localtime"}, "timezone"),
    ({"timezone": "../../etc/passwd"}, "timezone"),
    ({"timezone": ""}, "timezone"),
    ({"timezone": "Europe/" + "x" * 60}, "timezone"),
    ({"locale": "de"}, "locale"),
    ({"locale": "NL"}, "locale"),
    ({"locale": None}, "locale"),
    ({"display_name": ""}, "display_name"),
    ({"display_name": "   "}, "display_name"),
    ({"display_name": "x" * 121}, "display_name"),
    ({"display_name": 7}, "display_name"),
    ({"email": "new@example.test"}, "email"),
    ({"role": "owner"}, "role"),
    ({"practice_id": "x"}, "practice_id"),
    ({"therapist_id": "x"}, "therapist_id"),
]


def test_patch_validation_names_the_field_and_changes_nothing(client, people):
    headers = people.h["patient"]
    stored_before = client.get("/api/v1/me", headers=headers).get_json()
    before = table_counts()
    for body, field in PATCH_ERRORS:
        response = client.patch("/api/v1/me", json=body, headers=headers)
        assert response.status_code == 422, body
        assert_error(response, 422, field=field)
    assert client.get("/api/v1/me", headers=headers).get_json() == stored_before
    assert table_counts() == before


def test_mass_assignment_of_role_is_refused_even_with_valid_fields(client, people):
    response = client.patch(
        "/api/v1/me", json={"display_name": "Ok", "role": "owner"}, headers=people.h["patient"]
    )
    assert_error(response, 422, field="role")
    db.session.expire_all()
    stored = db.session.get(Account, people.patient.id)
    assert stored.role == "patient" and stored.display_name != "Ok"
