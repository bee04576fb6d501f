"""Accounts and sessions: creating accounts, signing in, rotating refresh tokens, signing out."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from flask import current_app
from sqlalchemy import select, update

from coaching import clock
from coaching.accounts.models import ROLES, Account, LoginSession, RefreshToken
from coaching.auth import hash_password, hash_token, issue_access_token, verify_password
from coaching.errors import Conflict, Unauthorized, ValidationFailed
from coaching.extensions import db

LOCALES = ("nl", "en")


@dataclass
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    role: str
    token_type: str = "Bearer"


def normalize_email(email: str) -> str:
    """Return the e-mail address in the form it is stored and compared in."""
    return email.strip().lower()


def check_timezone(name: str) -> str:
    """Return a valid IANA time zone name or raise a 422 naming `timezone`."""
    if name not in _zones():
        raise ValidationFailed.field("timezone", "Not a known IANA time zone.")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationFailed.field("timezone", "Not a known IANA time zone.") from exc
    return name


_ZONES: set[str] | None = None


# Files of the system's zone database that are not IANA zone names of a place.
_NOT_ZONES = {"localtime", "posixrules", "Factory"}


def _zones() -> set[str]:
    global _ZONES
    if _ZONES is None:
        _ZONES = {
            name
            for name in available_timezones()
            if name not in _NOT_ZONES and not name.startswith(("posix/", "right/"))
        }
    return _ZONES


def find_by_email(email: str) -> Account | None:
    """Return the account with this e-mail address, if any."""
    return db.session.execute(
        select(Account).where(Account.email == normalize_email(email))
    ).scalar_one_or_none()


def create_account(
    *,
    email: str,
    password: str,
    role: str,
    display_name: str,
    locale: str = "nl",
    timezone: str = "Europe/Amsterdam",
    practice_id: str | None = None,
    therapist_id: str | None = None,
) -> Account:
    """Returns a new account (flushed), refusing an e-mail address already registered."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    if find_by_email(email) is not None:
        raise Conflict("An account with this e-mail address already exists")
    account = Account(
        email=normalize_email(email),
        password_hash=hash_password(password),
        role=role,
        display_name=display_name.strip(),
        locale=locale,
        timezone=check_timezone(timezone),
        practice_id=practice_id,
        therapist_id=therapist_id,
        is_active=True,
        created_at=clock.now(),
    )
    db.session.add(account)
    db.session.flush()
    return account


def authenticate(*, email: str, password: str) -> Account:
    """Returns the account for these credentials, rehashing the password if parameters rose."""
    account = find_by_email(email)
    ok, new_hash = verify_password(account.password_hash if account else None, password)
    if account is None or not ok or not account.is_active:
        raise Unauthorized("Wrong e-mail address or password")
    if new_hash:
        account.password_hash = new_hash
    account.last_login_at = clock.now()
    db.session.flush()
    return account


def _new_refresh_token(session_id: str) -> str:
    token = secrets.token_urlsafe(32)
    now = clock.now()
    db.session.add(
        RefreshToken(
            session_id=session_id,
            token_hash=hash_token(token),
            created_at=now,
            expires_at=now + current_app.config["REFRESH_TOKEN_TTL"],
        )
    )
    return token


def start_login(account: Account) -> TokenPair:
    """Returns a fresh token pair for a new login of this account."""
    session = LoginSession(account_id=account.id, created_at=clock.now())
    db.session.add(session)
    db.session.flush()
    return _pair(account, session.id)


def _pair(account: Account, session_id: str) -> TokenPair:
    refresh = _new_refresh_token(session_id)
    access, ttl = issue_access_token(
        account_id=account.id, role=account.role, session_id=session_id
    )
    db.session.flush()
    return TokenPair(access_token=access, refresh_token=refresh, expires_in=ttl, role=account.role)


def revoke_session(session_id: str, reason: str) -> None:
    """Revoke a login: its refresh tokens and the access tokens issued from it stop working."""
    db.session.execute(
        update(LoginSession)
        .where(LoginSession.id == session_id, LoginSession.revoked_at.is_(None))
        .values(revoked_at=clock.now(), revoked_reason=reason)
    )
    db.session.flush()


def rotate_refresh_token(token: str) -> TokenPair | None:
    """Returns a new pair for a valid refresh token, or None when it is invalid.

    A token that was already used revokes its whole login (reuse detection); the caller must
    commit that revocation before answering 401.
    """
    row = db.session.execute(
        select(RefreshToken, LoginSession, Account)
        .join(LoginSession, LoginSession.id == RefreshToken.session_id)
        .join(Account, Account.id == LoginSession.account_id)
        .where(RefreshToken.token_hash == hash_token(token))
    ).first()
    if row is None:
        return None
    refresh, session, account = row
    now = clock.now()
    if session.revoked_at is not None or not account.is_active:
        return None
    # Claim the token atomically: of concurrent uses, exactly one sees used_at still empty.
    claimed = db.session.execute(
        update(RefreshToken)
        .where(RefreshToken.id == refresh.id, RefreshToken.used_at.is_(None))
        .values(used_at=now)
    ).rowcount
    if claimed != 1:
        revoke_session(session.id, "refresh_token_reuse")
        return None
    if refresh.expires_at <= now:
        return None
    return _pair(account, session.id)


def logout(*, account: Account, session_id: str, refresh_token: str) -> None:
    """Revoke the caller's login, and the login a refresh token belongs to if it is this account's.

    The caller's own login goes whatever the token: an unknown or mistyped one must not leave the
    login that asked to sign out working. Another account's token revokes nothing of theirs.
    """
    revoke_session(session_id, "logout")
    row = db.session.execute(
        select(LoginSession)
        .join(RefreshToken, RefreshToken.session_id == LoginSession.id)
        .where(
            RefreshToken.token_hash == hash_token(refresh_token),
            LoginSession.account_id == account.id,
        )
    ).scalar_one_or_none()
    if row is not None and row.id != session_id:
        revoke_session(row.id, "logout")


def update_account(account: Account, *, display_name=None, locale=None, timezone=None) -> Account:
    """Returns the account with the given fields changed."""
    if display_name is not None:
        account.display_name = display_name.strip()
    if locale is not None:
        account.locale = locale
    if timezone is not None:
        account.timezone = check_timezone(timezone)
    db.session.flush()
    return account


def create_owner(*, email: str, password: str, display_name: str = "Programme owner") -> Account:
    """Returns a new programme-owner account."""
    return create_account(email=email, password=password, role="owner", display_name=display_name)
