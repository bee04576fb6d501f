"""Request and response shapes of accounts and sessions."""

from __future__ import annotations

from marshmallow import fields, validate

from coaching.accounts.service import LOCALES
from coaching.schemas import BaseSchema, one_of, text

PASSWORD = validate.Length(min=10, max=200)


class TokenRequestSchema(BaseSchema):
    email = fields.Email(required=True, validate=validate.Length(max=254))
    password = fields.String(required=True, validate=validate.Length(min=1, max=200))


class RefreshRequestSchema(BaseSchema):
    refresh_token = text(200, required=True)


class TokenPairSchema(BaseSchema):
    access_token = fields.String()
    refresh_token = fields.String()
    token_type = fields.String()
    expires_in = fields.Integer()
    role = fields.String()


class AccountSchema(BaseSchema):
    id = fields.String()
    email = fields.String()
    role = fields.String()
    display_name = fields.String()
    locale = fields.String()
    timezone = fields.String()
    practice_id = fields.String(allow_none=True)
    therapist_id = fields.Method("get_therapist_id", allow_none=True)

    def get_therapist_id(self, account):
        if account.role == "therapist":
            return account.id
        return account.therapist_id


class AccountUpdateSchema(BaseSchema):
    display_name = text(120)
    locale = one_of(LOCALES)
    timezone = text(64)


class OwnerCreateSchema(BaseSchema):
    email = fields.Email(required=True, validate=validate.Length(max=254))
    password = fields.String(required=True, validate=PASSWORD)
