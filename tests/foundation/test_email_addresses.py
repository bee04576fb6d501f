"""E-mail addresses are checked in the form they are stored in, lower-cased, which can be longer
than the form they were typed in, wherever one is taken: registration, sign-in, creating a
therapist and the `create-owner` command. (Invites take no address.) A value the database refuses
all the same answers 422, never 500."""

from __future__ import annotations

import logging

import pytest
from flask import Blueprint
from sqlalchemy import select
from sqlalchemy.exc import DataError

from coaching.accounts import service as accounts
from coaching.accounts.models import Account
from coaching.extensions import db
from tests.conftest import PASSWORD, assert_error
from tests.foundation.conftest import table_counts

# 'İ' lower-cases to 'i' and a combining dot: 248 characters as typed, 308 as stored.
GROWING = "\u0130" * 60 + "@" + ("a" * 60 + ".") * 3 + "test"
# 194 characters as typed, exactly the column's 254 as stored.
AT_THE_LIMIT = "\u0130" * 60 + "@" + "a" * 60 + "." + "a" * 60 + "." + "a" * 6 + ".test"


def _register(client, invite, email):
    return client.post(
        "/api/v1/patients",
        json={
            "invite_code": invite.code,
            "email": email,
            "password": PASSWORD,
            "display_name": "P",
            "locale": "nl",
            "timezone": "Europe/Amsterdam",
        },
    )


def test_the_addresses_grow_when_lowercased():
    column = Account.__table__.c.email.type.length
    assert len(GROWING) == 248 <= column < len(GROWING.lower()) == 308
    assert len(AT_THE_LIMIT) == 194 and len(AT_THE_LIMIT.lower()) == column == 254


def test_an_email_that_grows_when_lowercased_is_422_not_overlong(client, make):
    invite = make.invite()
    email = "\u0130" * 60 + "@" + ("a" * 60 + ".") * 3 + "test"  # 248 chars, 308 lowered
    response = client.post(
        "/api/v1/patients",
        json={
            "invite_code": invite.code,
            "email": email,
            "password": PASSWORD,
            "display_name": "P",
            "locale": "nl",
            "timezone": "Europe/Amsterdam",
        },
    )
    if response.status_code == 201:
        stored = db.session.execute(
            select(Account.email).where(Account.role == "patient")
        ).scalar_one()
        assert len(stored) <= Account.__table__.c.email.type.length, len(stored)
    else:
        assert_error(response, 422, "email")


def test_registration_refuses_a_grown_address_and_writes_nothing(client, make):
    invite = make.invite()
    before = table_counts()
    body = assert_error(_register(client, invite, GROWING), 422, "email")
    assert body["errors"]["email"] == ["Longer than maximum length 254 once lower-cased."]
    assert table_counts() == before


def test_an_address_that_fills_the_column_once_lowercased_registers(client, make):
    response = _register(client, make.invite(), AT_THE_LIMIT)
    assert response.status_code == 201, response.get_json()
    assert accounts.find_by_email(AT_THE_LIMIT).email == AT_THE_LIMIT.lower()
    one_more = "\u0130" + AT_THE_LIMIT
    assert_error(_register(client, make.invite(), one_more), 422, "email")


def test_an_address_is_checked_as_typed_and_signs_in_as_typed(client, make):
    # The lower-cased form of 'İ' (with a combining dot) is no word character to marshmallow's
    # pattern: the format is checked on the address as typed, so this one stays welcome.
    response = _register(client, make.invite(), "\u0130ris@Example.TEST")
    assert response.status_code == 201, response.get_json()
    stored = db.session.execute(select(Account.email).where(Account.role == "patient")).scalar_one()
    assert stored == "\u0130ris@Example.TEST".lower()
    login = client.post(
        "/api/v1/auth/token", json={"email": "\u0130RIS@example.test", "password": PASSWORD}
    )
    assert login.status_code == 200, login.get_json()
    for bad in ("no-at-sign", "two@@example.test", " padded@example.test", 5):
        assert_error(_register(client, make.invite(), bad), 422, "email")


def test_sign_in_with_a_grown_address_is_422(client):
    response = client.post("/api/v1/auth/token", json={"email": GROWING, "password": PASSWORD})
    assert_error(response, 422, "email")


def test_creating_a_therapist_with_a_grown_address_is_422(client, people):
    url, headers = f"/api/v1/practices/{people.practice_a.id}/therapists", people.h["owner"]
    before = table_counts()
    response = client.post(
        url, json={"email": GROWING, "display_name": "T", "password": PASSWORD}, headers=headers
    )
    assert_error(response, 422, "email")
    assert table_counts() == before


def test_create_owner_refuses_a_grown_or_malformed_address(app):
    runner = app.test_cli_runner()
    before = table_counts()
    for email, message in ((GROWING, "once lower-cased"), ("nobody", "Not a valid email")):
        result = runner.invoke(
            args=["accounts", "create-owner", "--email", email, "--password", PASSWORD]
        )
        assert result.exit_code == 2, result.output
        assert "--email" in result.output and message in result.output
    assert table_counts() == before


# --- the database's own refusal ----------------------------------------------------------------


def test_a_data_error_is_answered_as_422(make_app, caplog):
    app = make_app()
    broken = Blueprint("unstorable", __name__)

    @broken.post("/unstorable")
    def refuse():
        raise DataError("INSERT INTO things", {}, Exception("value too long: secret detail"))

    app.register_blueprint(broken)
    with caplog.at_level(logging.WARNING, logger="coaching.errors"):
        response = app.test_client().post("/unstorable")
    body = assert_error(response, 422)
    assert "secret detail" not in response.get_data(as_text=True)
    assert body["errors"] == {"_schema": [body["message"]]}
    assert any("answered as 422" in r.getMessage() for r in caplog.records)


def test_a_value_postgresql_refuses_is_422_and_rolled_back(
    client, people, is_postgres, monkeypatch, caplog
):
    if not is_postgres:
        pytest.skip("SQLite does not enforce VARCHAR lengths: no DataError can be provoked")
    patient = people.patient
    headers = people.h["patient"]

    def overlong(account, **changes):
        # What a missing schema check would let through: longer than display_name's 120.
        account.display_name = "x" * 121
        db.session.flush()
        return account

    monkeypatch.setattr(accounts, "update_account", overlong)
    with caplog.at_level(logging.WARNING, logger="coaching.errors"):
        response = client.patch("/api/v1/me", json={"display_name": "Y"}, headers=headers)
    assert_error(response, 422)
    assert any("answered as 422" in r.getMessage() for r in caplog.records)
    db.session.expire_all()
    assert db.session.get(Account, patient.id).display_name == patient.display_name
    assert client.get("/api/v1/me", headers=headers).status_code == 200
