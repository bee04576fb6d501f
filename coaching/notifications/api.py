"""Devices, reminder settings and the notification history of the signed-in account."""

from __future__ import annotations

from flask.views import MethodView

from coaching.auth import auth_required, current_account
from coaching.extensions import Blueprint
from coaching.notifications import schemas, service
from coaching.schemas import ErrorSchema
from coaching.web import paginate_select, transaction

blp = Blueprint(
    "notifications",
    __name__,
    url_prefix="/api/v1",
    description="Devices, reminders and notifications",
)

ROLES = ("patient", "therapist")


@blp.route("/me/devices")
class Devices(MethodView):
    @transaction(idempotent=True)
    @auth_required(*ROLES, consent=False)
    @blp.arguments(schemas.DeviceCreateSchema)
    @blp.response(201, schemas.DeviceSchema)
    @blp.alt_response(200, schema=schemas.DeviceSchema, description="The token was known")
    @blp.alt_response(422, schema=ErrorSchema, description="Invalid token or platform")
    def post(self, body):
        """Register a push token (the same token again is the same device)"""
        device, created = service.register_device(
            account=current_account(), token=body["token"], platform=body["platform"]
        )
        return device, 201 if created else 200


@blp.route("/me/devices/<string:device_id>")
class DeviceById(MethodView):
    @transaction()
    @auth_required(*ROLES, consent=False)
    @blp.response(204)
    @blp.alt_response(404, schema=ErrorSchema, description="No such device of this account")
    def delete(self, device_id):
        """Forget a device: no more pushes to it"""
        service.delete_device(account=current_account(), device_id=device_id)


@blp.route("/me/reminder-settings")
class ReminderSettings(MethodView):
    @auth_required(*ROLES)
    @blp.response(200, schemas.ReminderSettingsSchema)
    def get(self):
        """Return the daily time, quiet hours, categories and pause of the account's reminders"""
        return service.settings_view(current_account())

    @transaction()
    @auth_required(*ROLES)
    @blp.arguments(schemas.ReminderSettingsUpdateSchema)
    @blp.response(200, schemas.ReminderSettingsSchema)
    @blp.alt_response(422, schema=ErrorSchema, description="Invalid time or time zone")
    def put(self, body):
        """Change the reminder settings (fields left out stay as they are)"""
        return service.update_settings(current_account(), body)


@blp.route("/me/notifications")
class Notifications(MethodView):
    @auth_required(*ROLES)
    @blp.response(200, schemas.NotificationSchema(many=True))
    @blp.paginate()
    def get(self, pagination_parameters):
        """List the account's notifications, newest first"""
        account = current_account()
        rows = paginate_select(service.history_query(account), pagination_parameters)
        return [service.view(row, account.locale) for row in rows]


@blp.route("/me/notifications/<string:notification_id>/opened")
class NotificationOpened(MethodView):
    @transaction()
    @auth_required(*ROLES)
    @blp.response(200, schemas.NotificationSchema)
    @blp.alt_response(404, schema=ErrorSchema, description="No such notification of this account")
    def post(self, notification_id):
        """Record that a push was opened"""
        account = current_account()
        return service.view(
            service.mark_opened(account=account, notification_id=notification_id), account.locale
        )
