"""Argon2id password hashing: production parameters, the hash format, and rehashing on login when
the parameters rise."""

from __future__ import annotations

from argon2 import PasswordHasher, Type
from argon2.exceptions import VerifyMismatchError

from coaching import auth
from coaching.accounts import service as accounts
from coaching.accounts.models import Account
from coaching.config import Config
from coaching.extensions import db
from tests.conftest import PASSWORD

ARGON2_ENV = ("ARGON2_MEMORY_KIB", "ARGON2_TIME_COST", "ARGON2_PARALLELISM")


def test_default_config_has_owasp_parameters(monkeypatch):
    for name in ARGON2_ENV:
        monkeypatch.delenv(name, raising=False)
    config = Config()
    assert config.ARGON2_MEMORY_KIB == 19456  # 19 MiB
    assert config.ARGON2_TIME_COST == 2
    assert config.ARGON2_PARALLELISM == 1


def test_parameters_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("ARGON2_MEMORY_KIB", "65536")
    monkeypatch.setenv("ARGON2_TIME_COST", "3")
    monkeypatch.setenv("ARGON2_PARALLELISM", "2")
    config = Config()
    assert (config.ARGON2_MEMORY_KIB, config.ARGON2_TIME_COST, config.ARGON2_PARALLELISM) == (
        65536,
        3,
        2,
    )


def test_default_parameters_make_argon2id_hashes_with_m19456_t2_p1(app, monkeypatch):
    config = Config()
    for name in ARGON2_ENV:
        monkeypatch.setitem(app.config, name, getattr(config, name))
    hashed = auth.hash_password("a password of some length")
    assert hashed.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert auth.verify_password(hashed, "a password of some length") == (True, None)


def test_stored_hash_is_argon2id_never_the_password(make):
    owner = make.owner()
    assert owner.password_hash.startswith("$argon2id$")
    assert PASSWORD not in owner.password_hash
    PasswordHasher().verify(owner.password_hash, PASSWORD)
    try:
        PasswordHasher().verify(owner.password_hash, PASSWORD + "x")
        raise AssertionError("a wrong password verified")
    except VerifyMismatchError:
        pass


def test_each_hash_has_its_own_salt(make):
    assert auth.hash_password(PASSWORD) != auth.hash_password(PASSWORD)


def test_wrong_or_garbled_hash_does_not_verify():
    assert auth.verify_password(auth.hash_password("right-password"), "wrong") == (False, None)
    assert auth.verify_password("not-a-hash", "whatever") == (False, None)
    assert auth.verify_password("$argon2id$v=19$m=1024,t=1,p=1$broken", "x") == (False, None)


def test_unknown_email_still_verifies_a_hash(monkeypatch, client, make):
    """An unknown e-mail costs a hash verification too, so timing does not reveal accounts."""
    calls = []
    original = PasswordHasher.verify

    def counting(self, hash, password):
        calls.append(hash)
        return original(self, hash, password)

    monkeypatch.setattr(PasswordHasher, "verify", counting)
    response = client.post(
        "/api/v1/auth/token", json={"email": "nobody@example.test", "password": "anything-12"}
    )
    assert response.status_code == 401
    assert len(calls) == 1 and calls[0].startswith("$argon2id$")


def _create_schema(app):
    with app.app_context():
        db.create_all()


def _login(app, email: str, password: str = PASSWORD):
    response = app.test_client().post(
        "/api/v1/auth/token", json={"email": email, "password": password}
    )
    assert response.status_code == 200, response.get_json()


def _stored_hash(app, email: str) -> str:
    with app.app_context():
        return accounts.find_by_email(email).password_hash


def test_login_rehashes_when_the_parameters_rise(make_app):
    weak = make_app({"ARGON2_MEMORY_KIB": 512, "ARGON2_TIME_COST": 1})
    _create_schema(weak)
    with weak.app_context():
        accounts.create_owner(email="boss@example.test", password=PASSWORD)
        db.session.commit()
    old = _stored_hash(weak, "boss@example.test")
    assert old.startswith("$argon2id$v=19$m=512,t=1,p=1$")
    _login(weak, "boss@example.test")
    assert _stored_hash(weak, "boss@example.test") == old  # same parameters: left alone

    strong = make_app({"ARGON2_MEMORY_KIB": 2048, "ARGON2_TIME_COST": 2})
    _login(strong, "boss@example.test")
    new = _stored_hash(strong, "boss@example.test")
    assert new.startswith("$argon2id$v=19$m=2048,t=2,p=1$")
    # The new hash still checks the same password, and a wrong one still fails.
    _login(strong, "boss@example.test")
    assert _stored_hash(strong, "boss@example.test") == new
    wrong = strong.test_client().post(
        "/api/v1/auth/token", json={"email": "boss@example.test", "password": "wrong-password"}
    )
    assert wrong.status_code == 401


def test_failed_login_does_not_rehash(make_app):
    weak = make_app({"ARGON2_MEMORY_KIB": 512, "ARGON2_TIME_COST": 1})
    _create_schema(weak)
    with weak.app_context():
        accounts.create_owner(email="boss@example.test", password=PASSWORD)
        db.session.commit()
    old = _stored_hash(weak, "boss@example.test")
    strong = make_app({"ARGON2_MEMORY_KIB": 2048, "ARGON2_TIME_COST": 2})
    response = strong.test_client().post(
        "/api/v1/auth/token", json={"email": "boss@example.test", "password": "wrong-password"}
    )
    assert response.status_code == 401
    assert _stored_hash(strong, "boss@example.test") == old


def test_older_argon2_variant_is_rehashed_as_argon2id(client, make):
    owner = make.owner()
    owner.password_hash = PasswordHasher(memory_cost=1024, time_cost=1, type=Type.I).hash(PASSWORD)
    db.session.commit()
    response = client.post("/api/v1/auth/token", json={"email": owner.email, "password": PASSWORD})
    assert response.status_code == 200
    db.session.expire_all()
    assert db.session.get(Account, owner.id).password_hash.startswith("$argon2id$")
