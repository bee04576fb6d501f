"""Request and response shapes of accounts and sessions."""

from __future__ import annotations

from marshmallow import fields, validate

from coaching.accounts.models import Account
from coaching.accounts.service import LOCALES, normalize_email
from coaching.schemas import BaseSchema, one_of, text

PASSWORD = validate.Length(min=10, max=200)

EMAIL_MAX_LENGTH = Account.__table__.c.email.type.length


class EmailAddress(fields.String):
    """An e-mail address, loaded in the form it is stored and compared in (`normalize_email`).

    Every schema that takes an address uses this field. The length is checked on the stored form:
    lower-casing can lengthen an address ('İ' becomes 'i' and a combining dot), so one that fits
    as typed may not fit the column. The format is checked as typed, because the lower-cased form
    of a valid address need not match marshmallow's pattern (a combining dot is no word character)
    and an address accepted before must still sign in.
    """

    default_error_messages = {"invalid": "Not a valid email address."}

    def __init__(self, **kwargs):
        kwargs.setdefault("metadata", {}).setdefault("format", "email")
        stored = validate.Length(
            max=EMAIL_MAX_LENGTH, error="Longer than maximum length {max} once lower-cased."
        )
        super().__init__(validate=stored, **kwargs)
        # The typed length first: it bounds the pattern's and lower-casing's work on huge input.
        self._as_typed = (
            validate.Length(max=EMAIL_MAX_LENGTH),
            validate.Email(error=self.error_messages["invalid"]),
        )

    def _deserialize(self, value, attr, data, **kwargs):
        address = super()._deserialize(value, attr, data, **kwargs)
        for check in self._as_typed:
            check(address)
        return normalize_email(address)


class TokenRequestSchema(BaseSchema):
    email = EmailAddress(required=True)
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
    email = EmailAddress(required=True)
    password = fields.String(required=True, validate=PASSWORD)
