"""Access tokens (signature, algorithms, claims, the injected clock), refresh rotation with reuse
detection, logout, and the roles and consent gate of `auth_required`."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import warnings
from datetime import timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.warnings import InsecureKeyLengthWarning
from sqlalchemy import select

from coaching.accounts.models import LoginSession, RefreshToken
from coaching.auth import hash_token
from coaching.extensions import db
from tests.conftest import assert_error
from tests.foundation.conftest import TEST_SECRET, bearer


def _claims(account, session_id, clock, **changes) -> dict:
    now = int(clock.now().timestamp())
    claims = {
        "sub": account.id,
        "role": account.role,
        "sid": session_id,
        "typ": "access",
        "aud": "coaching-api",
        "iss": "coaching",
        "iat": now,
        "nbf": now,
        "exp": now + 900,
        "jti": "abc",
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _b64(data: dict | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.fixture
def session_of(login):
    """Return (access token, refresh token, login session id) of a fresh login."""

    def _session(account):
        pair = login(account.email)
        claims = jwt.decode(pair["access_token"], options={"verify_signature": False})
        return pair["access_token"], pair["refresh_token"], claims["sid"]

    return _session


# --- access tokens ----------------------------------------------------------------------------


def test_login_answers_the_contracts_token_pair(client, people, login):
    pair = login(people.therapist.email)
    assert set(pair) == {"access_token", "refresh_token", "token_type", "expires_in", "role"}
    assert pair["token_type"] == "Bearer"
    assert pair["expires_in"] == 900
    assert pair["role"] == "therapist"
    header = jwt.get_unverified_header(pair["access_token"])
    assert header["alg"] == "HS256" and header["kid"] == "k1"
    claims = jwt.decode(pair["access_token"], options={"verify_signature": False})
    assert claims["typ"] == "access" and claims["aud"] == "coaching-api"
    assert claims["iss"] == "coaching" and claims["sub"] == people.therapist.id
    assert client.get("/api/v1/me", headers=bearer(pair["access_token"])).status_code == 200


def test_wrong_password_and_unknown_email_are_the_same_401(client, people):
    wrong = client.post(
        "/api/v1/auth/token", json={"email": people.owner.email, "password": "not-the-password"}
    )
    unknown = client.post(
        "/api/v1/auth/token", json={"email": "nobody@example.test", "password": "whatever-123"}
    )
    assert assert_error(wrong, 401) == assert_error(unknown, 401)


def test_login_ignores_case_and_spaces_of_the_email(client, people):
    email = "  " + people.owner.email.upper() + " "
    response = client.post(
        "/api/v1/auth/token", json={"email": email.strip(), "password": "correct-horse-battery"}
    )
    assert response.status_code == 200


def test_inactive_account_cannot_sign_in_or_use_its_token(client, people):
    people.therapist.is_active = False
    db.session.commit()
    response = client.post(
        "/api/v1/auth/token",
        json={"email": people.therapist.email, "password": "correct-horse-battery"},
    )
    assert_error(response, 401)
    assert_error(client.get("/api/v1/me", headers=people.h["therapist"]), 401)


GARBLED = [
    {},
    {"Authorization": ""},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer "},
    {"Authorization": "Basic dXNlcjpwYXNz"},
    {"Authorization": "Bearer not-a-jwt"},
    {"Authorization": "Bearer a.b.c"},
    {"Authorization": "Bearer " + "x" * 5000},
]


def test_missing_or_garbled_token_is_401_with_the_error_shape(client):
    for header in GARBLED:
        response = client.get("/api/v1/me", headers=header)
        assert response.status_code == 401, header
        assert_error(response, 401)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_token_with_a_wrong_signature_is_refused(client, people, session_of, clock):
    _, _, sid = session_of(people.patient)
    forged = jwt.encode(
        _claims(people.patient, sid, clock),
        "another-secret-key-that-is-long-enough-000",
        algorithm="HS256",
        headers={"kid": "k1"},
    )
    assert_error(client.get("/api/v1/me", headers=bearer(forged)), 401)
    genuine = jwt.encode(
        _claims(people.patient, sid, clock), TEST_SECRET, algorithm="HS256", headers={"kid": "k1"}
    )
    assert client.get("/api/v1/me", headers=bearer(genuine)).status_code == 200


def test_tampered_payload_is_refused(client, people, session_of):
    access, _, _ = session_of(people.patient)
    header, payload, signature = access.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = people.other_patient.id
    assert_error(
        client.get("/api/v1/me", headers=bearer(f"{header}.{_b64(claims)}.{signature}")), 401
    )


def test_alg_none_is_refused(client, people, session_of, clock):
    _, _, sid = session_of(people.owner)
    for alg in ("none", "None", "NONE"):
        token = f"{_b64({'alg': alg, 'typ': 'JWT', 'kid': 'k1'})}.{_b64(_claims(people.owner, sid, clock))}."
        assert_error(client.get("/api/v1/me", headers=bearer(token)), 401)


@pytest.mark.parametrize("alg", ["HS384", "HS512"])
def test_algorithms_outside_the_allow_list_are_refused(client, people, session_of, clock, alg):
    _, _, sid = session_of(people.owner)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)  # the app's key, HS384/512
        token = jwt.encode(
            _claims(people.owner, sid, clock), TEST_SECRET, algorithm=alg, headers={"kid": "k1"}
        )
    assert_error(client.get("/api/v1/me", headers=bearer(token)), 401)


def test_rs256_tokens_and_hs_rs_confusion_are_refused(client, people, session_of, clock):
    _, _, sid = session_of(people.owner)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = _claims(people.owner, sid, clock)
    rs_token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})
    assert_error(client.get("/api/v1/me", headers=bearer(rs_token)), 401)
    # The classic confusion: an HS256 token whose HMAC key is a public key an attacker knows.
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = _b64({"alg": "HS256", "typ": "JWT", "kid": "k1"})
    body = _b64(claims)
    signature = hmac.new(public_pem, f"{header}.{body}".encode(), hashlib.sha256).digest()
    confused = f"{header}.{body}.{_b64(signature)}"
    assert_error(client.get("/api/v1/me", headers=bearer(confused)), 401)


def test_access_token_expires_by_the_app_clock(client, people, session_of, clock):
    access, _, _ = session_of(people.patient)
    clock.advance(seconds=899)
    assert client.get("/api/v1/me", headers=bearer(access)).status_code == 200
    clock.advance(seconds=1)
    assert_error(client.get("/api/v1/me", headers=bearer(access)), 401, contains="expired")


BAD_CLAIMS = {
    "audience": ({"aud": "someone-else"}, {}),
    "issuer": ({"iss": "someone-else"}, {}),
    "type": ({"typ": "refresh"}, {}),
    "no-type": ({"typ": None}, {}),
    "no-session": ({"sid": None}, {}),
    "no-subject": ({"sub": None}, {}),
    "no-exp": ({"exp": None}, {}),
    "no-nbf": ({"nbf": None}, {}),
    "no-iat": ({"iat": None}, {}),
    "exp-string": ({"exp": "tomorrow"}, {}),
    "nbf-string": ({"nbf": "+3600"}, {}),
    "other-kid": ({}, {"kid": "k2"}),
    "no-kid": ({}, {"kid": None}),
}


def test_claims_and_key_id_are_checked(client, people, session_of, clock):
    _, _, sid = session_of(people.owner)
    good = jwt.encode(
        _claims(people.owner, sid, clock), TEST_SECRET, algorithm="HS256", headers={"kid": "k1"}
    )
    assert client.get("/api/v1/me", headers=bearer(good)).status_code == 200
    for label, (changes, headers) in BAD_CLAIMS.items():
        header = {k: v for k, v in ({"kid": "k1"} | headers).items() if v is not None}
        token = jwt.encode(
            _claims(people.owner, sid, clock, **changes),
            TEST_SECRET,
            algorithm="HS256",
            headers=header,
        )
        response = client.get("/api/v1/me", headers=bearer(token))
        assert response.status_code == 401, label
        assert_error(response, 401)


def test_not_before_in_the_future_is_refused(client, people, session_of, clock):
    _, _, sid = session_of(people.owner)
    now = int(clock.now().timestamp())
    early = jwt.encode(
        _claims(people.owner, sid, clock, nbf=now + 60),
        TEST_SECRET,
        algorithm="HS256",
        headers={"kid": "k1"},
    )
    assert_error(client.get("/api/v1/me", headers=bearer(early)), 401)
    clock.advance(seconds=60)
    assert client.get("/api/v1/me", headers=bearer(early)).status_code == 200


def test_token_of_another_accounts_session_is_refused(client, people, session_of, clock):
    _, _, sid_of_patient = session_of(people.patient)
    token = jwt.encode(
        _claims(people.other_patient, sid_of_patient, clock),
        TEST_SECRET,
        algorithm="HS256",
        headers={"kid": "k1"},
    )
    assert_error(client.get("/api/v1/me", headers=bearer(token)), 401)


# --- refresh ------------------------------------------------------------------------------------


def test_refresh_tokens_are_stored_only_as_hashes(people, session_of):
    _, refresh, sid = session_of(people.patient)
    stored = db.session.execute(
        select(RefreshToken.token_hash).where(RefreshToken.session_id == sid)
    ).scalar_one()
    assert stored == hash_token(refresh) and refresh not in stored


def test_refresh_rotates_and_each_token_works_once(client, people, session_of):
    access, refresh, _ = session_of(people.patient)
    first = client.post("/api/v1/auth/refresh", json={"refresh_token": refresh})
    assert first.status_code == 200
    pair = first.get_json()
    assert set(pair) == {"access_token", "refresh_token", "token_type", "expires_in", "role"}
    assert pair["refresh_token"] != refresh and pair["role"] == "patient"
    assert client.get("/api/v1/me", headers=bearer(pair["access_token"])).status_code == 200
    second = client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert second.status_code == 200


def test_reusing_a_refresh_token_revokes_the_whole_login(client, people, session_of, login):
    access, refresh, sid = session_of(people.patient)
    elsewhere = login(people.patient.email)  # another login of the same account is unaffected
    newer = client.post("/api/v1/auth/refresh", json={"refresh_token": refresh}).get_json()
    reuse = client.post("/api/v1/auth/refresh", json={"refresh_token": refresh})
    assert_error(reuse, 401)
    # Every token of that login is dead now: the rotated refresh token and both access tokens.
    assert_error(
        client.post("/api/v1/auth/refresh", json={"refresh_token": newer["refresh_token"]}), 401
    )
    assert_error(client.get("/api/v1/me", headers=bearer(newer["access_token"])), 401)
    assert_error(client.get("/api/v1/me", headers=bearer(access)), 401)
    session = db.session.get(LoginSession, sid)
    assert session.revoked_at is not None and session.revoked_reason == "refresh_token_reuse"
    assert client.get("/api/v1/me", headers=bearer(elsewhere["access_token"])).status_code == 200


def test_refresh_token_expires(client, people, session_of, clock):
    _, refresh, _ = session_of(people.patient)
    clock.advance(days=30)
    assert_error(client.post("/api/v1/auth/refresh", json={"refresh_token": refresh}), 401)


def test_refresh_token_just_before_expiry_works(client, people, session_of, clock):
    _, refresh, _ = session_of(people.patient)
    clock.advance(days=30, seconds=-1)
    assert client.post("/api/v1/auth/refresh", json={"refresh_token": refresh}).status_code == 200


def test_unknown_refresh_token_is_401(client, people):
    response = client.post("/api/v1/auth/refresh", json={"refresh_token": "made-up"})
    assert_error(response, 401)


def test_refresh_of_a_deactivated_account_is_401(client, people, session_of):
    _, refresh, _ = session_of(people.therapist)
    people.therapist.is_active = False
    db.session.commit()
    assert_error(client.post("/api/v1/auth/refresh", json={"refresh_token": refresh}), 401)


# --- logout -------------------------------------------------------------------------------------


def test_logout_revokes_the_login(client, people, session_of):
    access, refresh, _ = session_of(people.therapist)
    response = client.post(
        "/api/v1/auth/logout", json={"refresh_token": refresh}, headers=bearer(access)
    )
    assert response.status_code == 204 and response.data == b""
    assert_error(client.get("/api/v1/me", headers=bearer(access)), 401, contains="revoked")
    assert_error(client.post("/api/v1/auth/refresh", json={"refresh_token": refresh}), 401)


def test_logout_with_another_accounts_refresh_token_revokes_only_the_callers_login(
    client, people, session_of
):
    access, _, _ = session_of(people.therapist)
    other_access, other_refresh, _ = session_of(people.colleague)
    response = client.post(
        "/api/v1/auth/logout", json={"refresh_token": other_refresh}, headers=bearer(access)
    )
    assert response.status_code == 204
    assert_error(client.get("/api/v1/me", headers=bearer(access)), 401, contains="revoked")
    assert client.get("/api/v1/me", headers=bearer(other_access)).status_code == 200
    again = client.post("/api/v1/auth/refresh", json={"refresh_token": other_refresh})
    assert again.status_code == 200


@pytest.mark.parametrize("token", ["not-a-refresh-token", "x" * 200])
def test_logout_with_an_unknown_refresh_token_still_revokes_the_login(
    client, people, session_of, token
):
    access, refresh, session_id = session_of(people.therapist)
    kept_access, kept_refresh, _ = session_of(people.therapist)  # another device
    response = client.post(
        "/api/v1/auth/logout", json={"refresh_token": token}, headers=bearer(access)
    )
    assert response.status_code == 204
    assert_error(client.get("/api/v1/me", headers=bearer(access)), 401, contains="revoked")
    assert_error(client.post("/api/v1/auth/refresh", json={"refresh_token": refresh}), 401)
    assert db.session.get(LoginSession, session_id).revoked_reason == "logout"
    # Only the login that asked: the account's other login keeps working.
    assert client.get("/api/v1/me", headers=bearer(kept_access)).status_code == 200
    assert (
        client.post("/api/v1/auth/refresh", json={"refresh_token": kept_refresh}).status_code == 200
    )


def test_logout_with_the_refresh_token_of_another_own_login_revokes_both(
    client, people, session_of
):
    access, _, _ = session_of(people.therapist)
    other_access, other_refresh, _ = session_of(people.therapist)
    response = client.post(
        "/api/v1/auth/logout", json={"refresh_token": other_refresh}, headers=bearer(access)
    )
    assert response.status_code == 204
    for token in (access, other_access):
        assert_error(client.get("/api/v1/me", headers=bearer(token)), 401, contains="revoked")


def test_logout_needs_a_token(client, people, session_of):
    _, refresh, _ = session_of(people.therapist)
    assert_error(client.post("/api/v1/auth/logout", json={"refresh_token": refresh}), 401)


def test_unconsented_patient_may_log_out(client, make, login):
    patient = make.patient(consented=False)
    pair = login(patient.email)
    response = client.post(
        "/api/v1/auth/logout",
        json={"refresh_token": pair["refresh_token"]},
        headers=bearer(pair["access_token"]),
    )
    assert response.status_code == 204


def test_expired_access_token_can_still_be_refreshed(client, people, session_of, clock):
    access, refresh, _ = session_of(people.patient)
    clock.advance(hours=2)
    assert_error(client.get("/api/v1/me", headers=bearer(access)), 401)
    pair = client.post("/api/v1/auth/refresh", json={"refresh_token": refresh}).get_json()
    assert client.get("/api/v1/me", headers=bearer(pair["access_token"])).status_code == 200


def test_access_token_lifetime_follows_the_setting(client, people, app, monkeypatch, login, clock):
    monkeypatch.setitem(app.config, "ACCESS_TOKEN_TTL", timedelta(seconds=60))
    pair = login(people.owner.email)
    assert pair["expires_in"] == 60
    clock.advance(seconds=60)
    assert_error(client.get("/api/v1/me", headers=bearer(pair["access_token"])), 401)
