"""Fixtures of the foundation tests: extra apps with their own settings, sign-in helpers and a
snapshot of every table to prove that a refused request changed nothing."""

from __future__ import annotations

import functools
import os

import pytest
from sqlalchemy import func, select

from coaching import create_app
from coaching.extensions import api, db, limiter
from tests.conftest import PASSWORD

TEST_SECRET = "test-secret-key-that-is-long-enough-0123456789"


@pytest.fixture
def make_app(tmp_path, clock):
    """Return a factory of further apps with their own settings.

    `api` and `limiter` are module-level singletons that `init_app` rebinds to the newest app;
    their state is put back afterwards so the session's app keeps working as before.
    """
    saved_api = (api._app, api.config, api.spec)
    saved_limiter = (
        limiter._storage,
        limiter._limiter,
        limiter._storage_uri,
        limiter._key_prefix,
    )
    apps = []

    def factory(overrides: dict | None = None, *, with_defaults: bool = True):
        settings = {}
        if with_defaults:
            settings = {
                "ENV": "testing",
                "TESTING": True,
                "SECRET_KEY": TEST_SECRET,
                "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'other.db'}",
                "MEDIA_ROOT": str(tmp_path / "media"),
                "ARGON2_MEMORY_KIB": 1024,
                "ARGON2_TIME_COST": 1,
                "RATELIMIT_STORAGE_URI": "memory://",
            }
        settings.update(overrides or {})
        new = create_app(settings, clock=clock)
        apps.append(new)
        return new

    yield factory
    for other in apps:
        with other.app_context():
            db.session.remove()
            db.engine.dispose()
    api._app, api.config, api.spec = saved_api
    (limiter._storage, limiter._limiter, limiter._storage_uri, limiter._key_prefix) = saved_limiter


class People:
    """The accounts of the shared `world` fixture, each made only when a test first uses it
    (most tests need two or three of them, and every account costs a password hash)."""

    def __init__(self, make):
        self._make = make
        self.h = _Headers(self)

    def fresh(self, name: str) -> dict:
        """Return headers of a new login (after the clock moved past the cached token's life)."""
        return self._make.headers(getattr(self, name))

    @functools.cached_property
    def practice_a(self):
        return self._make.practice(name="Practice A")

    @functools.cached_property
    def practice_b(self):
        return self._make.practice(name="Practice B")

    @functools.cached_property
    def owner(self):
        return self._make.owner()

    @functools.cached_property
    def therapist(self):
        return self._make.therapist(self.practice_a)

    @functools.cached_property
    def colleague(self):
        return self._make.therapist(self.practice_a)

    @functools.cached_property
    def other_therapist(self):
        return self._make.therapist(self.practice_b)

    @functools.cached_property
    def patient(self):
        return self._make.patient(self.therapist)

    @functools.cached_property
    def other_patient(self):
        return self._make.patient(self.therapist)

    @functools.cached_property
    def foreign_patient(self):
        return self._make.patient(self.other_therapist)

    @functools.cached_property
    def new_patient(self):
        """A registered patient who has not accepted consent yet."""
        return self._make.patient(self.therapist, consented=False)


class _Headers:
    def __init__(self, people: People):
        self._people = people
        self._cache: dict[str, dict] = {}

    def __getitem__(self, name: str) -> dict:
        if name not in self._cache:
            self._cache[name] = self._people._make.headers(getattr(self._people, name))
        return self._cache[name]


@pytest.fixture
def people(make) -> People:
    return People(make)


@pytest.fixture
def login(client):
    """Return a function that signs in over the API and returns the token pair."""

    def _login(email: str, password: str = PASSWORD) -> dict:
        response = client.post("/api/v1/auth/token", json={"email": email, "password": password})
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    return _login


def bearer(token: str) -> dict:
    """Return an Authorization header for an access token."""
    return {"Authorization": f"Bearer {token}"}


def table_counts() -> dict[str, int]:
    """Return the number of rows of every table (to prove a refused request wrote nothing)."""
    db.session.rollback()
    return {
        table.name: db.session.execute(select(func.count()).select_from(table)).scalar_one()
        for table in db.metadata.sorted_tables
    }


@pytest.fixture
def test_database_url() -> str | None:
    return os.environ.get("COACHING_TEST_DATABASE_URL")
