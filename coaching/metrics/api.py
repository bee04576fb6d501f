"""Programme metrics for owners (all practices, aggregates only) and therapists (their own)."""

from __future__ import annotations

from flask import Response
from flask.views import MethodView
from marshmallow import RAISE

from coaching.auth import auth_required, current_account
from coaching.extensions import Blueprint
from coaching.metrics import funnel, reports, schemas
from coaching.schemas import ErrorSchema
from coaching.web import transaction

blp = Blueprint(
    "metrics", __name__, url_prefix="/api/v1", description="Programme metrics (owners, therapists)"
)

STAFF = ("owner", "therapist")


def _scope(args: dict, *extra: str) -> funnel.Scope:
    filters = {k: v for k, v in args.items() if k not in extra}
    return funnel.resolve_scope(current_account(), **filters)


def _errors(view):
    view = blp.alt_response(404, schema=ErrorSchema, description="Unknown practice or therapist")(
        view
    )
    return blp.alt_response(422, schema=ErrorSchema, description="Invalid filters")(view)


@blp.route("/metrics/funnel")
class Funnel(MethodView):
    @auth_required(*STAFF)
    @blp.arguments(schemas.FunnelArgsSchema, location="query", unknown=RAISE)
    @blp.response(200, schemas.FunnelSchema)
    @_errors
    def get(self, args):
        """The uptake funnel, one unit per invite, optionally broken down"""
        breakdown = args.pop("breakdown", None)
        return funnel.funnel(_scope(args), breakdown)


@blp.route("/metrics/funnel.csv")
class FunnelCsv(MethodView):
    @auth_required(*STAFF)
    @blp.arguments(schemas.FunnelArgsSchema, location="query", unknown=RAISE)
    @blp.doc(responses={"200": {"description": "CSV", "content": {"text/csv": {}}}})
    @_errors
    def get(self, args):
        """The uptake funnel as CSV"""
        breakdown = args.pop("breakdown", None)
        body = funnel.funnel_csv(funnel.funnel(_scope(args), breakdown))
        return Response(
            body,
            mimetype="text/csv",
            headers={
                "Content-Disposition": 'attachment; filename="funnel.csv"',
                "Cache-Control": "no-store",
            },
        )


@blp.route("/metrics/dropoffs")
class Dropoffs(MethodView):
    @transaction()
    @auth_required(*STAFF)
    @blp.arguments(schemas.DropoffArgsSchema, location="query", unknown=RAISE)
    @blp.response(200, schemas.DropoffSchema)
    @_errors
    def get(self, args):
        """Invites that reached the previous step but not this one (owners: counts only)"""
        step = args.pop("step")
        return funnel.dropoffs(_scope(args), step, caller=current_account())


@blp.route("/metrics/retention")
class Retention(MethodView):
    @auth_required(*STAFF)
    @blp.arguments(schemas.RetentionArgsSchema, location="query", unknown=RAISE)
    @blp.response(200, schemas.RetentionSchema)
    @_errors
    def get(self, args):
        """Weekly enrolment cohorts and the share active in each week since enrolment"""
        weeks = args.pop("weeks")
        return reports.retention(_scope(args), weeks)


@blp.route("/metrics/outcomes")
class Outcomes(MethodView):
    @auth_required(*STAFF)
    @blp.arguments(schemas.OutcomeBenchmarkArgsSchema, location="query", unknown=RAISE)
    @blp.response(200, schemas.OutcomeBenchmarkSchema)
    @_errors
    def get(self, args):
        """Outcome benchmark per practice (groups under 5 patients suppressed)"""
        timepoint = args.pop("timepoint")
        caller = current_account()
        return reports.outcomes(
            _scope(args), timepoint, caller.locale, whole_groups_only=caller.role != "therapist"
        )


@blp.route("/metrics/coaching")
class Coaching(MethodView):
    @auth_required(*STAFF)
    @blp.arguments(schemas.PracticeArgsSchema, location="query", unknown=RAISE)
    @blp.response(200, schemas.ResponseTimesSchema)
    @_errors
    def get(self, args):
        """Therapist response times to patient messages, per practice and therapist"""
        return reports.coaching(_scope(args))


@blp.route("/metrics/reminders")
class Reminders(MethodView):
    @auth_required(*STAFF)
    @blp.arguments(schemas.PracticeArgsSchema, location="query", unknown=RAISE)
    @blp.response(200, schemas.ReminderEffectSchema)
    @_errors
    def get(self, args):
        """Reminder effect per category: scheduled, sent, opened, acted on within 24 h"""
        return reports.reminders(_scope(args))
