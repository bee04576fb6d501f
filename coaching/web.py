"""Helpers for views: one transaction per request, idempotent creates, and pagination."""

from __future__ import annotations

import functools

from flask import make_response, request
from sqlalchemy.exc import IntegrityError

from coaching import idempotency
from coaching.errors import UnsupportedMediaType
from coaching.extensions import db


def transaction(idempotent: bool = False, replay=None):
    """Commit once when the view succeeds and roll back otherwise.

    Services only flush; this is the single commit of a request. With `idempotent=True`, an
    `Idempotency-Key` header replays the first answer. Place it above smorest's decorators.
    An answer that holds secrets (a token pair) must not be stored: pass `replay`, a function
    that builds a fresh answer for a repeated request, and only the key is remembered.
    """

    def decorator(func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            try:
                if idempotent:
                    stored = idempotency.lookup()
                    if stored is not None and replay is None:
                        db.session.rollback()
                        return stored
                    if stored is not None:
                        response = make_response(replay())
                        response.headers[idempotency.REPLAYED] = "true"
                        db.session.commit()
                        return response
                response = make_response(func(*args, **kwargs))
                if response.status_code >= 400:
                    db.session.rollback()
                elif idempotent:
                    try:
                        idempotency.remember(response, keep_body=replay is None)
                        db.session.commit()
                    except (idempotency.KeyTaken, IntegrityError):
                        # Two requests with one key at once: this one's work is undone and it
                        # answers as a repeat of the one that stored its answer first.
                        db.session.rollback()
                        stored = idempotency.lookup()
                        if stored is None:
                            raise
                        if replay is None:
                            return stored
                        response = make_response(replay())
                        response.headers[idempotency.REPLAYED] = "true"
                        db.session.commit()
                else:
                    db.session.commit()
                return response
            except BaseException:
                db.session.rollback()
                raise

        return wrapper

    return decorator


def paginate_select(stmt, pagination_parameters, *, scalars: bool = True):
    """Return one page of a select() and set the total on smorest's pagination parameters."""
    from sqlalchemy import func, select

    total = db.session.execute(
        select(func.count()).select_from(stmt.order_by(None).subquery())
    ).scalar_one()
    pagination_parameters.item_count = total
    offset = (pagination_parameters.page - 1) * pagination_parameters.page_size
    if offset >= total:
        # Past the last page (a huge ?page= would overflow the database's OFFSET).
        return []
    page_stmt = stmt.limit(pagination_parameters.page_size).offset(offset)
    result = db.session.execute(page_stmt)
    return list(result.scalars() if scalars else result)


# Methods whose request may carry a body; the API reads every body as JSON.
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def refuse_non_json_body() -> None:
    """Answers 415 for a request body under /api/ that is not JSON (API.md: "JSON in and out",
    415 wrong media type). Without this, a body sent as text/plain or a form was read as no body
    at all: `PATCH /me` answered 200 and changed nothing. Video bytes go to /media/, not here."""
    if request.method not in _BODY_METHODS or not request.path.startswith("/api/"):
        return
    if not (request.content_length or request.headers.get("Transfer-Encoding")):
        return  # no body
    if not request.is_json:  # application/json or a +json type
        raise UnsupportedMediaType("The request body must be JSON (Content-Type: application/json)")
