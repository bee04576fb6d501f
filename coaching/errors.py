"""One exception hierarchy with an HTTP status on each class, and the handlers that answer every
error in the contract's shape: `{"code", "status", "message", "errors"?}`."""

from __future__ import annotations

import contextlib
import logging
import os
import traceback
from http import HTTPStatus

from flask import Flask, jsonify
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

# webargs reports errors per location; the contract names fields directly.
_LOCATIONS = ("json", "query", "querystring", "form", "files", "headers", "path", "view_args")


class AppError(Exception):
    """A domain error; services raise these and the web layer maps them to HTTP."""

    code = 400
    default_message = "Bad request"

    def __init__(self, message: str | None = None, *, errors: dict | None = None, headers=None):
        super().__init__(message or self.default_message)
        self.message = message or self.default_message
        self.errors = errors
        self.headers = headers or {}


class Unauthorized(AppError):
    code = 401
    default_message = "Authentication required"

    def __init__(self, message: str | None = None, **kwargs):
        super().__init__(message, **kwargs)
        self.headers.setdefault("WWW-Authenticate", 'Bearer realm="coaching"')


class Forbidden(AppError):
    code = 403
    default_message = "Not allowed"


class NotFound(AppError):
    code = 404
    default_message = "Not found"


class Conflict(AppError):
    code = 409
    default_message = "Conflict"


class PayloadTooLarge(AppError):
    code = 413
    default_message = "Too large"


class UnsupportedMediaType(AppError):
    code = 415
    default_message = "Unsupported media type"


class ValidationFailed(AppError):
    code = 422
    default_message = "Validation failed"

    @classmethod
    def field(cls, name: str, message: str) -> ValidationFailed:
        """Return an error naming one field."""
        return cls(f"{name}: {message}", errors={name: [message]})


class ServiceUnavailable(AppError):
    code = 503
    default_message = "Service temporarily unavailable"


def error_body(code: int, message: str | None = None, errors: dict | None = None) -> dict:
    """Return the contract's error body."""
    try:
        status = HTTPStatus(code).phrase
    except ValueError:
        status = "Error"
    body = {"code": code, "status": status, "message": message or status}
    if errors:
        body["errors"] = errors
    return body


def _flatten(errors: dict) -> dict:
    """Return the errors as the contract has them, `{field: [messages]}`: webargs' locations
    merged away, and nested fields (a Dict's keys, a Nested schema's fields, a List's items)
    named by their dotted path, e.g. `answers.odi11` or `quiet_hours.start`."""
    if not isinstance(errors, dict):
        return {"_schema": [str(errors)]}
    merged: dict = {}
    for key, value in errors.items():
        if key in _LOCATIONS and isinstance(value, dict):
            merged.update(value)
        else:
            merged[key] = value
    flat: dict[str, list[str]] = {}
    _flatten_into(flat, "", merged)
    return flat


def _flatten_into(flat: dict[str, list[str]], prefix: str, value) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            if prefix and key in ("key", "value"):
                # marshmallow's Dict field: the error is about the entry `prefix` itself.
                _flatten_into(flat, prefix, inner)
            else:
                _flatten_into(flat, f"{prefix}.{key}" if prefix else str(key), inner)
        return
    messages = value if isinstance(value, list) else [value]
    for message in messages:
        if isinstance(message, dict):
            _flatten_into(flat, prefix, message)
        else:
            flat.setdefault(prefix or "_schema", []).append(str(message))


def _first_message(errors: dict) -> str:
    for field, msgs in errors.items():
        if isinstance(msgs, dict):
            return f"{field}.{_first_message(msgs)}"
        if isinstance(msgs, list) and msgs:
            return f"{field}: {msgs[0]}"
        return f"{field}: {msgs}"
    return "Validation failed"


def render_http_exception(error: HTTPException):
    """Answer a werkzeug HTTPException (routing, abort(), webargs) in the contract's shape."""
    code = error.code or 500
    data = getattr(error, "data", None) or {}
    errors = data.get("errors") or data.get("messages")
    message = data.get("message")
    if errors:
        errors = _flatten(errors)
        message = message or _first_message(errors)
        if code != 422:
            # The contract gives `errors` only with validation failures (e.g. not for bad JSON).
            message = "Malformed JSON body" if code == 400 and "json" in errors else message
            errors = None
    if message is None:
        message = error.description if code != 500 else "Internal server error"
    headers = dict(data.get("headers") or {})
    if code == 429:
        message = "Too many requests: try again later"
    response = jsonify(error_body(code, message, errors))
    response.status_code = code
    for key, value in headers.items():
        response.headers[key] = value
    if code == 405 and hasattr(error, "valid_methods") and error.valid_methods:
        response.headers["Allow"] = ", ".join(error.valid_methods)
    return response


def _raised_in_json_decoder(error: BaseException) -> bool:
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and frames[-1].filename.endswith(os.path.join("json", "decoder.py"))


def _refuse_unstorable_path_values(_endpoint, values) -> None:
    # A NUL in an id or code from the URL names nothing that can exist, and PostgreSQL refuses
    # it in a query (a 500): answer 404 before any view looks it up.
    if values and any(isinstance(v, str) and "\x00" in v for v in values.values()):
        raise NotFound()


def register_error_handlers(app: Flask) -> None:
    """Make every error, expected or not, answer in the contract's shape."""
    app.url_value_preprocessor(_refuse_unstorable_path_values)

    @app.errorhandler(AppError)
    def _app_error(error: AppError):
        response = jsonify(error_body(error.code, error.message, error.errors))
        response.status_code = error.code
        for key, value in error.headers.items():
            response.headers[key] = value
        return response

    @app.errorhandler(IntegrityError)
    def _integrity(error: IntegrityError):
        from coaching.extensions import db

        db.session.rollback()
        log.info("integrity error answered as 409: %s", error.orig)
        response = jsonify(error_body(409, "Conflict with existing data"))
        response.status_code = 409
        return response

    @app.errorhandler(DataError)
    def _unstorable(error: DataError):
        from coaching.extensions import db

        # The last line of defence: a value the schemas let through but the database refuses (too
        # long for its column, out of range for its type) is the client's input, not a fault of
        # ours. Which field it was is not known here; the warning is there to add the check.
        with contextlib.suppress(Exception):
            db.session.rollback()
        log.warning("database refused a value, answered as 422: %s", error.orig)
        message = "A value is too long or out of range to be stored"
        response = jsonify(error_body(422, message, {"_schema": [message]}))
        response.status_code = 422
        return response

    @app.errorhandler(OperationalError)
    def _db_down(error: OperationalError):
        from coaching.extensions import db

        # The connection may be gone entirely; rolling back is best effort.
        with contextlib.suppress(Exception):
            db.session.rollback()
        log.error("database unavailable: %s", error.orig)
        response = jsonify(error_body(503, "The database is unavailable; try again shortly"))
        response.status_code = 503
        response.headers["Retry-After"] = "5"
        return response

    from botocore.exceptions import BotoCoreError, ClientError

    def _store_down(error: Exception):
        from coaching.extensions import db

        with contextlib.suppress(Exception):
            db.session.rollback()
        log.error("media store unavailable: %s", error)
        response = jsonify(error_body(503, "The media store is unavailable; try again shortly"))
        response.status_code = 503
        response.headers["Retry-After"] = "5"
        return response

    @app.errorhandler(BotoCoreError)
    def _store_unreachable(error: BotoCoreError):
        # No connection, no credentials from the platform, a timeout: the store is out of reach.
        return _store_down(error)

    @app.errorhandler(ClientError)
    def _store_refused(error: ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        if status >= 500 or error.response.get("Error", {}).get("Code") == "SlowDown":
            return _store_down(error)
        return _unexpected(error)  # a 4xx from the store is our mistake (keys, bucket): a 500

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        if isinstance(error, HTTPException):
            return render_http_exception(error)
        if isinstance(error, RecursionError) and _raised_in_json_decoder(error):
            # JSON nested thousands deep: malformed input, not a fault of ours.
            response = jsonify(error_body(400, "Malformed JSON body: nested too deeply"))
            response.status_code = 400
            return response
        log.exception("unhandled error")
        response = jsonify(error_body(500, "Internal server error"))
        response.status_code = 500
        return response
