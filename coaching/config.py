"""Settings read from the environment, and their validation at start.

Every setting is documented in the package docstring (`coaching/__init__.py`) and the README.
"""

from __future__ import annotations

import os
from datetime import timedelta

DEV_SECRET_KEY = "dev-only-secret-key-change-me-0123456789abcdef"


class ConfigError(RuntimeError):
    """Raised when the configuration cannot run the service."""


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _int(name: str, default: int) -> int:
    raw = _env(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from exc


class Config:
    """Read the environment once, when the app is created."""

    def __init__(self) -> None:
        self.ENV = _env("COACHING_ENV", "development")
        self.SECRET_KEY = _env("SECRET_KEY")
        self.SQLALCHEMY_DATABASE_URI = _env("DATABASE_URL")  # default filled in by create_app
        self.SQLALCHEMY_ENGINE_OPTIONS: dict = {"pool_pre_ping": True}
        self.MEDIA_STORAGE = _env("MEDIA_STORAGE", "local")
        self.MEDIA_ROOT = _env("MEDIA_ROOT", "./media")
        self.S3_BUCKET = _env("S3_BUCKET")
        self.S3_ENDPOINT_URL = _env("S3_ENDPOINT_URL")
        self.S3_SSE = _env("S3_SSE")  # e.g. "AES256" or "aws:kms"
        self.PUSH_SENDER = _env("PUSH_SENDER", "log")
        self.FIREBASE_CREDENTIALS = _env("FIREBASE_CREDENTIALS")
        self.DEVICE_PRUNE_DAYS = _int("DEVICE_PRUNE_DAYS", 60)  # push tokens unseen this long go
        self.RATELIMIT_STORAGE_URI = _env("RATELIMIT_STORAGE_URI", "memory://")
        # When the counter store (e.g. Redis) is down, serve without limits and log it rather than
        # failing every sign-in with a 500.
        self.RATELIMIT_SWALLOW_ERRORS = True
        # Number of reverse proxies in front of the service whose X-Forwarded-For/-Proto to trust
        # (rate limits and the audit log use the client address).
        self.TRUSTED_PROXIES = _int("TRUSTED_PROXIES", 0)
        self.RATELIMIT_LOGIN = _env("RATELIMIT_LOGIN", "10 per minute;50 per hour")
        self.RATELIMIT_REFRESH = _env("RATELIMIT_REFRESH", "30 per minute")
        self.RATELIMIT_INVITE_LOOKUP = _env("RATELIMIT_INVITE_LOOKUP", "20 per minute")
        self.RATELIMIT_REGISTRATION = _env("RATELIMIT_REGISTRATION", "10 per minute")
        self.PORT = _int("PORT", 5000)
        self.SCHEDULER_IN_PROCESS = _env("SCHEDULER_IN_PROCESS", "auto")
        self.ACCESS_TOKEN_TTL = timedelta(seconds=_int("ACCESS_TOKEN_TTL_SECONDS", 900))
        self.REFRESH_TOKEN_TTL = timedelta(days=_int("REFRESH_TOKEN_TTL_DAYS", 30))
        self.JWT_AUDIENCE = "coaching-api"
        self.JWT_ISSUER = "coaching"
        self.JWT_KEY_ID = _env("JWT_KEY_ID", "k1")
        # Argon2id, OWASP minimum: m=19 MiB, t=2, p=1. Raising these rehashes on next login.
        self.ARGON2_MEMORY_KIB = _int("ARGON2_MEMORY_KIB", 19456)
        self.ARGON2_TIME_COST = _int("ARGON2_TIME_COST", 2)
        self.ARGON2_PARALLELISM = _int("ARGON2_PARALLELISM", 1)
        self.INVITE_DEFAULT_DAYS = 30
        self.MAX_CONTENT_LENGTH = _int("MAX_JSON_BODY_BYTES", 1024 * 1024)
        self.MAX_VIDEO_BYTES = _int("MAX_VIDEO_BYTES", 1024**3)
        # Video coaching (coaching/messaging, coaching/media).
        self.MAX_VIDEO_SECONDS = _int("MAX_VIDEO_SECONDS", 300)
        self.MEDIA_URL_TTL_SECONDS = _int("MEDIA_URL_TTL_SECONDS", 600)  # capped at 900
        self.UPLOAD_EXPIRY_HOURS = _int("UPLOAD_EXPIRY_HOURS", 24)
        self.VIDEO_RETENTION_DAYS = _int("VIDEO_RETENTION_DAYS", 90)
        self.CORS_ORIGINS = _env("CORS_ORIGINS", "")
        # Privacy (coaching/privacy, docs/privacy.md).
        self.EXPORT_TTL_HOURS = _int("EXPORT_TTL_HOURS", 24)
        self.MEDICAL_RECORD_RETENTION_YEARS = _int("MEDICAL_RECORD_RETENTION_YEARS", 20)
        self.ERASURE_RETAINED_TABLES = _env("ERASURE_RETAINED_TABLES")  # None: privacy's default
        # The funnel on PostgreSQL runs half of its scans on a second connection when its scope
        # holds about this many invites (coaching/metrics/funnel.py; 0: always, -1: never).
        self.METRICS_PARALLEL_MIN_ROWS = _int("METRICS_PARALLEL_MIN_ROWS", 40000)
        # `metrics rebuild` on PostgreSQL builds the new milestone table on two connections
        # beside the live one (coaching/metrics/service.py; 1: in its own transaction alone).
        self.METRICS_REBUILD_CONNECTIONS = _int("METRICS_REBUILD_CONNECTIONS", 2)
        # The audit chain's HMAC-SHA256 key (coaching/audit/service.py): a secret the database
        # does not hold, so write access to it cannot recompute the chain. Unset: derived from
        # SECRET_KEY (a warning in production, where rotating SECRET_KEY would then break it).
        self.AUDIT_HMAC_KEY = _env("AUDIT_HMAC_KEY")
        # Rows up to this seq were written before the key, with plain SHA-256, and still verify
        # that way; later rows must carry the HMAC (0: none, as in a new installation).
        self.AUDIT_LEGACY_LAST_SEQ = _int("AUDIT_LEGACY_LAST_SEQ", 0)

        # flask-smorest / OpenAPI
        self.API_TITLE = "Coaching API"
        self.API_VERSION = "v1"
        self.OPENAPI_VERSION = "3.0.3"
        self.OPENAPI_URL_PREFIX = "/api"
        self.OPENAPI_JSON_PATH = "openapi.json"
        self.OPENAPI_SWAGGER_UI_PATH = "docs"
        self.OPENAPI_SWAGGER_UI_URL = None  # set when assets are served locally
        self.OPENAPI_REDOC_PATH = None
        self.JSON_SORT_KEYS = False

    @property
    def is_development(self) -> bool:
        return self.ENV in ("development", "testing")


def validate(config: dict) -> None:
    """Stop the service with a clear message when the configuration cannot work."""
    env = config["ENV"]
    if env not in ("development", "testing", "production"):
        raise ConfigError(f"COACHING_ENV must be development, testing or production, not {env!r}")
    if env == "production":
        key = config.get("SECRET_KEY")
        if not key or key == DEV_SECRET_KEY:
            raise ConfigError(
                "SECRET_KEY is required outside development: set it in the environment"
            )
        if len(key) < 32:
            raise ConfigError("SECRET_KEY must be at least 32 characters long")
    audit_key = config.get("AUDIT_HMAC_KEY")
    if env == "production" and audit_key is not None and len(audit_key) < 32:
        raise ConfigError("AUDIT_HMAC_KEY must be at least 32 characters long")
    if config.get("AUDIT_LEGACY_LAST_SEQ", 0) < 0:
        raise ConfigError("AUDIT_LEGACY_LAST_SEQ must be 0 or more")
    if config["MEDIA_STORAGE"] not in ("local", "s3"):
        raise ConfigError("MEDIA_STORAGE must be 'local' or 's3'")
    if config["MEDIA_STORAGE"] == "s3" and not config.get("S3_BUCKET"):
        raise ConfigError("MEDIA_STORAGE=s3 needs S3_BUCKET")
    if config["PUSH_SENDER"] not in ("log", "fcm"):
        raise ConfigError("PUSH_SENDER must be 'log' or 'fcm'")
    if config["PUSH_SENDER"] == "fcm" and not config.get("FIREBASE_CREDENTIALS"):
        raise ConfigError(
            "PUSH_SENDER=fcm needs FIREBASE_CREDENTIALS (path to a service-account JSON)"
        )
    if config["ARGON2_MEMORY_KIB"] < 19456 and env == "production":
        raise ConfigError(
            "ARGON2_MEMORY_KIB below the OWASP minimum (19456) is not allowed in production"
        )
