"""Test fixtures shared by every domain: an app on SQLite or PostgreSQL, a settable clock, a
client, and factories for practices, therapists and patients.

The database comes from `COACHING_TEST_DATABASE_URL` (the test command sets it from
`TEST_DATABASE_URL` for the PostgreSQL run); without it, a SQLite file in a temporary folder.
The schema is built by the Alembic migrations, and every table is emptied after each test.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from coaching import create_app
from coaching.clock import FrozenClock
from coaching.extensions import db, limiter

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday
PASSWORD = "correct-horse-battery"


def _database_url(tmp_path_factory) -> str:
    url = os.environ.get("COACHING_TEST_DATABASE_URL")
    if not url:
        return f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        # Each pytest-xdist worker gets its own PostgreSQL database next to the given one.
        url = _worker_database(url, worker)
    return url


def _worker_database(url: str, worker: str) -> str:
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    base = make_url(url.replace("postgresql://", "postgresql+psycopg://", 1))
    name = f"{base.database}_{worker}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.execute(
            text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
        ).first()
        if not exists:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def clock():
    return FrozenClock(START)


@pytest.fixture(scope="session")
def app(tmp_path_factory, clock):
    media_root = tmp_path_factory.mktemp("media")
    app = create_app(
        {
            "ENV": "testing",
            "TESTING": True,
            "SECRET_KEY": "test-secret-key-that-is-long-enough-0123456789",
            "SQLALCHEMY_DATABASE_URI": _database_url(tmp_path_factory),
            "MEDIA_ROOT": str(media_root),
            # Fast hashing in tests; test_passwords checks the production parameters.
            "ARGON2_MEMORY_KIB": 1024,
            "ARGON2_TIME_COST": 1,
            "RATELIMIT_STORAGE_URI": "memory://",
        },
        clock=clock,
    )
    with app.app_context():
        _reset_schema()
        from flask_migrate import upgrade

        upgrade()
    yield app
    with app.app_context():
        db.engine.dispose()


def _reset_schema() -> None:
    engine = db.engine
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        else:
            rows = conn.execute(text("SELECT name FROM sqlite_master WHERE type='table'")).all()
            conn.execute(text("PRAGMA foreign_keys=OFF"))
            for (name,) in rows:
                conn.execute(text(f'DROP TABLE IF EXISTS "{name}"'))
            conn.execute(text("PRAGMA foreign_keys=ON"))


def _empty_tables() -> None:
    tables = [t.name for t in db.metadata.sorted_tables]
    engine = db.engine
    with engine.begin() as conn:
        # DELETE in reverse dependency order: on small tables it is far cheaper than TRUNCATE,
        # which rewrites every table's files on PostgreSQL.
        if engine.dialect.name == "sqlite":
            conn.execute(text("PRAGMA foreign_keys=OFF"))
        for name in reversed(tables):
            conn.execute(text(f'DELETE FROM "{name}"'))
        if engine.dialect.name == "sqlite":
            conn.execute(text("PRAGMA foreign_keys=ON"))


@pytest.fixture(autouse=True)
def _isolate(app, clock):
    clock.set(START)
    limiter.reset()
    ctx = app.app_context()
    ctx.push()
    yield
    db.session.remove()
    _empty_tables()
    ctx.pop()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def is_postgres(app) -> bool:
    return db.engine.dialect.name == "postgresql"


# --- factories ---------------------------------------------------------------------------------


class Factory:
    """Builds accounts and the objects around them through the services, committing each."""

    def __init__(self, client):
        self.client = client
        self._n = 0

    def _next(self) -> int:
        self._n += 1
        return self._n

    def owner(self, **kw):
        from coaching.accounts import service

        owner = service.create_owner(
            email=kw.get("email", f"owner{self._next()}@example.test"), password=PASSWORD
        )
        db.session.commit()
        return owner

    def practice(self, **kw):
        from coaching.practices import service

        n = self._next()
        practice = service.create_practice(
            name=kw.get("name", f"Practice {n}"), city=kw.get("city", "Utrecht")
        )
        db.session.commit()
        return practice

    def therapist(self, practice=None, **kw):
        from coaching.practices import service

        practice = practice or self.practice()
        n = self._next()
        therapist = service.create_therapist(
            practice=practice,
            email=kw.get("email", f"therapist{n}@example.test"),
            display_name=kw.get("display_name", f"Therapist {n}"),
            password=PASSWORD,
        )
        db.session.commit()
        return therapist

    def invite(self, therapist=None, **kw):
        from coaching.enrolment import service

        therapist = therapist or self.therapist()
        invite = service.create_invite(
            therapist=therapist,
            referral_source=kw.get("referral_source", "gp"),
            channel=kw.get("channel", "email"),
            expires_in_days=kw.get("expires_in_days"),
        )
        db.session.commit()
        return invite

    def patient(self, therapist=None, *, consented: bool = True, **kw):
        from coaching.enrolment import service

        invite = self.invite(
            therapist, **{k: kw[k] for k in ("referral_source", "channel") if k in kw}
        )
        n = self._next()
        patient = service.register_patient(
            invite_code=invite.code,
            email=kw.get("email", f"patient{n}@example.test"),
            password=PASSWORD,
            display_name=kw.get("display_name", f"Patient {n}"),
            locale=kw.get("locale", "nl"),
            timezone=kw.get("timezone", "Europe/Amsterdam"),
        )
        if consented:
            service.accept_consent(patient=patient, version=service.current_consent_version())
        db.session.commit()
        return patient

    def headers(self, account) -> dict:
        """Return Authorization headers for a fresh login of an account."""
        from coaching.accounts import service

        pair = service.start_login(account)
        db.session.commit()
        return {"Authorization": f"Bearer {pair.access_token}"}


@pytest.fixture
def make(client):
    return Factory(client)


@pytest.fixture
def world(make):
    """Two practices; practice A has two therapists and patients; practice B one of each."""
    practice_a = make.practice(name="Practice A")
    practice_b = make.practice(name="Practice B")
    therapist = make.therapist(practice_a)
    colleague = make.therapist(practice_a)
    other_therapist = make.therapist(practice_b)
    patient = make.patient(therapist)
    other_patient = make.patient(therapist)
    foreign_patient = make.patient(other_therapist)
    owner = make.owner()

    class World:
        pass

    w = World()
    w.__dict__.update(locals())
    w.h = {
        name: make.headers(acc)
        for name, acc in {
            "owner": owner,
            "therapist": therapist,
            "colleague": colleague,
            "other_therapist": other_therapist,
            "patient": patient,
            "other_patient": other_patient,
            "foreign_patient": foreign_patient,
        }.items()
    }
    return w


def assert_error(response, code: int, field: str | None = None, contains: str | None = None):
    """Assert an error answer in the contract's shape (and that it names a field)."""
    assert response.status_code == code, (response.status_code, response.get_data(as_text=True))
    body = response.get_json()
    assert body["code"] == code
    assert isinstance(body["status"], str) and body["status"]
    assert isinstance(body["message"], str) and body["message"]
    for name, messages in body.get("errors", {}).items():  # {field: [messages]}, never nested
        assert isinstance(messages, list) and messages, (name, body)
        assert all(isinstance(m, str) and m for m in messages), (name, body)
    if field is not None:
        assert field in body["errors"], body
    if contains is not None:
        assert contains in body["message"].lower(), body
    return body
