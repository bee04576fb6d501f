"""Questionnaires, responses, outcomes, check-ins, alerts, the decision aid and the FHIR export.

Patients see and submit their own (`/me/...`); a therapist sees only their own patients
(`/patients/{patient_id}/...`, others' patients are 404) and every such read is audited.
"""

from __future__ import annotations

import json

from flask import Response
from flask.views import MethodView
from flask_smorest import Page
from marshmallow import INCLUDE, Schema, fields

from coaching.audit import service as audit
from coaching.auth import auth_required, current_account
from coaching.errors import NotFound
from coaching.extensions import Blueprint
from coaching.outcomes import fhir, schemas, service
from coaching.schemas import ErrorSchema
from coaching.web import paginate_select, transaction

blp = Blueprint(
    "outcomes",
    __name__,
    url_prefix="/api/v1",
    description="Questionnaires, outcomes, check-ins, alerts and FHIR export",
)

FHIR_JSON = "application/fhir+json"


class FhirResourceSchema(Schema):
    """A FHIR R4 resource (documented loosely: FHIR defines the rest)."""

    class Meta:
        unknown = INCLUDE

    resourceType = fields.String()


def _locale(args: dict) -> str:
    return args.get("locale") or current_account().locale


def _own_patient(patient_id: str, resource_type: str, action: str = "read"):
    """Returns the signed-in therapist's patient (or the patient themself) and audits the access."""
    account = current_account()
    if account.role == "patient":
        if account.id != patient_id:
            raise NotFound("Patient not found")
        return account
    patient = service.patient_for_therapist(account, patient_id)
    audit.record(
        actor=account,
        patient_id=patient.id,
        action=action,
        resource_type=resource_type,
        resource_id=patient.id,
    )
    return patient


def _fhir_response(resource: dict) -> Response:
    response = Response(json.dumps(resource, ensure_ascii=False), mimetype=FHIR_JSON)
    response.headers["Cache-Control"] = "no-store"
    return response


# --- questionnaires ---------------------------------------------------------------------------


@blp.route("/questionnaires")
class Questionnaires(MethodView):
    @auth_required()
    @blp.arguments(schemas.LocaleArgsSchema, location="query")
    @blp.response(200, schemas.QuestionnaireSummarySchema(many=True))
    @blp.paginate(Page)
    def get(self, args):
        """List the questionnaires"""
        return service.questionnaire_summaries(_locale(args))


@blp.route("/questionnaires/<string:key>")
class QuestionnaireByKey(MethodView):
    @auth_required()
    @blp.arguments(schemas.LocaleArgsSchema, location="query")
    @blp.response(200, schemas.QuestionnaireSchema)
    @blp.alt_response(404, schema=ErrorSchema)
    def get(self, args, key):
        """Return a questionnaire with its items (PSFS: with the patient's baseline activities)"""
        account = current_account()
        patient = account if account.role == "patient" else None
        return service.questionnaire_view(key, _locale(args), patient=patient)


@blp.route("/fhir/Questionnaire/<string:key>")
class FhirQuestionnaire(MethodView):
    @auth_required()
    @blp.arguments(schemas.LocaleArgsSchema, location="query")
    @blp.response(200, FhirResourceSchema, content_type=FHIR_JSON)
    @blp.alt_response(404, schema=ErrorSchema)
    def get(self, args, key):
        """Return a questionnaire as a FHIR R4 Questionnaire"""
        definition = service.get_definition(key)
        return _fhir_response(
            fhir.questionnaire_resource(definition, _locale(args), fhir.base_url())
        )


@blp.route("/me/questionnaires/due")
class MyDueQuestionnaires(MethodView):
    @auth_required("patient")
    @blp.response(200, schemas.DueQuestionnaireSchema(many=True))
    @blp.paginate(Page)
    def get(self):
        """List the questionnaires the patient can fill in now (due or overdue; missed ones are in the schedule)"""
        return service.due_questionnaires(current_account())


@blp.route("/me/questionnaires/schedule")
class MySchedule(MethodView):
    @auth_required("patient")
    @blp.response(200, schemas.ScheduleEntrySchema(many=True))
    @blp.paginate(Page)
    def get(self):
        """List every scheduled questionnaire with its window and status"""
        return service.schedule_for(current_account())


@blp.route("/me/questionnaires/<string:key>/responses")
class MyResponses(MethodView):
    @transaction(idempotent=True)
    @auth_required("patient")
    @blp.arguments(schemas.ResponseCreateSchema)
    @blp.response(201, schemas.ResponseSchema)
    @blp.alt_response(404, schema=ErrorSchema, description="Unknown questionnaire")
    @blp.alt_response(409, schema=ErrorSchema, description="Already answered for this time point")
    @blp.alt_response(422, schema=ErrorSchema, description="Names the item (answers.<link_id>)")
    def post(self, body, key):
        """Submit answers; the server scores them"""
        response, scores = service.submit_response(
            patient=current_account(),
            key=key,
            answers=body["answers"],
            timepoint=body.get("timepoint"),
        )
        return service.response_view(response, scores)


# --- outcomes ---------------------------------------------------------------------------------


@blp.route("/me/outcomes")
class MyOutcomes(MethodView):
    @auth_required("patient")
    @blp.arguments(schemas.LocaleArgsSchema, location="query")
    @blp.response(200, schemas.OutcomesSchema)
    def get(self, args):
        """Return the patient's scores over time, change from baseline and meaningful change"""
        return service.outcomes_for(current_account(), _locale(args))


@blp.route("/patients/<string:patient_id>/outcomes")
class PatientOutcomes(MethodView):
    @transaction()
    @auth_required("therapist")
    @blp.arguments(schemas.LocaleArgsSchema, location="query")
    @blp.response(200, schemas.OutcomesSchema)
    @blp.alt_response(404, schema=ErrorSchema)
    def get(self, args, patient_id):
        """Return a patient's outcomes (their own therapist only)"""
        patient = _own_patient(patient_id, "outcomes")
        return service.outcomes_for(patient, _locale(args))


@blp.route("/patients/<string:patient_id>/fhir")
class PatientFhir(MethodView):
    @transaction()
    @auth_required("therapist")
    @blp.arguments(schemas.LocaleArgsSchema, location="query")
    @blp.response(200, FhirResourceSchema, content_type=FHIR_JSON)
    @blp.alt_response(404, schema=ErrorSchema)
    def get(self, args, patient_id):
        """Export a patient's responses and scores as a FHIR R4 collection Bundle"""
        patient = _own_patient(patient_id, "fhir_bundle", action="export")
        bundle = fhir.patient_bundle(
            patient, service.responses_of(patient.id), _locale(args), fhir.base_url()
        )
        return _fhir_response(bundle)


@blp.route("/me/decision-aid")
class MyDecisionAid(MethodView):
    @auth_required("patient")
    @blp.arguments(schemas.LocaleArgsSchema, location="query")
    @blp.response(200, schemas.DecisionAidSchema)
    def get(self, args):
        """Return the patient's baseline beside the outcomes of comparable patients"""
        return service.decision_aid(current_account(), _locale(args))


@blp.route("/patients/<string:patient_id>/decision-aid")
class PatientDecisionAid(MethodView):
    @transaction()
    @auth_required("therapist", "patient")
    @blp.arguments(schemas.LocaleArgsSchema, location="query")
    @blp.response(200, schemas.DecisionAidSchema)
    @blp.alt_response(404, schema=ErrorSchema)
    def get(self, args, patient_id):
        """Return a patient's baseline beside the outcomes of comparable patients"""
        patient = _own_patient(patient_id, "decision_aid")
        return service.decision_aid(patient, _locale(args))


# --- weekly check-ins -------------------------------------------------------------------------


@blp.route("/me/checkins")
class MyCheckIns(MethodView):
    @transaction(idempotent=True)
    @auth_required("patient")
    @blp.arguments(schemas.CheckInCreateSchema)
    @blp.response(201, schemas.CheckInSchema)
    @blp.alt_response(409, schema=ErrorSchema, description="Already checked in this week")
    def post(self, body):
        """Check in for this week: back pain and whether the committed action was done"""
        return service.submit_checkin(patient=current_account(), **body)

    @auth_required("patient")
    @blp.response(200, schemas.CheckInSummarySchema)
    def get(self):
        """Return the patient's check-ins and their trend"""
        return service.checkin_summary(current_account())


@blp.route("/patients/<string:patient_id>/checkins")
class PatientCheckIns(MethodView):
    @transaction()
    @auth_required("therapist")
    @blp.response(200, schemas.CheckInSummarySchema)
    @blp.alt_response(404, schema=ErrorSchema)
    def get(self, patient_id):
        """Return a patient's check-ins and their trend"""
        return service.checkin_summary(_own_patient(patient_id, "checkins"))


# --- alerts -----------------------------------------------------------------------------------


@blp.route("/alerts")
class Alerts(MethodView):
    @transaction()
    @auth_required("therapist")
    @blp.arguments(schemas.AlertQueryArgsSchema, location="query")
    @blp.response(200, schemas.AlertSchema(many=True))
    @blp.paginate()
    def get(self, args, pagination_parameters):
        """List alerts about the therapist's own patients (open by default), newest first"""
        therapist = current_account()
        stmt = service.alerts_query(therapist=therapist, status=args["status"])
        alerts = paginate_select(stmt, pagination_parameters)
        # Each alert shows a patient's scores: an audited read of that patient's data, as the
        # per-patient list is.
        for alert in alerts:
            audit.record(
                actor=therapist,
                patient_id=alert.patient_id,
                action="read",
                resource_type="outcome_alerts",
                resource_id=alert.id,
            )
        return [service.alert_view(a) for a in alerts]


@blp.route("/patients/<string:patient_id>/alerts")
class PatientAlerts(MethodView):
    @transaction()
    @auth_required("therapist")
    @blp.arguments(schemas.AlertQueryArgsSchema, location="query")
    @blp.response(200, schemas.AlertSchema(many=True))
    @blp.alt_response(404, schema=ErrorSchema)
    @blp.paginate()
    def get(self, args, patient_id, pagination_parameters):
        """List a patient's alerts (open by default), newest first"""
        patient = _own_patient(patient_id, "outcome_alerts")
        stmt = service.alerts_query(patient_ids=[patient.id], status=args["status"])
        return [service.alert_view(a) for a in paginate_select(stmt, pagination_parameters)]


@blp.route("/alerts/<string:alert_id>/acknowledge")
class AcknowledgeAlert(MethodView):
    @transaction()
    @auth_required("therapist")
    @blp.arguments(schemas.AlertAcknowledgeSchema)
    @blp.response(200, schemas.AlertSchema)
    @blp.alt_response(404, schema=ErrorSchema)
    def post(self, body, alert_id):
        """Acknowledge an alert about one of the therapist's patients"""
        alert = service.acknowledge_alert(
            therapist=current_account(), alert_id=alert_id, note=body.get("note")
        )
        return service.alert_view(alert)
