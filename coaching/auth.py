"""Authentication: password hashing, JWT access tokens, and the decorators views use.

Access tokens are short-lived HS256 JWTs checked for signature, algorithm, expiry, audience,
issuer, key id and token type, and tied to a login session so that revoking the login revokes them.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import secrets
from copy import deepcopy
from datetime import datetime

import jwt
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from flask import current_app, g, request
from sqlalchemy import bindparam, select

from coaching import clock
from coaching.errors import Forbidden, Unauthorized
from coaching.extensions import db

ALGORITHMS = ["HS256"]
ACCESS_TYPE = "access"


def password_hasher() -> PasswordHasher:
    """Return the Argon2id hasher with the configured parameters."""
    cfg = current_app.config
    return PasswordHasher(
        time_cost=cfg["ARGON2_TIME_COST"],
        memory_cost=cfg["ARGON2_MEMORY_KIB"],
        parallelism=cfg["ARGON2_PARALLELISM"],
        type=Type.ID,
    )


def hash_password(password: str) -> str:
    """Return an Argon2id hash of a password."""
    return password_hasher().hash(password)


# A fixed hash to verify against when the e-mail is unknown, so timing does not reveal accounts.
_DUMMY_HASH: dict[tuple, str] = {}


def verify_password(stored_hash: str | None, password: str) -> tuple[bool, str | None]:
    """Return (matches, new hash if the parameters have risen since it was made)."""
    hasher = password_hasher()
    if stored_hash is None:
        params = (hasher.time_cost, hasher.memory_cost, hasher.parallelism)
        if params not in _DUMMY_HASH:
            _DUMMY_HASH[params] = hasher.hash(secrets.token_hex(16))
        stored_hash = _DUMMY_HASH[params]
        with contextlib.suppress(VerificationError, InvalidHashError):
            hasher.verify(stored_hash, password)
        return False, None
    try:
        hasher.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False, None
    if hasher.check_needs_rehash(stored_hash):
        return True, hasher.hash(password)
    return True, None


def hash_token(token: str) -> str:
    """Return the SHA-256 hex digest under which an opaque token is stored."""
    return hashlib.sha256(token.encode()).hexdigest()


def issue_access_token(*, account_id: str, role: str, session_id: str) -> tuple[str, int]:
    """Return a signed access token and its lifetime in seconds."""
    cfg = current_app.config
    now = clock.now()
    ttl = int(cfg["ACCESS_TOKEN_TTL"].total_seconds())
    payload = {
        "sub": account_id,
        "role": role,
        "sid": session_id,
        "typ": ACCESS_TYPE,
        "aud": cfg["JWT_AUDIENCE"],
        "iss": cfg["JWT_ISSUER"],
        "iat": int(now.timestamp()),
        "nbf": int(now.timestamp()),
        "exp": int(now.timestamp()) + ttl,
        "jti": secrets.token_hex(8),
    }
    token = jwt.encode(
        payload, cfg["SECRET_KEY"], algorithm="HS256", headers={"kid": cfg["JWT_KEY_ID"]}
    )
    return token, ttl


def decode_access_token(token: str) -> dict:
    """Return the verified claims of an access token, or raise Unauthorized."""
    cfg = current_app.config
    try:
        header = jwt.get_unverified_header(token)
        if header.get("alg") not in ALGORITHMS or header.get("kid") != cfg["JWT_KEY_ID"]:
            raise Unauthorized("Invalid token")
        claims = jwt.decode(
            token,
            cfg["SECRET_KEY"],
            algorithms=ALGORITHMS,
            audience=cfg["JWT_AUDIENCE"],
            issuer=cfg["JWT_ISSUER"],
            # The app's clock decides what "now" is (tests move it), so time claims are checked
            # below against it rather than against the wall clock inside PyJWT.
            options={
                "require": ["exp", "iat", "nbf", "sub", "aud", "iss", "typ", "sid"],
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
            },
        )
    except jwt.PyJWTError as exc:
        raise Unauthorized("Invalid token") from exc
    now = clock.now().timestamp()
    if not all(isinstance(claims[k], int) for k in ("exp", "nbf", "iat")):
        raise Unauthorized("Invalid token")
    if claims["exp"] <= now:
        raise Unauthorized("Token expired")
    if claims["nbf"] > now + 5:
        raise Unauthorized("Invalid token")
    if claims.get("typ") != ACCESS_TYPE:
        raise Unauthorized("Invalid token type")
    return claims


def _bearer_token() -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authentication required")
    return token.strip()


@functools.cache
def _account_statement():
    """The account, its login session and whether it accepted the current consent, in one query
    (built once; the consent answer seeds has_current_consent's per-request cache)."""
    from coaching.accounts.models import Account, LoginSession
    from coaching.enrolment.models import ConsentAcceptance

    consented = (
        select(ConsentAcceptance.id)
        .where(
            ConsentAcceptance.patient_id == Account.id,
            ConsentAcceptance.version == bindparam("consent_version"),
            ConsentAcceptance.withdrawn_at.is_(None),
        )
        .exists()
    )
    return (
        select(Account, LoginSession, consented)
        .join(LoginSession, LoginSession.account_id == Account.id)
        .where(Account.id == bindparam("account_id"), LoginSession.id == bindparam("session_id"))
    )


def load_current_account():
    """Return the signed-in account for this request, or raise Unauthorized."""
    from coaching.enrolment.service import current_consent_version

    claims = decode_access_token(_bearer_token())
    row = db.session.execute(
        _account_statement(),
        {
            "account_id": claims["sub"],
            "session_id": claims["sid"],
            "consent_version": current_consent_version(),
        },
    ).first()
    if row is None:
        raise Unauthorized("Invalid token")
    account, session, has_consent = row
    if not account.is_active or session.revoked_at is not None:
        raise Unauthorized("Token revoked")
    g.account = account
    g.login_session_id = session.id
    g.setdefault("_consent_cache", {})[account.id] = bool(has_consent)
    return account


REQUEST_KEYS = ("account", "login_session_id", "_consent_cache")


def forget_request_state() -> None:
    """Drop what a previous request left in `g` (an app context may outlive one request)."""
    for key in REQUEST_KEYS:
        g.pop(key, None)


def current_account():
    """Return the account already loaded by `auth_required`."""
    return g.account


def _error_response(description: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _add_security_doc(wrapper, roles, consent: bool = True):
    """Document the bearer token and the answers `auth_required` itself gives: 401, and 403 when
    a role or (for patients) consent is required, unless the view documents them already."""
    doc = deepcopy(getattr(wrapper, "_apidoc", {}))
    manual = doc.setdefault("manual_doc", {})
    manual["security"] = [{"bearerAuth": []}]
    if roles:
        manual.setdefault("description", f"Roles: {', '.join(roles)}.")
    documented = {str(code) for code in doc.get("response", {}).get("responses", {})}
    responses = manual.setdefault("responses", {})
    if "401" not in documented:
        responses.setdefault(
            "401", _error_response("No, an invalid, an expired or a revoked access token")
        )
    needs_consent = consent and (not roles or "patient" in roles)
    if "403" not in documented and (roles or needs_consent):
        reasons = ["the caller's role may not do this"] if roles else []
        if needs_consent:
            reasons.append("a patient has not accepted the current consent (message: consent)")
        responses.setdefault("403", _error_response("Forbidden: " + "; ".join(reasons)))
    wrapper._apidoc = doc


def auth_required(*roles: str, consent: bool = True):
    """Require a valid access token and one of the roles.

    Patients must also have accepted the current consent version unless `consent=False`
    (the contract's exemptions: /me, /consent, /me/consent, /me/devices).
    """

    def decorator(func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            account = load_current_account()
            if roles and account.role not in roles:
                raise Forbidden(f"This needs the role {' or '.join(roles)}")
            if consent and account.role == "patient":
                from coaching.enrolment.service import has_current_consent

                if not has_current_consent(patient_id=account.id):
                    raise Forbidden("consent required: accept the current consent document first")
            return func(*args, **kwargs)

        _add_security_doc(wrapper, roles, consent)
        return wrapper

    return decorator


def utcnow() -> datetime:
    """Return now from the app clock (short alias used by services)."""
    return clock.now()
