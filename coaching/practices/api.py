"""Practices and therapists, for programme owners."""

from __future__ import annotations

from flask.views import MethodView

from coaching.auth import auth_required, current_account
from coaching.extensions import Blueprint
from coaching.practices import schemas, service
from coaching.schemas import ErrorSchema
from coaching.web import paginate_select, transaction

blp = Blueprint("practices", __name__, url_prefix="/api/v1", description="Practices and therapists")


@blp.route("/practices")
class Practices(MethodView):
    @transaction(idempotent=True)
    @auth_required("owner")
    @blp.arguments(schemas.PracticeCreateSchema)
    @blp.response(201, schemas.PracticeSchema)
    def post(self, body):
        """Create a practice"""
        return service.create_practice(**body)

    @auth_required("owner")
    @blp.response(200, schemas.PracticeSchema(many=True))
    @blp.paginate()
    def get(self, pagination_parameters):
        """List practices"""
        return paginate_select(service.practices_query(), pagination_parameters)


@blp.route("/practices/<string:practice_id>/therapists")
class PracticeTherapists(MethodView):
    @transaction(idempotent=True)
    @auth_required("owner")
    @blp.arguments(schemas.TherapistCreateSchema)
    @blp.response(201, schemas.TherapistSchema)
    @blp.alt_response(404, schema=ErrorSchema)
    @blp.alt_response(409, schema=ErrorSchema, description="E-mail address already registered")
    def post(self, body, practice_id):
        """Create a therapist account in a practice"""
        practice = service.get_practice_for(current_account(), practice_id)
        return service.create_therapist(practice=practice, **body)

    @auth_required("owner")
    @blp.response(200, schemas.TherapistSchema(many=True))
    @blp.alt_response(404, schema=ErrorSchema)
    @blp.paginate()
    def get(self, practice_id, pagination_parameters):
        """List a practice's therapists"""
        practice = service.get_practice_for(current_account(), practice_id)
        return paginate_select(service.therapists_query(practice), pagination_parameters)
