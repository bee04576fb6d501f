"""Sign-in, token refresh, sign-out and the caller's own account."""

from __future__ import annotations

from flask import current_app, g, request
from flask.views import MethodView

from coaching.accounts import schemas, service
from coaching.auth import auth_required, current_account
from coaching.errors import Unauthorized
from coaching.extensions import Blueprint, db, limiter
from coaching.schemas import ErrorSchema
from coaching.web import transaction

blp = Blueprint("accounts", __name__, url_prefix="/api/v1", description="Accounts and sessions")


def _login_email_key() -> str:
    body = request.get_json(silent=True)
    email = body.get("email") if isinstance(body, dict) else None
    return f"login-email:{service.normalize_email(email) if isinstance(email, str) else '-'}"


def _failed(response) -> bool:
    return response.status_code == 401


@blp.route("/auth/token")
class Token(MethodView):
    decorators = [
        limiter.limit(lambda: current_app.config["RATELIMIT_LOGIN"], deduct_when=_failed),
        limiter.limit(
            lambda: current_app.config["RATELIMIT_LOGIN"],
            key_func=_login_email_key,
            deduct_when=_failed,
        ),
    ]

    @transaction()
    @blp.arguments(schemas.TokenRequestSchema)
    @blp.response(200, schemas.TokenPairSchema)
    @blp.alt_response(401, schema=ErrorSchema, description="Wrong credentials")
    @blp.alt_response(429, schema=ErrorSchema, description="Too many failed attempts")
    def post(self, body):
        """Sign in with e-mail and password"""
        account = service.authenticate(email=body["email"], password=body["password"])
        return service.start_login(account)


@blp.route("/auth/refresh")
class Refresh(MethodView):
    decorators = [limiter.limit(lambda: current_app.config["RATELIMIT_REFRESH"])]

    @blp.arguments(schemas.RefreshRequestSchema)
    @blp.response(200, schemas.TokenPairSchema)
    @blp.alt_response(
        401, schema=ErrorSchema, description="Invalid, expired or reused refresh token"
    )
    def post(self, body):
        """Exchange a refresh token for a new pair (each refresh token works once)"""
        try:
            pair = service.rotate_refresh_token(body["refresh_token"])
            # Commit in both cases: a reuse must stay revoked although we answer 401.
            db.session.commit()
        except BaseException:
            db.session.rollback()
            raise
        if pair is None:
            raise Unauthorized("Invalid refresh token")
        return pair


@blp.route("/auth/logout")
class Logout(MethodView):
    @transaction()
    @auth_required(consent=False)
    @blp.arguments(schemas.RefreshRequestSchema)
    @blp.response(204)
    def post(self, body):
        """Sign out: revoke this login's refresh and access tokens"""
        service.logout(
            account=current_account(),
            session_id=g.login_session_id,
            refresh_token=body["refresh_token"],
        )


@blp.route("/me")
class Me(MethodView):
    @auth_required(consent=False)
    @blp.response(200, schemas.AccountSchema)
    def get(self):
        """Return the signed-in account"""
        return current_account()

    @transaction()
    @auth_required(consent=False)
    @blp.arguments(schemas.AccountUpdateSchema)
    @blp.response(200, schemas.AccountSchema)
    def patch(self, body):
        """Change the signed-in account's name, language or time zone"""
        return service.update_account(current_account(), **body)
