"""Configuration from the environment, validated when the app is created."""

from __future__ import annotations

import logging

import pytest

from coaching import create_app
from coaching.config import DEV_SECRET_KEY, Config, ConfigError
from coaching.extensions import db
from tests.foundation.conftest import TEST_SECRET

SETTINGS = (
    "COACHING_ENV",
    "SECRET_KEY",
    "DATABASE_URL",
    "MEDIA_STORAGE",
    "MEDIA_ROOT",
    "S3_BUCKET",
    "S3_ENDPOINT_URL",
    "PUSH_SENDER",
    "FIREBASE_CREDENTIALS",
    "RATELIMIT_STORAGE_URI",
    "PORT",
    "ACCESS_TOKEN_TTL_SECONDS",
    "REFRESH_TOKEN_TTL_DAYS",
    "ARGON2_MEMORY_KIB",
    "ARGON2_TIME_COST",
    "ARGON2_PARALLELISM",
    "MAX_JSON_BODY_BYTES",
)


@pytest.fixture
def env(monkeypatch, tmp_path):
    """A clean environment with a throw-away SQLite database; returns monkeypatch."""
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'config.db'}")
    monkeypatch.setenv("SCHEDULER_IN_PROCESS", "false")
    return monkeypatch


def test_defaults(env):
    env.delenv("DATABASE_URL")
    config = Config()
    assert config.ENV == "development"
    assert config.SECRET_KEY is None
    assert config.SQLALCHEMY_DATABASE_URI is None  # create_app fills in instance/coaching.db
    assert config.MEDIA_STORAGE == "local" and config.MEDIA_ROOT == "./media"
    assert config.PUSH_SENDER == "log"
    assert config.RATELIMIT_STORAGE_URI == "memory://"
    assert config.PORT == 5000
    assert config.ACCESS_TOKEN_TTL.total_seconds() == 900
    assert config.REFRESH_TOKEN_TTL.days == 30
    assert config.MAX_CONTENT_LENGTH == 1024 * 1024


def test_values_come_from_the_environment(env):
    env.setenv("PORT", "8080")
    env.setenv("ACCESS_TOKEN_TTL_SECONDS", "300")
    env.setenv("RATELIMIT_STORAGE_URI", "redis://127.0.0.1:6379/3")
    env.setenv("MEDIA_STORAGE", "s3")
    env.setenv("S3_BUCKET", "videos")
    config = Config()
    assert config.PORT == 8080
    assert config.ACCESS_TOKEN_TTL.total_seconds() == 300
    assert config.RATELIMIT_STORAGE_URI == "redis://127.0.0.1:6379/3"
    assert (config.MEDIA_STORAGE, config.S3_BUCKET) == ("s3", "videos")


def test_empty_variables_count_as_unset(env):
    env.setenv("PUSH_SENDER", "")
    env.setenv("PORT", "")
    config = Config()
    assert config.PUSH_SENDER == "log" and config.PORT == 5000


def test_whole_numbers_are_checked(env):
    env.setenv("PORT", "eighty")
    with pytest.raises(ConfigError, match="PORT must be a whole number"):
        create_app()


def test_production_without_secret_key_stops_with_a_clear_message(env):
    env.setenv("COACHING_ENV", "production")
    with pytest.raises(ConfigError, match="SECRET_KEY is required outside development"):
        create_app()


def test_production_refuses_the_development_key_and_short_keys(env):
    env.setenv("COACHING_ENV", "production")
    env.setenv("SECRET_KEY", DEV_SECRET_KEY)
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        create_app()
    env.setenv("SECRET_KEY", "too-short")
    with pytest.raises(ConfigError, match="at least 32 characters"):
        create_app()


def test_production_refuses_weak_password_hashing(env):
    env.setenv("COACHING_ENV", "production")
    env.setenv("SECRET_KEY", TEST_SECRET)
    env.setenv("ARGON2_MEMORY_KIB", "4096")
    with pytest.raises(ConfigError, match="ARGON2_MEMORY_KIB"):
        create_app()


def test_unknown_environment_name_is_refused(env):
    env.setenv("COACHING_ENV", "staging")
    with pytest.raises(ConfigError, match="COACHING_ENV"):
        create_app()


def test_s3_needs_a_bucket(env):
    env.setenv("MEDIA_STORAGE", "s3")
    with pytest.raises(ConfigError, match="S3_BUCKET"):
        create_app()


def test_unknown_media_storage_is_refused(env):
    env.setenv("MEDIA_STORAGE", "ftp")
    with pytest.raises(ConfigError, match="MEDIA_STORAGE"):
        create_app()


def test_fcm_needs_credentials(env):
    env.setenv("PUSH_SENDER", "fcm")
    with pytest.raises(ConfigError, match="FIREBASE_CREDENTIALS"):
        create_app()


def test_unknown_push_sender_is_refused(env):
    env.setenv("PUSH_SENDER", "pigeon")
    with pytest.raises(ConfigError, match="PUSH_SENDER"):
        create_app()


def test_production_with_a_proper_key_starts(env, make_app):
    env.setenv("COACHING_ENV", "production")
    env.setenv("SECRET_KEY", TEST_SECRET)
    app = make_app(with_defaults=False)
    assert app.config["ENV"] == "production"
    assert app.config["SECRET_KEY"] == TEST_SECRET
    assert app.config["ARGON2_MEMORY_KIB"] == 19456


def test_development_without_secret_key_warns_and_uses_the_development_key(env, make_app, caplog):
    with caplog.at_level(logging.WARNING, logger="coaching"):
        app = make_app(with_defaults=False)
    assert app.config["SECRET_KEY"] == DEV_SECRET_KEY
    assert any("SECRET_KEY is not set" in record.getMessage() for record in caplog.records)


def test_postgresql_url_gets_the_psycopg_driver(env, make_app, test_database_url):
    url = test_database_url or "postgresql://postgres@127.0.0.1:5432/test_foundation"
    env.setenv("DATABASE_URL", url)
    app = make_app(with_defaults=False)
    assert app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql+psycopg://")
    with app.app_context():
        assert db.engine.dialect.name == "postgresql"
        assert db.engine.dialect.driver == "psycopg"
    if test_database_url and test_database_url.startswith("postgresql://"):
        # On the PostgreSQL run the database is reachable: the app answers from it.
        response = app.test_client().get("/healthz")
        assert response.status_code == 200 and response.get_json()["database"] == "ok"


def test_media_root_and_json_limit_settings(env, make_app, tmp_path):
    env.setenv("MEDIA_ROOT", str(tmp_path / "m"))
    env.setenv("MAX_JSON_BODY_BYTES", "2048")
    app = make_app(with_defaults=False)
    assert app.config["MEDIA_ROOT"] == str(tmp_path / "m")
    response = app.test_client().post(
        "/api/v1/auth/token",
        data='{"email": "' + "a" * 4000 + '"}',
        content_type="application/json",
    )
    assert response.status_code == 413
    assert response.get_json()["code"] == 413
