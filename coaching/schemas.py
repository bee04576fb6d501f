"""Schema pieces shared by every domain: strict base schema, UTC timestamps, bounded strings."""

from __future__ import annotations

import re

from flask_smorest.error_handler import ErrorSchema as SmorestErrorSchema
from marshmallow import RAISE, Schema, ValidationError, fields, pre_load, validate

from coaching.db import utc_iso

# NUL cannot be stored in PostgreSQL text and a lone surrogate cannot be encoded as UTF-8: both
# would fail only at the database (a 500), so they are refused where the input is read.
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")


def _has_unstorable(value) -> bool:
    if isinstance(value, str):
        return _UNSTORABLE.search(value) is not None
    if isinstance(value, dict):
        return any(_has_unstorable(k) or _has_unstorable(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_unstorable(v) for v in value)
    return False


class BaseSchema(Schema):
    """Rejects unknown fields (no mass assignment) and text that cannot be stored."""

    class Meta:
        unknown = RAISE
        ordered = True

    @pre_load
    def _refuse_unstorable_text(self, data, **kwargs):
        if isinstance(data, dict):
            errors = {
                str(key) if not _has_unstorable(key) else "_schema": [
                    "Contains a NUL character or an invalid Unicode code point."
                ]
                for key, value in data.items()
                if _has_unstorable(key) or _has_unstorable(value)
            }
            if errors:
                raise ValidationError(errors)
        return data


class UTCDateTime(fields.DateTime):
    """An ISO 8601 timestamp in UTC ending in Z."""

    def _serialize(self, value, attr, obj, **kwargs):
        return utc_iso(value)


def _not_blank(value: str) -> None:
    if not value.strip():
        raise ValidationError("May not be blank.")


def text(
    max_length: int, *, required: bool = False, min_length: int = 1, **kwargs
) -> fields.String:
    """Return a String field with length bounds (every string we accept has a maximum).

    With `min_length` >= 1 a string of only spaces is refused too (it would be stored empty).
    """
    validators = [validate.Length(min=min_length, max=max_length)]
    if min_length >= 1:
        validators.append(_not_blank)
    return fields.String(required=required, validate=validators, **kwargs)


def one_of(choices, *, required: bool = False, **kwargs) -> fields.String:
    """Return a String field limited to a list of choices."""
    return fields.String(required=required, validate=validate.OneOf(choices), **kwargs)


class StrictBoolean(fields.Boolean):
    """A JSON true or false only. marshmallow's Boolean takes "yes", "on" or 1 as true, and even
    with `truthy={True}` it takes 1 and 1.0 (which equal True in Python)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


# The contract's error body, as flask-smorest documents it.
ErrorSchema = SmorestErrorSchema
