"""The therapist's work list (`GET /patients`) and patient detail; every read is audited."""

from __future__ import annotations

from flask.views import MethodView

from coaching.auth import auth_required, current_account
from coaching.extensions import Blueprint
from coaching.patients import schemas, service
from coaching.schemas import ErrorSchema
from coaching.web import transaction

blp = Blueprint("patients", __name__, url_prefix="/api/v1", description="The therapist's work list")


@blp.route("/patients")
class Patients(MethodView):
    @transaction()
    @auth_required("therapist")
    @blp.arguments(schemas.WorklistArgsSchema, location="query")
    @blp.response(200, schemas.WorklistItemSchema(many=True))
    @blp.paginate()
    def get(self, args, pagination_parameters):
        """List your patients with their progress and what waits for you"""
        items, total = service.worklist(
            current_account(),
            status=args.get("status"),
            sort=args["sort"],
            page=pagination_parameters.page,
            page_size=pagination_parameters.page_size,
        )
        pagination_parameters.item_count = total
        return items


@blp.route("/patients/<string:patient_id>")
class PatientById(MethodView):
    @transaction()
    @auth_required("therapist")
    @blp.response(200, schemas.PatientDetailSchema)
    @blp.alt_response(404, schema=ErrorSchema, description="Not your patient")
    def get(self, patient_id):
        """Return one of your patients: progress per module, reflections, appointments"""
        return service.patient_detail(current_account(), patient_id)
