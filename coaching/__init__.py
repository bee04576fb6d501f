"""Backend of a blended-care ACT coaching programme for chronic low back pain.

`create_app()` builds the Flask app. Settings come from the environment:

| variable | default | meaning |
|---|---|---|
| `COACHING_ENV` | `development` | `development`, `testing` or `production`; production validates strictly |
| `DATABASE_URL` | SQLite file `instance/coaching.db` | SQLAlchemy URL (PostgreSQL in production) |
| `SECRET_KEY` | a development key, with a warning | signs tokens and URLs; required (32+ chars) in production |
| `AUDIT_HMAC_KEY` | derived from `SECRET_KEY` | the audit chain's HMAC key, kept outside the database (32+ chars in production) |
| `AUDIT_LEGACY_LAST_SEQ` | `0` | audit rows up to this number predate the key and verify with plain SHA-256 |
| `MEDIA_STORAGE` | `local` | `local` (files under `MEDIA_ROOT`) or `s3` |
| `MEDIA_ROOT` | `./media` | where local media is kept |
| `S3_BUCKET`, `S3_ENDPOINT_URL`, `S3_SSE` | none | the bucket, an S3-compatible endpoint, server-side encryption |
| `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_DEFAULT_REGION` | boto3's | the usual AWS variables |
| `PUSH_SENDER` | `log` | `log` (records what would be sent) or `fcm` |
| `FIREBASE_CREDENTIALS` | none | service-account JSON file, needed with `PUSH_SENDER=fcm` |
| `RATELIMIT_STORAGE_URI` | `memory://` | flask-limiter storage, e.g. `redis://host:6379/0` for several instances |
| `RATELIMIT_LOGIN`, `RATELIMIT_REFRESH`, `RATELIMIT_INVITE_LOOKUP`, `RATELIMIT_REGISTRATION` | see config.py | limits per client address |
| `ACCESS_TOKEN_TTL_SECONDS` | `900` | lifetime of access tokens |
| `REFRESH_TOKEN_TTL_DAYS` | `30` | lifetime of refresh tokens |
| `ARGON2_MEMORY_KIB`, `ARGON2_TIME_COST`, `ARGON2_PARALLELISM` | `19456`, `2`, `1` | Argon2id parameters (OWASP minimum) |
| `MAX_JSON_BODY_BYTES` | `1048576` | largest request body accepted (413 above; video uploads have their own limit) |
| `MAX_VIDEO_BYTES` | `1073741824` | largest video upload (larger: 413) |
| `MAX_VIDEO_SECONDS` | `300` | longest video accepted by the check |
| `MEDIA_URL_TTL_SECONDS` | `600` | lifetime of signed upload and playback URLs (at most 900) |
| `UPLOAD_EXPIRY_HOURS` | `24` | a video upload never completed within this fails and is deleted |
| `VIDEO_RETENTION_DAYS` | `90` | videos are deleted this long after the programme ended |
| `TRUSTED_PROXIES` | `0` | reverse proxies in front of the service whose `X-Forwarded-For` to trust |
| `CORS_ORIGINS` | none | comma-separated origins allowed to call `/api/*` from a browser (e.g. the dashboard's) |
| `EXPORT_TTL_HOURS` | `24` | how long a patient's export ZIP can be downloaded before it is deleted |
| `MEDICAL_RECORD_RETENTION_YEARS` | `20` | how long the medical record outlives an erasure request (WGBO; 0: not kept) |
| `ERASURE_RETAINED_TABLES` | outcome tables | tables kept as the medical record on erasure (`none`: nothing); see docs/privacy.md |
| `METRICS_PARALLEL_MIN_ROWS` | `40000` | PostgreSQL: a dashboard funnel over about this many invites splits its scans over two connections (`-1`: never) |
| `METRICS_REBUILD_CONNECTIONS` | `2` | PostgreSQL: `metrics rebuild` builds the new milestone table on two more connections beside the live one (`1`: in its own transaction alone) |
| `SCHEDULER_IN_PROCESS` | `auto` | run APScheduler inside the development server (`auto`: in development only) |
| `PORT` | `5000` | port of the development server |
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

from flask import Flask, send_from_directory

from coaching.config import DEV_SECRET_KEY, Config, validate

PROJECT_ROOT = Path(__file__).resolve().parent.parent

log = logging.getLogger(__name__)


def create_app(overrides: dict | None = None, *, clock=None) -> Flask:
    """Build the app: configuration, extensions, blueprints, CLI, then validate the config."""
    app = Flask(__name__, instance_path=str(PROJECT_ROOT / "instance"))
    configure_settings(app, overrides)
    configure_logging(app)
    configure_clock(app, clock)
    configure_extensions(app)
    configure_blueprints(app)
    configure_cli(app)
    configure_hooks(app)
    return app


def configure_settings(app: Flask, overrides: dict | None) -> None:
    app.config.from_object(Config())
    if overrides:
        app.config.update(overrides)
    if not app.config.get("MODULES_DIR"):
        app.config["MODULES_DIR"] = str(PROJECT_ROOT / "modules")
    if not app.config.get("SQLALCHEMY_DATABASE_URI"):
        Path(app.instance_path).mkdir(parents=True, exist_ok=True)
        app.config["SQLALCHEMY_DATABASE_URI"] = (
            f"sqlite:///{Path(app.instance_path) / 'coaching.db'}"
        )
    uri = app.config["SQLALCHEMY_DATABASE_URI"]
    if uri.startswith("postgresql://"):
        # psycopg 3 is the driver we ship.
        app.config["SQLALCHEMY_DATABASE_URI"] = (
            "postgresql+psycopg://" + uri[len("postgresql://") :]
        )
    validate(app.config)
    if not app.config.get("SECRET_KEY"):
        log.warning("SECRET_KEY is not set: using the development key (never in production)")
        app.config["SECRET_KEY"] = DEV_SECRET_KEY


def configure_logging(app: Flask) -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    # Chatter at INFO on every command or every job run; our own runner logs each job already.
    for name in ("alembic.runtime.plugins", "apscheduler.executors.default"):
        logging.getLogger(name).setLevel(logging.WARNING)


def configure_clock(app: Flask, clock) -> None:
    from coaching.clock import Clock

    app.extensions["clock"] = clock or Clock()


def configure_extensions(app: Flask) -> None:
    import swagger_ui_bundle

    from coaching import models  # noqa: F401  (register every table on the metadata)
    from coaching.extensions import api, db, limiter, migrate

    db.init_app(app)
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        _configure_sqlite(app)
    migrate.init_app(app, db, directory=str(PROJECT_ROOT / "migrations"))
    limiter.init_app(app)
    app.config["OPENAPI_SWAGGER_UI_URL"] = "/api/docs/static/"
    app.config["API_SPEC_OPTIONS"] = {
        "components": {
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            }
        },
        "info": {"description": "The contract of ../shared/API.md, machine-readable."},
    }
    api.init_app(app)

    @app.get("/api/docs/static/<path:filename>")
    def swagger_static(filename):
        return send_from_directory(swagger_ui_bundle.swagger_ui_path, filename)

    from coaching.errors import register_error_handlers

    register_error_handlers(app)


def _configure_sqlite(app: Flask) -> None:
    from sqlalchemy import event

    from coaching.extensions import db

    with app.app_context():
        engine = db.engine

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.close()


# Each domain package may have `api.py` (a smorest `blp`, or several in `blps`) and `cli.py`
# (a click group named `cli`); they are wired here in this order.
DOMAINS = (
    "accounts",
    "practices",
    "enrolment",
    "content",
    "appointments",
    "patients",
    "outcomes",
    "messaging",
    "media",
    "notifications",
    "metrics",
    "dashboard",
    "audit",
    "privacy",
    "scheduling",
    "demo",
)


def _domain_module(domain: str, name: str):
    module_name = f"coaching.{domain}.{name}"
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name in (module_name, f"coaching.{domain}"):
            return None
        raise


def configure_blueprints(app: Flask) -> None:
    from coaching import health
    from coaching.extensions import api

    app.register_blueprint(health.blp)
    for domain in DOMAINS:
        module = _domain_module(domain, "api")
        if module is None:
            continue
        for blp in getattr(module, "blps", None) or [module.blp]:
            api.register_blueprint(blp)
    for domain in DOMAINS:
        module = _domain_module(domain, "views")  # plain Flask pages (e.g. the dashboard)
        if module is not None:
            app.register_blueprint(module.blp)


def configure_cli(app: Flask) -> None:
    for domain in DOMAINS:
        module = _domain_module(domain, "cli")
        if module is not None:
            app.cli.add_command(module.cli)


def configure_hooks(app: Flask) -> None:
    if app.config["TRUSTED_PROXIES"] > 0:
        from werkzeug.middleware.proxy_fix import ProxyFix

        n = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)
    from coaching.auth import forget_request_state
    from coaching.web import refuse_non_json_body

    app.before_request(forget_request_state)
    app.before_request(refuse_non_json_body)
    app.json.sort_keys = False
    origins = [o.strip() for o in (app.config.get("CORS_ORIGINS") or "").split(",") if o.strip()]
    if origins:
        from flask_cors import CORS

        # A dashboard served from another origin: bearer tokens only, never cookies.
        CORS(
            app,
            resources={r"/api/*": {"origins": origins}},
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "If-None-Match"],
            expose_headers=["X-Pagination", "Retry-After", "ETag", "Idempotent-Replayed"],
            supports_credentials=False,
            max_age=600,
        )
    is_production = app.config["ENV"] == "production"

    def _retry_after_only_on_refusals(response):
        # flask-limiter sets Retry-After on every answer of a limited route (a 200 of
        # /auth/token said "Retry-After: 0"); API.md has it on 429 (and 503) only.
        if response.status_code < 400:
            response.headers.pop("Retry-After", None)
        return response

    # First in the list: after-request functions run last to first, so this runs after the
    # limiter's (registered when it was bound to the app).
    app.after_request_funcs.setdefault(None, []).insert(0, _retry_after_only_on_refusals)

    @app.after_request
    def _security_headers(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        response.headers.setdefault(
            "Permissions-Policy", "camera=(), microphone=(), geolocation=()"
        )
        if response.mimetype == "application/json":
            response.headers.setdefault("Cache-Control", "no-store")
            # JSON is never a document to render: no scripts, no framing.
            response.headers.setdefault(
                "Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"
            )
        if is_production:
            response.headers.setdefault(
                "Strict-Transport-Security", "max-age=31536000; includeSubDomains"
            )
        return response

    importlib.import_module("coaching.scheduling.runner").start_in_process(app)
