"""Request and response shapes of invites, registration and consent."""

from __future__ import annotations

from marshmallow import fields, validate

from coaching.accounts.schemas import EmailAddress
from coaching.accounts.service import LOCALES
from coaching.enrolment.models import CHANNELS, REFERRAL_SOURCES
from coaching.schemas import BaseSchema, StrictBoolean, UTCDateTime, one_of, text


class InviteCreateSchema(BaseSchema):
    referral_source = one_of(REFERRAL_SOURCES, required=True)
    channel = one_of(CHANNELS, required=True)
    expires_in_days = fields.Integer(validate=validate.Range(min=1, max=90), strict=True)


class InviteSchema(BaseSchema):
    code = fields.String()
    status = fields.String()
    referral_source = fields.String()
    channel = fields.String()
    created_at = UTCDateTime()
    expires_at = UTCDateTime()


class InviteQueryArgsSchema(BaseSchema):
    status = one_of(("pending", "opened", "redeemed", "expired", "revoked"))


class InviteLookupArgsSchema(BaseSchema):
    locale = one_of(LOCALES)


class InviteLookupSchema(BaseSchema):
    practice_name = fields.String()
    therapist_name = fields.String()
    programme_title = fields.String()
    expires_at = UTCDateTime()


class RegistrationSchema(BaseSchema):
    invite_code = text(40, required=True)
    email = EmailAddress(required=True)
    password = fields.String(required=True, validate=validate.Length(min=10, max=200))
    display_name = text(120, required=True)
    locale = one_of(LOCALES, required=True)
    timezone = text(64, required=True)


class ConsentArgsSchema(BaseSchema):
    locale = one_of(LOCALES)


class ConsentDocumentSchema(BaseSchema):
    version = fields.String()
    locale = fields.String()
    text = fields.String()


class ConsentAcceptSchema(BaseSchema):
    version = text(20, required=True)
    video = StrictBoolean(
        metadata={
            "description": "Consent to video coaching; left out: as the patient last said "
            "(yes at the first acceptance)"
        }
    )


class ConsentAcceptanceSchema(BaseSchema):
    version = fields.String()
    accepted_at = UTCDateTime()
    video = fields.Boolean(attribute="is_video_accepted")
