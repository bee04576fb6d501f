"""Invites (therapists), the public invite look-up, registration and consent."""

from __future__ import annotations

from flask import current_app, request
from flask.views import MethodView

from coaching import clock
from coaching.accounts import service as accounts
from coaching.accounts.schemas import TokenPairSchema
from coaching.auth import auth_required, current_account
from coaching.enrolment import schemas, service
from coaching.enrolment.models import Invite
from coaching.extensions import Blueprint, limiter
from coaching.schemas import ErrorSchema
from coaching.web import paginate_select, transaction

blp = Blueprint(
    "enrolment", __name__, url_prefix="/api/v1", description="Invites, registration, consent"
)


def _invite_view(invite: Invite) -> dict:
    return {
        "code": invite.code,
        "status": invite.status_at(clock.now()),
        "referral_source": invite.referral_source,
        "channel": invite.channel,
        "created_at": invite.created_at,
        "expires_at": invite.expires_at,
    }


def _request_locale(args: dict) -> str:
    if "locale" in args:
        return args["locale"]
    return request.accept_languages.best_match(["nl", "en"]) or "nl"


@blp.route("/invites")
class Invites(MethodView):
    @transaction(idempotent=True)
    @auth_required("therapist")
    @blp.arguments(schemas.InviteCreateSchema)
    @blp.response(201, schemas.InviteSchema)
    def post(self, body):
        """Create an invite for a patient"""
        return _invite_view(service.create_invite(therapist=current_account(), **body))

    @auth_required("therapist")
    @blp.arguments(schemas.InviteQueryArgsSchema, location="query")
    @blp.response(200, schemas.InviteSchema(many=True))
    @blp.paginate()
    def get(self, args, pagination_parameters):
        """List the therapist's own invites with their status"""
        stmt = service.invites_query(current_account(), status=args.get("status"))
        return [_invite_view(i) for i in paginate_select(stmt, pagination_parameters)]


@blp.route("/invites/<string:code>")
class InviteByCode(MethodView):
    decorators = [
        limiter.limit(lambda: current_app.config["RATELIMIT_INVITE_LOOKUP"], methods=["GET"])
    ]

    @transaction()
    @blp.arguments(schemas.InviteLookupArgsSchema, location="query")
    @blp.response(200, schemas.InviteLookupSchema)
    @blp.alt_response(404, schema=ErrorSchema, description="Unknown, expired, revoked or redeemed")
    @blp.alt_response(429, schema=ErrorSchema)
    def get(self, args, code):
        """Look up an invite without signing in (marks it opened)"""
        return service.look_up_invite(code, _request_locale(args))

    @transaction()
    @auth_required("therapist")
    @blp.response(204)
    @blp.alt_response(404, schema=ErrorSchema)
    @blp.alt_response(409, schema=ErrorSchema, description="Already redeemed")
    def delete(self, code):
        """Revoke one of the therapist's own invites"""
        service.revoke_invite(therapist=current_account(), code=code)


def _sign_in_again():
    """Answer a repeated registration (same Idempotency-Key and body) with a fresh login.

    The first answer's tokens are never stored, and replaying them would hand out a refresh
    token that may have been used already (and then revoke the login as a reuse).
    """
    body = request.get_json()
    patient = accounts.authenticate(email=body["email"], password=body["password"])
    return TokenPairSchema().dump(accounts.start_login(patient)), 201


@blp.route("/patients")
class Registration(MethodView):
    decorators = [
        limiter.limit(lambda: current_app.config["RATELIMIT_REGISTRATION"], methods=["POST"])
    ]

    @transaction(idempotent=True, replay=_sign_in_again)
    @blp.arguments(schemas.RegistrationSchema)
    @blp.response(201, TokenPairSchema)
    @blp.alt_response(404, schema=ErrorSchema, description="Unknown or used invite code")
    @blp.alt_response(409, schema=ErrorSchema, description="E-mail address already registered")
    @blp.alt_response(429, schema=ErrorSchema)
    def post(self, body):
        """Register as a patient with an invite code"""
        patient = service.register_patient(**body)
        return accounts.start_login(patient)


@blp.route("/consent")
class Consent(MethodView):
    @blp.arguments(schemas.ConsentArgsSchema, location="query")
    @blp.response(200, schemas.ConsentDocumentSchema)
    def get(self, args):
        """Return the current consent document"""
        return service.consent_document(_request_locale(args))


@blp.route("/me/consent")
class MyConsent(MethodView):
    @transaction(idempotent=True)
    @auth_required("patient", consent=False)
    @blp.arguments(schemas.ConsentAcceptSchema)
    @blp.response(201, schemas.ConsentAcceptanceSchema)
    @blp.alt_response(409, schema=ErrorSchema, description="Outdated consent version")
    def post(self, body):
        """Accept the current consent version"""
        return service.accept_consent(
            patient=current_account(), version=body["version"], video=body.get("video")
        )
