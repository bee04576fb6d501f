"""Request and response shapes of practices and therapists."""

from __future__ import annotations

from marshmallow import fields, validate

from coaching.accounts.schemas import EmailAddress
from coaching.schemas import BaseSchema, text


class PracticeCreateSchema(BaseSchema):
    name = text(200, required=True)
    city = text(120, required=True)


class PracticeSchema(BaseSchema):
    id = fields.String()
    name = fields.String()
    city = fields.String()


class TherapistCreateSchema(BaseSchema):
    email = EmailAddress(required=True)
    display_name = text(120, required=True)
    password = fields.String(required=True, validate=validate.Length(min=10, max=200))


class TherapistSchema(BaseSchema):
    id = fields.String()
    email = fields.String()
    display_name = fields.String()
    practice_id = fields.String()
