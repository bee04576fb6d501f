"""Idempotency keys on creating POSTs: the same key from the same caller within 24 h answers the
first response again and creates nothing new (mobile networks retry).

A stored answer is personal data (a message to a patient, in full): `purge_expired` deletes the
records once their window has passed, and erasure deletes those about the patient at once.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta

from flask import Response, g, request
from sqlalchemy import Integer, String, Text, UniqueConstraint, delete, select
from sqlalchemy.orm import Mapped, mapped_column

from coaching import clock
from coaching.db import Base, UTCDateTime, id_column
from coaching.errors import Conflict, Unauthorized, ValidationFailed
from coaching.extensions import db

WINDOW = timedelta(hours=24)
PURGE_BATCH = 1000
HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_records"
    __table_args__ = (UniqueConstraint("scope", "key", name="uq_idempotency_records_scope_key"),)

    id: Mapped[str] = id_column()
    scope: Mapped[str] = mapped_column(String(80))
    key: Mapped[str] = mapped_column(String(200))
    fingerprint: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


def _caller():
    """Return (account or None, whether the caller is known): the key is looked up before the
    view's `auth_required` runs, so a bearer token is checked here too."""
    account = g.get("account")
    if account is None and request.headers.get("Authorization"):
        from coaching.auth import load_current_account

        try:
            account = load_current_account()
        except Unauthorized:
            return None, False  # the view answers 401; nothing is replayed or stored
    return account, True


def _scope_and_fingerprint() -> tuple[str | None, str]:
    raw = request.get_data(cache=True) or b""
    body_hash = hashlib.sha256(raw).hexdigest()
    fingerprint = hashlib.sha256(
        f"{request.method} {request.path}\n{body_hash}".encode()
    ).hexdigest()
    account, known = _caller()
    if not known:
        return None, fingerprint
    # An anonymous caller is scoped by the exact body: only someone who sent the same secrets
    # (e.g. the password at registration) gets the stored answer back.
    scope = f"account:{account.id}" if account is not None else f"anon:{body_hash}"
    return scope, fingerprint


def lookup() -> Response | None:
    """Return the stored response for this request's key, if there is one."""
    key = request.headers.get(HEADER)
    if not key:
        return None
    if len(key) > 200:
        raise ValidationFailed.field(HEADER, "Longer than 200 characters.")
    scope, fingerprint = _scope_and_fingerprint()
    if scope is None:
        return None
    record = db.session.execute(
        select(IdempotencyRecord).where(
            IdempotencyRecord.scope == scope,
            IdempotencyRecord.key == key,
            IdempotencyRecord.created_at > clock.now() - WINDOW,
        )
    ).scalar_one_or_none()
    if record is None:
        return None
    if record.fingerprint != fingerprint:
        raise Conflict("This Idempotency-Key was already used for a different request")
    response = Response(record.body, status=record.status_code, mimetype="application/json")
    response.headers[REPLAYED] = "true"
    return response


class KeyTaken(Exception):  # noqa: N818 (a signal to replay, not an error to report)
    """Another request with this key stored its answer while this one ran (both found none)."""


def remember(response: Response, *, keep_body: bool = True) -> None:
    """Store a successful creating response under the request's key (flushed, not committed).

    With `keep_body=False` only the key and status are kept (the answer held secrets).
    """
    key = request.headers.get(HEADER)
    if not key or response.status_code >= 300:
        return
    scope, fingerprint = _scope_and_fingerprint()
    if scope is None:
        return
    now = clock.now()
    old = db.session.execute(
        select(IdempotencyRecord).where(
            IdempotencyRecord.scope == scope, IdempotencyRecord.key == key
        )
    ).scalar_one_or_none()
    if old is not None:
        if old.created_at > now - WINDOW:
            # A request with the same key, at the same time, got there first (on SQLite the
            # writers queue, so this one finds its answer here; on PostgreSQL the insert below
            # waits for it and fails on the key instead): the caller answers with that one.
            raise KeyTaken
        # Expired: the key may be used afresh.
        db.session.delete(old)
        db.session.flush()
    body = response.get_data(as_text=True) if keep_body else "null"
    json.loads(body or "null")  # only JSON answers are replayed
    db.session.add(
        IdempotencyRecord(
            scope=scope,
            key=key,
            fingerprint=fingerprint,
            status_code=response.status_code,
            body=body,
            created_at=now,
        )
    )
    db.session.flush()


def purge_expired(now: datetime, *, batch: int = PURGE_BATCH) -> int:
    """Delete the records whose window has passed, a batch per transaction; returns how many.

    `lookup` no longer answers them and `remember` would replace them: kept, they would only be
    the answers' personal data held without a purpose. Safe in several processes at once.
    """
    cutoff = now - WINDOW
    deleted = 0
    while True:
        ids = (
            db.session.execute(
                select(IdempotencyRecord.id)
                .where(IdempotencyRecord.created_at <= cutoff)
                .order_by(IdempotencyRecord.created_at)
                .limit(batch)
            )
            .scalars()
            .all()
        )
        if ids:
            result = db.session.execute(
                delete(IdempotencyRecord).where(
                    IdempotencyRecord.id.in_(ids), IdempotencyRecord.created_at <= cutoff
                )
            )
            deleted += result.rowcount
        db.session.commit()
        if len(ids) < batch:
            return deleted
