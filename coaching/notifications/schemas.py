"""Request and response shapes of devices, reminder settings and the notification history."""

from __future__ import annotations

import re
from datetime import time

from marshmallow import ValidationError, fields

from coaching.notifications.models import PLATFORMS
from coaching.schemas import BaseSchema, StrictBoolean, UTCDateTime, one_of, text

_HH_MM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class TimeOfDay(fields.Field):
    """A local time of day as "HH:MM" (24-hour clock)."""

    def _serialize(self, value, attr, obj, **kwargs):
        return value.strftime("%H:%M") if isinstance(value, time) else value

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str) or not _HH_MM.match(value):
            raise ValidationError('Not a valid time of day: use "HH:MM" (00:00 to 23:59).')
        hours, minutes = value.split(":")
        return time(int(hours), int(minutes))


def _flag():
    return StrictBoolean()


class DeviceCreateSchema(BaseSchema):
    token = text(1024, required=True)
    platform = one_of(PLATFORMS, required=True)


class DeviceSchema(BaseSchema):
    id = fields.String()
    platform = fields.String()


class QuietHoursSchema(BaseSchema):
    start = TimeOfDay(required=True)
    end = TimeOfDay(required=True)


class CategoriesSchema(BaseSchema):
    lesson = _flag()
    practice = _flag()
    questionnaire = _flag()
    message = _flag()
    inactivity = _flag()
    appointment = _flag()


class ReminderSettingsSchema(BaseSchema):
    daily_time = fields.String()
    quiet_hours = fields.Nested(QuietHoursSchema, allow_none=True)
    categories = fields.Nested(CategoriesSchema)
    pause_until = fields.Date(allow_none=True)
    timezone = fields.String()


class ReminderSettingsUpdateSchema(BaseSchema):
    daily_time = TimeOfDay()
    quiet_hours = fields.Nested(QuietHoursSchema, allow_none=True)
    categories = fields.Nested(CategoriesSchema)
    pause_until = fields.Date(allow_none=True)
    timezone = text(64)


class NotificationSchema(BaseSchema):
    id = fields.String()
    category = fields.String()
    title = fields.String()
    body = fields.String()
    data = fields.Dict(keys=fields.String(), values=fields.String())
    scheduled_for = UTCDateTime()
    sent_at = UTCDateTime(allow_none=True)
    opened_at = UTCDateTime(allow_none=True)
    status = fields.String()
