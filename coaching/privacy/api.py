"""Privacy rights over the API: export (GDPR art. 15/20) and erasure (art. 17)."""

from __future__ import annotations

from flask import current_app
from flask.views import MethodView

from coaching.auth import auth_required, current_account, verify_password
from coaching.errors import Forbidden
from coaching.extensions import Blueprint, limiter
from coaching.privacy import schemas, service
from coaching.schemas import ErrorSchema
from coaching.web import transaction

blp = Blueprint("privacy", __name__, url_prefix="/api/v1", description="Privacy rights")


def _refused(response) -> bool:
    return response.status_code == 403


@blp.route("/me/export")
class Export(MethodView):
    @transaction(idempotent=True)
    @auth_required("patient")
    @blp.response(202, schemas.ExportSchema)
    def post(self):
        """Start preparing a ZIP of everything held about me (a job builds it)"""
        export, _ = service.request_export(patient=current_account())
        return service.export_view(export)


@blp.route("/me/exports/<export_id>")
class ExportById(MethodView):
    @auth_required("patient")
    @blp.response(200, schemas.ExportSchema)
    @blp.alt_response(404, schema=ErrorSchema, description="No such export of yours")
    def get(self, export_id):
        """Return an export's status and, when ready, a short-lived download URL"""
        export = service.get_export_for(patient=current_account(), export_id=export_id)
        return service.export_view(export)


@blp.route("/me")
class EraseMe(MethodView):
    # Password guesses with a stolen token are limited like sign-ins.
    decorators = [
        limiter.limit(lambda: current_app.config["RATELIMIT_LOGIN"], deduct_when=_refused)
    ]

    @transaction()
    @auth_required("patient", consent=False)
    @blp.arguments(schemas.EraseMeSchema)
    @blp.response(200, schemas.ErasureSchema)
    @blp.alt_response(403, schema=ErrorSchema, description="Wrong password, or not a patient")
    @blp.alt_response(429, schema=ErrorSchema, description="Too many wrong passwords")
    def delete(self, body):
        """Erase my account and data (the medical record is kept as the law requires)"""
        account = current_account()
        ok, _ = verify_password(account.password_hash, body["password"])
        if not ok:
            raise Forbidden("The password is not correct")
        record = service.erase_patient(patient=account, requested_by=account)
        return service.erasure_view(record)


@blp.route("/patients/<patient_id>/erasure")
class PatientErasure(MethodView):
    @transaction()
    @auth_required("therapist", "owner")
    @blp.arguments(schemas.ErasureRequestSchema)
    @blp.response(200, schemas.ErasureSchema)
    @blp.alt_response(404, schema=ErrorSchema, description="No such patient of yours")
    def post(self, body, patient_id):
        """Erase a patient's account and data on their request"""
        staff = current_account()
        patient = service.get_patient_for_staff(staff=staff, patient_id=patient_id)
        record = service.erase_patient(
            patient=patient,
            requested_by=staff,
            reason=body["reason"],
            destroy_medical_record=body["destroy_medical_record"],
        )
        return service.erasure_view(record)
