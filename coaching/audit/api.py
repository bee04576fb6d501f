"""The access log: patients see who looked at their data; owners query the whole log."""

from __future__ import annotations

from flask.views import MethodView
from sqlalchemy import select

from coaching.accounts.models import Account
from coaching.audit import schemas, service
from coaching.auth import auth_required, current_account
from coaching.extensions import Blueprint, db
from coaching.web import paginate_select

blp = Blueprint("audit", __name__, url_prefix="/api/v1", description="Access log (NEN 7513)")


@blp.route("/me/access-log")
class MyAccessLog(MethodView):
    # Behind the current consent like every patient endpoint but those API.md exempts.
    @auth_required("patient")
    @blp.response(200, schemas.AccessLogEntrySchema(many=True))
    @blp.paginate()
    def get(self, pagination_parameters):
        """List who looked at or changed the patient's data, newest first"""
        patient = current_account()
        entries = paginate_select(
            service.entries_query(patient_id=patient.id), pagination_parameters
        )
        actor_ids = {e.actor_id for e in entries if e.actor_id}
        names = (
            dict(
                db.session.execute(
                    select(Account.id, Account.display_name).where(Account.id.in_(actor_ids))
                ).all()
            )
            if actor_ids
            else {}
        )
        return [
            {
                "occurred_at": e.occurred_at,
                "actor_name": names.get(e.actor_id),
                "actor_role": e.actor_role,
                "action": e.action,
                "resource_type": e.resource_type,
            }
            for e in entries
        ]


@blp.route("/audit")
class AuditLog(MethodView):
    @auth_required("owner")
    @blp.arguments(schemas.AuditQueryArgsSchema, location="query")
    @blp.response(200, schemas.AuditEntrySchema(many=True))
    @blp.paginate()
    def get(self, args, pagination_parameters):
        """Query the audit log by patient, staff member and period"""
        stmt = service.entries_query(
            patient_id=args.get("patient_id"),
            actor_id=args.get("actor_id"),
            since=args.get("from_"),
            until=args.get("to"),
        )
        return paginate_select(stmt, pagination_parameters)
