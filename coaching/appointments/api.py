"""Appointments: a therapist plans them for their patient, both see them, either cancels."""

from __future__ import annotations

from flask.views import MethodView

from coaching.appointments import schemas, service
from coaching.auth import auth_required, current_account
from coaching.extensions import Blueprint
from coaching.schemas import ErrorSchema
from coaching.web import paginate_select, transaction

blp = Blueprint(
    "appointments", __name__, url_prefix="/api/v1", description="Appointments (sessions)"
)


@blp.route("/patients/<string:patient_id>/appointments")
class PatientAppointments(MethodView):
    @transaction()
    @auth_required("patient", "therapist")
    @blp.arguments(schemas.AppointmentQueryArgsSchema, location="query")
    @blp.response(200, schemas.AppointmentSchema(many=True))
    @blp.paginate()
    @blp.alt_response(404, schema=ErrorSchema, description="Not your (own) patient")
    def get(self, args, patient_id, pagination_parameters):
        """List a patient's appointments (their therapist, or the patient)"""
        patient_id = service.readable_patient_id(actor=current_account(), patient_id=patient_id)
        return paginate_select(
            service.appointments_query(patient_id, args["scope"]), pagination_parameters
        )

    @transaction(idempotent=True)
    @auth_required("therapist")
    @blp.arguments(schemas.AppointmentCreateSchema)
    @blp.response(201, schemas.AppointmentSchema)
    @blp.alt_response(404, schema=ErrorSchema, description="Not your patient")
    @blp.alt_response(409, schema=ErrorSchema, description="Overlaps another appointment")
    @blp.alt_response(422, schema=ErrorSchema, description="Names the field")
    def post(self, body, patient_id):
        """Plan an appointment with your patient"""
        return service.plan_appointment(therapist=current_account(), patient_id=patient_id, **body)


@blp.route("/me/appointments")
class MyAppointments(MethodView):
    @auth_required("patient")
    @blp.arguments(schemas.AppointmentQueryArgsSchema, location="query")
    @blp.response(200, schemas.AppointmentSchema(many=True))
    @blp.paginate()
    def get(self, args, pagination_parameters):
        """List your appointments"""
        return paginate_select(
            service.appointments_query(current_account().id, args["scope"]),
            pagination_parameters,
        )


@blp.route("/appointments/<string:appointment_id>")
class AppointmentById(MethodView):
    @transaction()
    @auth_required("patient", "therapist")
    @blp.response(200, schemas.AppointmentSchema)
    @blp.alt_response(404, schema=ErrorSchema)
    def get(self, appointment_id):
        """Return one appointment (the patient, or their therapist)"""
        return service.get_for(current_account(), appointment_id)

    @transaction()
    @auth_required("patient", "therapist")
    @blp.response(204)
    @blp.alt_response(404, schema=ErrorSchema)
    @blp.alt_response(409, schema=ErrorSchema, description="Already took place")
    def delete(self, appointment_id):
        """Cancel an appointment (the same as POST .../cancel without a reason)"""
        service.cancel(account=current_account(), appointment_id=appointment_id)


@blp.route("/appointments/<string:appointment_id>/cancel")
class CancelAppointment(MethodView):
    @transaction()
    @auth_required("patient", "therapist")
    @blp.arguments(schemas.CancelSchema)
    @blp.response(200, schemas.AppointmentSchema)
    @blp.alt_response(404, schema=ErrorSchema)
    @blp.alt_response(409, schema=ErrorSchema, description="Already took place")
    def post(self, body, appointment_id):
        """Cancel an appointment (either side; cancelling again changes nothing)"""
        return service.cancel(
            account=current_account(), appointment_id=appointment_id, reason=body.get("reason")
        )
