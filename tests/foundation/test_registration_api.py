"""`POST /patients`: registration with an invite code creates the patient, links them to the
invite's therapist and practice, and enrols them."""

from __future__ import annotations

from datetime import UTC, date, datetime

import jwt
import pytest
from sqlalchemy import select

from coaching.accounts.models import Account
from coaching.enrolment import service
from coaching.enrolment.models import Enrollment, Invite
from coaching.extensions import db, limiter
from tests.conftest import PASSWORD, START, assert_error
from tests.foundation.conftest import bearer, table_counts


@pytest.fixture
def invite(make, people):
    return make.invite(people.therapist, referral_source="physio", channel="sms")


def _body(code: str, **changes) -> dict:
    return {
        "invite_code": code,
        "email": "new.patient@example.test",
        "password": PASSWORD,
        "display_name": "Nieuwe Patiënt",
        "locale": "nl",
        "timezone": "Europe/Amsterdam",
    } | changes


def test_registration_answers_a_token_pair(client, invite):
    response = client.post("/api/v1/patients", json=_body(invite.code))
    assert response.status_code == 201
    pair = response.get_json()
    assert set(pair) == {"access_token", "refresh_token", "token_type", "expires_in", "role"}
    assert pair["token_type"] == "Bearer" and pair["role"] == "patient"
    me = client.get("/api/v1/me", headers=bearer(pair["access_token"])).get_json()
    assert me["email"] == "new.patient@example.test"
    assert me["display_name"] == "Nieuwe Patiënt"
    refreshed = client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert refreshed.status_code == 200


def test_registration_links_and_enrols_the_patient(client, invite, people):
    client.post("/api/v1/patients", json=_body(invite.code, email="NEW.Patient@Example.TEST"))
    patient = db.session.execute(
        select(Account).where(Account.email == "new.patient@example.test")
    ).scalar_one()
    assert patient.role == "patient"
    assert patient.therapist_id == people.therapist.id
    assert patient.practice_id == people.practice_a.id
    assert patient.password_hash.startswith("$argon2id$")
    enrollment = db.session.execute(
        select(Enrollment).where(Enrollment.patient_id == patient.id)
    ).scalar_one()
    assert enrollment.therapist_id == people.therapist.id
    assert enrollment.practice_id == people.practice_a.id
    assert enrollment.invite_id == invite.id
    assert enrollment.status == "active"
    assert enrollment.started_on == date(2026, 3, 2)
    assert enrollment.enrolled_at == START
    assert enrollment.programme_slug
    db.session.expire_all()
    stored = db.session.get(Invite, invite.id)
    assert stored.redeemed_at == START and stored.patient_id == patient.id
    assert stored.status_at(START) == "redeemed"


def test_patient_can_sign_in_afterwards(client, invite):
    client.post("/api/v1/patients", json=_body(invite.code))
    response = client.post(
        "/api/v1/auth/token", json={"email": "new.patient@example.test", "password": PASSWORD}
    )
    assert response.status_code == 200 and response.get_json()["role"] == "patient"


def test_start_date_is_the_patients_local_date(client, invite, clock):
    clock.set(datetime(2026, 3, 2, 23, 30, tzinfo=UTC))
    client.post("/api/v1/patients", json=_body(invite.code, timezone="Pacific/Auckland"))
    enrollment = db.session.execute(select(Enrollment)).scalar_one()
    assert enrollment.started_on == date(2026, 3, 3)


def test_code_is_accepted_as_people_type_it(client, invite):
    typed = f" {invite.code[:5].lower()}-{invite.code[5:].lower()}"
    assert client.post("/api/v1/patients", json=_body(typed.strip())).status_code == 201


def test_used_code_is_404(client, invite):
    assert client.post("/api/v1/patients", json=_body(invite.code)).status_code == 201
    before = table_counts()
    again = client.post("/api/v1/patients", json=_body(invite.code, email="second@example.test"))
    assert_error(again, 404)
    assert table_counts() == before


def test_unknown_expired_and_revoked_codes_are_404(client, make, people, clock):
    expired = make.invite(people.therapist, expires_in_days=1)
    revoked = make.invite(people.therapist)
    service.revoke_invite(therapist=people.therapist, code=revoked.code)
    db.session.commit()
    clock.advance(days=1)
    before = table_counts()
    for code in ("ZZZZZZZZZZ", expired.code, revoked.code, "x" * 40):
        assert_error(client.post("/api/v1/patients", json=_body(code)), 404)
    assert table_counts() == before


def test_registered_email_is_409_and_the_invite_stays_usable(client, invite, people):
    taken = (people.therapist.email, people.patient.email.upper(), people.owner.email)
    before = table_counts()
    for email in taken:
        assert_error(client.post("/api/v1/patients", json=_body(invite.code, email=email)), 409)
    assert table_counts() == before
    assert client.post("/api/v1/patients", json=_body(invite.code)).status_code == 201


REGISTRATION_ERRORS = [
    ({"timezone": "Mars/Base"}, "timezone"),
    ({"timezone": "localtime"}, "timezone"),
    ({"timezone": "x" * 65}, "timezone"),
    ({"locale": "de"}, "locale"),
    ({"locale": None}, "locale"),
    ({"email": "not-an-email"}, "email"),
    ({"email": "a" * 250 + "@example.test"}, "email"),
    ({"password": "short"}, "password"),
    ({"password": "x" * 201}, "password"),
    ({"display_name": ""}, "display_name"),
    ({"display_name": "  "}, "display_name"),
    ({"display_name": "x" * 121}, "display_name"),
    ({"invite_code": ""}, "invite_code"),
    ({"invite_code": "x" * 41}, "invite_code"),
    ({"invite_code": 12345678}, "invite_code"),
    ({"role": "owner"}, "role"),
    ({"therapist_id": "x"}, "therapist_id"),
    ({"practice_id": "x"}, "practice_id"),
]


def test_registration_validation(client, invite):
    before = table_counts()
    for changes, field in REGISTRATION_ERRORS:
        limiter.reset()  # registration allows only a few attempts a minute
        response = client.post("/api/v1/patients", json=_body(invite.code, **changes))
        assert response.status_code == 422, changes
        assert_error(response, 422, field=field)
    assert table_counts() == before
    assert db.session.get(Invite, invite.id).redeemed_at is None


def test_registration_hooks_run_once_with_the_patient_and_enrolment(client, invite, monkeypatch):
    seen = []
    monkeypatch.setattr(
        service,
        "REGISTRATION_HOOKS",
        [lambda *, patient, enrollment: seen.append((patient.id, enrollment.patient_id))],
    )
    response = client.post("/api/v1/patients", json=_body(invite.code))
    sub = jwt.decode(response.get_json()["access_token"], options={"verify_signature": False})
    assert seen == [(sub["sub"], sub["sub"])]


def test_a_failing_hook_rolls_the_registration_back(client, invite, monkeypatch):
    def broken(*, patient, enrollment):
        raise RuntimeError("hook failed")

    monkeypatch.setattr(service, "REGISTRATION_HOOKS", [broken])
    before = table_counts()
    assert_error(client.post("/api/v1/patients", json=_body(invite.code)), 500)
    assert table_counts() == before
    monkeypatch.setattr(service, "REGISTRATION_HOOKS", [])
    assert client.post("/api/v1/patients", json=_body(invite.code)).status_code == 201


def test_registration_needs_no_token_and_ignores_one(client, invite, people):
    response = client.post("/api/v1/patients", json=_body(invite.code), headers=people.h["owner"])
    assert response.status_code == 201 and response.get_json()["role"] == "patient"
