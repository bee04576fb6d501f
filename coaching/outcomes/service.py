"""Outcome questionnaires: the schedule, submitting and scoring responses, outcome series with
minimal important change, weekly check-ins, alerts for the therapist, the decision aid, and the
work-list extras other domains show.

Scores are stored with each response in `questionnaire_scores`, one row per score (see
models.py), unrounded. The schedule and its windows are described in schedule.py.

Alerts: a follow-up (`month3`, `month6`, `month12`) NRS back or leg pain, or a weekly check-in's
back pain, at least 2 points above the patient's baseline NRS; or a follow-up ODI at least 10
points above the baseline ODI, opens an alert for the patient's therapist and queues a
notification (category `alert`, no health details in it). While an alert for the same score is
open (not acknowledged), a further worsening adds no second alert; after the therapist
acknowledges it, the next worsening opens a new one.

Interfaces used by other domains: `due_questionnaires(patient)` (for /me/today) and
`worklist_extras(therapist=, patient_ids=)` (for the therapist's work list).
"""

from __future__ import annotations

import statistics
from datetime import datetime

from sqlalchemy import and_, func, select
from sqlalchemy.orm import aliased, selectinload

from coaching import clock
from coaching.accounts.models import Account
from coaching.audit import service as audit
from coaching.enrolment.models import Enrollment
from coaching.enrolment.service import enrollment_for, local_date
from coaching.errors import Conflict, NotFound, ValidationFailed
from coaching.extensions import db
from coaching.metrics import service as metrics
from coaching.notifications import service as notifications
from coaching.outcomes import definitions, scoring
from coaching.outcomes.definitions import Definition, pick, validation_error
from coaching.outcomes.models import (
    CheckIn,
    OutcomeAlert,
    QuestionnaireResponse,
    QuestionnaireScore,
)
from coaching.outcomes.schedule import (
    FOLLOW_UPS,
    SCHEDULE,
    TIMEPOINTS,
    timepoints_of,
    window,
)

# Comparisons of stored floats allow for the last bit of binary rounding (e.g. 100 × 7 / 45).
EPSILON = 1e-9

# (questionnaire, score, alert kind, worsening from baseline that opens an alert)
ALERT_RULES = (
    ("odi", "odi_percent", "disability", 10),
    ("nrs", "back_pain", "pain", 2),
    ("nrs", "leg_pain", "pain", 2),
)
CHECKIN_ALERT_SCORE = ("nrs", "back_pain", "pain", 2)

DECISION_AID_MIN_GROUP = 10
DECISION_AID_TIMEPOINTS = ("month3", "month12")
DECISION_AID_SCORES = (("odi", "odi_percent"), ("nrs", "back_pain"))

# A check-in trend needs this many check-ins; it is fitted over the most recent ones.
TREND_MIN_CHECKINS = 3
TREND_WINDOW = 8
TREND_THRESHOLD = 0.25  # points per week before a trend counts as improving or worsening

RISK_MEANINGS = {
    "low": {
        "nl": "Laag risico: advies en zelfmanagement passen meestal goed.",
        "en": "Low risk: advice and self-management usually fit well.",
    },
    "medium": {
        "nl": "Gemiddeld risico: het blended programma (fysiotherapie met de app) past meestal goed.",
        "en": "Medium risk: the blended programme (physiotherapy with the app) usually fits well.",
    },
    "high": {
        "nl": "Hoog risico: overweeg een multidisciplinaire beoordeling.",
        "en": "High risk: consider a multidisciplinary assessment.",
    },
}
INFORMATION_NOT_INSTRUCTION = {
    "nl": "Informatie voor het gezamenlijke besluit, geen voorschrift.",
    "en": "Information for the shared decision, not an instruction.",
}


def risk_meaning(risk: str | None, locale: str) -> str | None:
    """Returns the stepped-care meaning of a STarT Back risk group, as information."""
    if risk not in RISK_MEANINGS:
        return None
    return f"{pick(RISK_MEANINGS[risk], locale)} {pick(INFORMATION_NOT_INSTRUCTION, locale)}"


# --- access ----------------------------------------------------------------------------------


def patient_for_therapist(therapist: Account, patient_id: str) -> Account:
    """Returns the therapist's own patient, or raises NotFound (others' patients do not exist)."""
    patient = db.session.get(Account, patient_id) if isinstance(patient_id, str) else None
    if patient is None or patient.role != "patient" or patient.therapist_id != therapist.id:
        raise NotFound("Patient not found")
    return patient


def _enrollment(patient: Account, *, lock: bool = False) -> Enrollment:
    stmt = select(Enrollment).where(Enrollment.patient_id == patient.id)
    if lock:
        # One patient's submissions queue here (PostgreSQL row lock), so that "every baseline
        # instrument is in" and "an alert is already open" are decided on committed data.
        stmt = stmt.with_for_update()
    enrollment = db.session.execute(stmt).scalar_one_or_none()
    if enrollment is None:
        raise NotFound("No enrolment")
    return enrollment


# --- questionnaire definitions ------------------------------------------------------------------


def get_definition(key: str) -> Definition:
    """Returns a questionnaire definition, or raises NotFound."""
    definition = definitions.get(key)
    if definition is None:
        raise NotFound("Questionnaire not found")
    return definition


def questionnaire_summaries(locale: str) -> list[dict]:
    """Returns every questionnaire's key, title and version."""
    return [
        {
            "key": d.key,
            "title": pick(d.title, locale),
            "version": d.version,
            "licensed_wording": d.licensed_wording,
        }
        for d in definitions.definitions().values()
    ]


def _item_view(item, locale: str) -> dict:
    view = {
        "link_id": item.link_id,
        "text": pick(item.text, locale),
        "type": item.type,
        "required": item.required,
    }
    if item.options:
        view["options"] = [{"value": o.value, "label": pick(o.label, locale)} for o in item.options]
    if item.min is not None:
        view["min"] = item.min
        view["max"] = item.max
    if item.max_length is not None:
        view["max_length"] = item.max_length
    return view


def questionnaire_view(key: str, locale: str, *, patient: Account | None = None) -> dict:
    """Returns a questionnaire with its items in a locale.

    For a patient with a baseline PSFS, the PSFS comes back with their own baseline activities
    filled in (`initial`, `read_only`) so that the follow-up rates the same activities.
    """
    definition = get_definition(key)
    items = [_item_view(i, locale) for i in definition.items]
    baseline_activities = psfs_baseline_activities(patient.id) if patient and key == "psfs" else {}
    if baseline_activities:
        kept = []
        for view in items:
            n = int(view["link_id"][-1])
            if n not in baseline_activities:
                continue
            view["required"] = True
            if view["link_id"].startswith("activity"):
                view["initial"] = baseline_activities[n]
                view["read_only"] = True
            kept.append(view)
        items = kept
    return {
        "key": definition.key,
        "title": pick(definition.title, locale),
        "version": definition.version,
        "description": pick(definition.description, locale),
        "copyright": pick(definition.copyright, locale),
        "licensed_wording": definition.licensed_wording,
        "locale": locale if locale in definitions.LOCALES else "nl",
        "items": items,
    }


# --- schedule ---------------------------------------------------------------------------------


def _completed(patient_id: str) -> set[tuple[str, str]]:
    return _completed_of([patient_id])[patient_id]


def _completed_of(patient_ids: list[str]) -> dict[str, set[tuple[str, str]]]:
    done: dict[str, set[tuple[str, str]]] = {patient_id: set() for patient_id in patient_ids}
    if patient_ids:
        for patient_id, key, timepoint in db.session.execute(
            select(
                QuestionnaireResponse.patient_id,
                QuestionnaireResponse.questionnaire_key,
                QuestionnaireResponse.timepoint,
            ).where(QuestionnaireResponse.patient_id.in_(patient_ids))
        ):
            done[patient_id].add((key, timepoint))
    return done


def _schedule(patient: Account, enrollment: Enrollment, done: set[tuple[str, str]]) -> list[dict]:
    today = local_date(patient)
    rows = []
    for timepoint in TIMEPOINTS:
        w = window(enrollment.started_on, timepoint)
        for key in SCHEDULE[timepoint]:
            rows.append(
                {
                    "key": key,
                    "timepoint": timepoint,
                    "due_on": w.due_on,
                    "opens_on": w.opens_on,
                    "closes_on": w.closes_on,
                    "status": w.status(today, completed=(key, timepoint) in done),
                }
            )
    return rows


def schedule_for(patient: Account) -> list[dict]:
    """Returns every scheduled questionnaire of the patient with its window and status."""
    enrollment = enrollment_for(patient.id)
    if enrollment is None:
        return []
    return _schedule(patient, enrollment, _completed(patient.id))


def due_questionnaires(patient: Account) -> list[dict]:
    """Returns the questionnaires the patient can fill in now: `[{key, timepoint, due_on,
    status}]` with `due_on` a `date` and `status` `due` or `overdue`, earliest first.

    Used by /me/today; `coaching.outcomes.schemas.DueQuestionnaireSchema` serialises it.
    Nothing is due once the patient has withdrawn from the programme.
    """
    enrollment = enrollment_for(patient.id)
    if enrollment is None:
        return []
    return due_questionnaires_for([(patient, enrollment)])[patient.id]


def due_questionnaires_for(pairs: list[tuple[Account, Enrollment]]) -> dict[str, list[dict]]:
    """Returns due_questionnaires for many patients at once, by patient id (one query)."""
    done = _completed_of([patient.id for patient, _ in pairs])
    return {
        patient.id: []
        if enrollment.status == "withdrawn"
        else [
            {k: r[k] for k in ("key", "timepoint", "due_on", "status")}
            for r in _schedule(patient, enrollment, done[patient.id])
            if r["status"] in ("due", "overdue")
        ]
        for patient, enrollment in pairs
    }


def _resolve_timepoint(patient: Account, enrollment: Enrollment, key: str, given) -> str:
    today = local_date(patient)
    done = {tp for k, tp in _completed(patient.id) if k == key}
    asked_at = timepoints_of(key)
    if given is not None:
        if given not in asked_at:
            raise ValidationFailed.field(
                "timepoint", f"{key} is asked at {', '.join(asked_at)}, not at {given}."
            )
        w = window(enrollment.started_on, given)
        if given in done:
            raise Conflict(f"{key} was already answered for {given}")
        if not w.is_open(today):
            raise ValidationFailed.field(
                "timepoint",
                f"The {given} window is open from {w.opens_on.isoformat()} "
                f"to {w.closes_on.isoformat()}.",
            )
        return given
    open_now = [tp for tp in asked_at if window(enrollment.started_on, tp).is_open(today)]
    for tp in open_now:
        if tp not in done:
            return tp
    if open_now:
        raise Conflict(f"{key} was already answered for {open_now[0]}")
    upcoming = [window(enrollment.started_on, tp) for tp in asked_at]
    upcoming = [w for w in upcoming if w.opens_on > today]
    hint = f"; the next opens on {upcoming[0].opens_on.isoformat()}" if upcoming else ""
    raise ValidationFailed.field("timepoint", f"No time point of {key} is open today{hint}.")


# --- responses --------------------------------------------------------------------------------


def _baseline_response(patient_id: str, key: str) -> QuestionnaireResponse | None:
    return db.session.execute(
        select(QuestionnaireResponse).where(
            QuestionnaireResponse.patient_id == patient_id,
            QuestionnaireResponse.questionnaire_key == key,
            QuestionnaireResponse.timepoint == "baseline",
        )
    ).scalar_one_or_none()


def psfs_baseline_activities(patient_id: str) -> dict[int, str]:
    """Returns the patient's baseline PSFS activities by number (empty without a baseline)."""
    baseline = _baseline_response(patient_id, "psfs")
    if baseline is None:
        return {}
    return {
        n: baseline.answers[f"activity{n}"]
        for n in range(1, scoring.PSFS_MAX_PAIRS + 1)
        if baseline.answers.get(f"activity{n}") is not None
    }


def _psfs_follow_up(answers: dict, activities: dict[int, str]) -> dict:
    """Returns follow-up answers with the baseline activities filled in, or raises naming an
    activity that differs from baseline or a rating for an activity not chosen at baseline."""
    errors: dict[str, list[str]] = {}
    merged = dict(answers)
    for n in range(1, scoring.PSFS_MAX_PAIRS + 1):
        activity_id, rating_id = f"activity{n}", f"rating{n}"
        given = answers.get(activity_id)
        if n in activities:
            if given is not None and (
                not isinstance(given, str) or given.strip().casefold() != activities[n].casefold()
            ):
                errors[f"answers.{activity_id}"] = [
                    f"At a follow-up this is your baseline activity: {activities[n]!r}."
                ]
            merged[activity_id] = activities[n]
        else:
            for link_id in (activity_id, rating_id):
                if answers.get(link_id) is not None:
                    errors[f"answers.{link_id}"] = ["Not one of your baseline activities."]
    if errors:
        raise validation_error(errors)
    return merged


def _score_rows(definition: Definition, response: QuestionnaireResponse, scores: dict) -> list:
    rows = []
    for position, score_def in enumerate(definition.scores):
        value = scores[score_def.name]
        text = value if score_def.type == "text" else None
        rows.append(
            QuestionnaireScore(
                name=score_def.name,
                patient_id=response.patient_id,
                questionnaire_key=response.questionnaire_key,
                timepoint=response.timepoint,
                position=position,
                is_integer=score_def.type == "integer",
                value=None if text is not None else float(value),
                value_text=text,
            )
        )
    return rows


def submit_response(
    *,
    patient: Account,
    key: str,
    answers: dict,
    timepoint: str | None = None,
    submitted_at: datetime | None = None,
) -> tuple[QuestionnaireResponse, dict]:
    """Returns a new response of the patient and its scores; the time point is the one given or
    the open one of this questionnaire. Records activity, `baseline_completed` when the baseline
    set is complete, and opens alerts on worsening follow-ups.

    With `submitted_at` (seeding and imports only) the response is recorded at that earlier time
    for the time point given, without checking its window.
    """
    definition = get_definition(key)
    if not isinstance(answers, dict):
        raise ValidationFailed.field("answers", "Not an object.")
    enrollment = _enrollment(patient, lock=True)
    if submitted_at is None:
        resolved = _resolve_timepoint(patient, enrollment, key, timepoint)
    elif timepoint in timepoints_of(key):
        resolved = timepoint
    else:
        raise ValidationFailed.field("timepoint", f"{key} is not asked at {timepoint}.")
    if key == "psfs" and resolved != "baseline":
        activities = psfs_baseline_activities(patient.id)
        if activities:
            answers = _psfs_follow_up(answers, activities)
    cleaned = definitions.clean_answers(definition, answers)
    scores = scoring.score(key, cleaned)
    at = submitted_at or clock.now()
    response = QuestionnaireResponse(
        patient_id=patient.id,
        questionnaire_key=key,
        questionnaire_version=definition.version,
        timepoint=resolved,
        answers=cleaned,
        locale=patient.locale,
        submitted_at=at,
    )
    response.scores = _score_rows(definition, response, scores)
    db.session.add(response)
    db.session.flush()
    metrics.record_activity(patient_id=patient.id, kind="questionnaire", occurred_at=at)
    if resolved == "baseline" and _baseline_complete(patient.id):
        metrics.record_patient_event(
            patient_id=patient.id, name="baseline_completed", occurred_at=at
        )
    if resolved in FOLLOW_UPS:
        _alerts_for_response(patient, response, scores)
    return response, scores


def _baseline_complete(patient_id: str) -> bool:
    done = {k for k, tp in _completed(patient_id) if tp == "baseline"}
    return set(SCHEDULE["baseline"]) <= done


def response_view(response: QuestionnaireResponse, scores: dict | None = None) -> dict:
    """Returns a response as the API shows it."""
    return {
        "id": response.id,
        "key": response.questionnaire_key,
        "timepoint": response.timepoint,
        "submitted_at": response.submitted_at,
        "scores": scores if scores is not None else response.score_values(),
    }


def responses_of(patient_id: str) -> list[QuestionnaireResponse]:
    """Returns a patient's responses with their scores, oldest first."""
    return list(
        db.session.execute(
            select(QuestionnaireResponse)
            .where(QuestionnaireResponse.patient_id == patient_id)
            .options(selectinload(QuestionnaireResponse.scores))
            .order_by(QuestionnaireResponse.submitted_at, QuestionnaireResponse.id)
        ).scalars()
    )


# --- outcomes ---------------------------------------------------------------------------------


def improvement(score_def, baseline: float, value: float) -> float:
    """Returns the change from baseline signed so that a positive number is better."""
    change = value - baseline
    return -change if score_def.better == "lower" else change


def mic_reached(score_def, baseline: float, value: float) -> tuple[bool | None, bool | None]:
    """Returns whether the absolute and the relative minimal important change were reached
    (None where the score has no such criterion or the baseline leaves no room to improve)."""
    gain = improvement(score_def, baseline, value)
    absolute = None
    if score_def.mic_absolute is not None:
        absolute = gain >= score_def.mic_absolute - EPSILON
    relative = None
    if score_def.mic_relative_percent is not None and baseline > 0:
        relative = 100 * gain / baseline >= score_def.mic_relative_percent - EPSILON
    return absolute, relative


def _point(score_def, timepoint, submitted_at, value, baseline) -> dict:
    point = {
        "timepoint": timepoint,
        "submitted_at": submitted_at,
        "value": value,
        "change": None,
        "relative_change_percent": None,
        "mic_absolute_reached": None,
        "mic_relative_reached": None,
    }
    numeric = score_def.type != "text"
    if numeric and baseline is not None and timepoint != "baseline" and value is not None:
        point["change"] = value - baseline
        if baseline:
            # Relative to the baseline's size: an EQ-5D index can start below 0 (-0.446 for
            # 55555), and dividing by it would turn an improvement into a negative change.
            point["relative_change_percent"] = 100 * (value - baseline) / abs(baseline)
        point["mic_absolute_reached"], point["mic_relative_reached"] = mic_reached(
            score_def, baseline, value
        )
    return point


def outcomes_for(patient: Account, locale: str) -> dict:
    """Returns per score the series over time points, the latest change from baseline and
    whether the minimal important change was reached (absolute and relative separately)."""
    by_key: dict[str, dict[str, QuestionnaireResponse]] = {}
    for response in responses_of(patient.id):
        by_key.setdefault(response.questionnaire_key, {})[response.timepoint] = response
    scores = []
    for definition in definitions.definitions().values():
        responses = by_key.get(definition.key, {})
        for score_def in definition.scores:
            values = {tp: r.score_values().get(score_def.name) for tp, r in responses.items()}
            baseline = values.get("baseline") if score_def.type != "text" else None
            series = [
                _point(score_def, tp, responses[tp].submitted_at, values[tp], baseline)
                for tp in TIMEPOINTS
                if tp in responses
            ]
            latest = next((p for p in reversed(series) if p["timepoint"] != "baseline"), None)
            scores.append(
                {
                    "key": definition.key,
                    "score": score_def.name,
                    "label": pick(score_def.label, locale),
                    "type": score_def.type,
                    "better": score_def.better,
                    "mic": (
                        {
                            "absolute": score_def.mic_absolute,
                            "relative_percent": score_def.mic_relative_percent,
                        }
                        if score_def.mic_absolute is not None
                        else None
                    ),
                    "series": series,
                    "baseline": values.get("baseline"),
                    "latest_timepoint": latest["timepoint"] if latest else None,
                    "latest": latest["value"] if latest else None,
                    "change": latest["change"] if latest else None,
                    "relative_change_percent": latest["relative_change_percent"]
                    if latest
                    else None,
                    "mic_absolute_reached": latest["mic_absolute_reached"] if latest else None,
                    "mic_relative_reached": latest["mic_relative_reached"] if latest else None,
                }
            )
    return {"patient_id": patient.id, "scores": scores}


# --- alerts -----------------------------------------------------------------------------------


def _baseline_score(patient_id: str, key: str, name: str) -> float | None:
    return db.session.execute(
        select(QuestionnaireScore.value).where(
            QuestionnaireScore.patient_id == patient_id,
            QuestionnaireScore.questionnaire_key == key,
            QuestionnaireScore.name == name,
            QuestionnaireScore.timepoint == "baseline",
        )
    ).scalar_one_or_none()


def _open_alert(patient_id: str, score: str) -> OutcomeAlert | None:
    return db.session.execute(
        select(OutcomeAlert)
        .where(
            OutcomeAlert.patient_id == patient_id,
            OutcomeAlert.score == score,
            OutcomeAlert.acknowledged_at.is_(None),
        )
        .limit(1)
    ).scalar_one_or_none()


def _raise_alert(
    patient: Account, *, kind, score, baseline, value, **source
) -> OutcomeAlert | None:
    if patient.therapist_id is None or _open_alert(patient.id, score) is not None:
        return None
    alert = OutcomeAlert(
        patient_id=patient.id,
        therapist_id=patient.therapist_id,
        kind=kind,
        score=score,
        baseline_value=baseline,
        value=value,
        change=value - baseline,
        created_at=clock.now(),
        **source,
    )
    db.session.add(alert)
    db.session.flush()
    # The push travels through Google's and Apple's servers: no name and no health details.
    notifications.enqueue(
        recipient_id=patient.therapist_id,
        category="alert",
        key=f"alert:{alert.id}",
        title={"nl": "Nieuwe melding in uw werklijst", "en": "New alert in your work list"},
        body={
            "nl": "Een van uw patiënten vraagt uw aandacht. Bekijk de melding in de app.",
            "en": "One of your patients needs your attention. See the alert in the app.",
        },
        data={"route": "patient_alerts", "patient_id": patient.id, "alert_id": alert.id},
    )
    return alert


def _alerts_for_response(patient: Account, response: QuestionnaireResponse, scores: dict) -> None:
    for key, name, kind, threshold in ALERT_RULES:
        if key != response.questionnaire_key:
            continue
        baseline = _baseline_score(patient.id, key, name)
        value = scores.get(name)
        if baseline is None or value is None or value - baseline < threshold - EPSILON:
            continue
        _raise_alert(
            patient,
            kind=kind,
            score=f"{key}.{name}",
            baseline=baseline,
            value=float(value),
            source="response",
            response_id=response.id,
            timepoint=response.timepoint,
        )


def alerts_query(*, patient_ids=None, therapist: Account | None = None, status: str = "open"):
    """Returns a select() of alerts (open, acknowledged or all), newest first."""
    stmt = select(OutcomeAlert)
    if patient_ids is not None:
        stmt = stmt.where(OutcomeAlert.patient_id.in_(patient_ids))
    if therapist is not None:
        stmt = stmt.join(Account, Account.id == OutcomeAlert.patient_id).where(
            Account.therapist_id == therapist.id
        )
    if status == "open":
        stmt = stmt.where(OutcomeAlert.acknowledged_at.is_(None))
    elif status == "acknowledged":
        stmt = stmt.where(OutcomeAlert.acknowledged_at.is_not(None))
    return stmt.order_by(OutcomeAlert.created_at.desc(), OutcomeAlert.id)


def alert_for_therapist(therapist: Account, alert_id: str) -> OutcomeAlert:
    """Returns an alert about one of the therapist's own patients, or raises NotFound."""
    alert = db.session.get(OutcomeAlert, alert_id) if isinstance(alert_id, str) else None
    if alert is None:
        raise NotFound("Alert not found")
    patient_for_therapist(therapist, alert.patient_id)
    return alert


def acknowledge_alert(
    *, therapist: Account, alert_id: str, note: str | None = None
) -> OutcomeAlert:
    """Returns the alert, acknowledged by the therapist (acknowledging again changes nothing)."""
    alert = alert_for_therapist(therapist, alert_id)
    if alert.acknowledged_at is None:
        alert.acknowledged_at = clock.now()
        alert.acknowledged_by_id = therapist.id
        alert.note = note
        audit.record(
            actor=therapist,
            patient_id=alert.patient_id,
            action="update",
            resource_type="outcome_alert",
            resource_id=alert.id,
        )
        db.session.flush()
    return alert


def alert_view(alert: OutcomeAlert) -> dict:
    """Returns an alert as the API shows it."""
    return {
        "id": alert.id,
        "patient_id": alert.patient_id,
        "kind": alert.kind,
        "score": alert.score,
        "source": alert.source,
        "timepoint": alert.timepoint,
        "baseline_value": alert.baseline_value,
        "value": alert.value,
        "change": alert.change,
        "created_at": alert.created_at,
        "status": "open" if alert.acknowledged_at is None else "acknowledged",
        "acknowledged_at": alert.acknowledged_at,
        "acknowledged_by_id": alert.acknowledged_by_id,
        "note": alert.note,
    }


# --- weekly check-ins ---------------------------------------------------------------------------


def submit_checkin(
    *,
    patient: Account,
    back_pain: int,
    did_committed_action: bool | None = None,
    submitted_at: datetime | None = None,
) -> CheckIn:
    """Returns the patient's check-in for this programme week; a second one in a week conflicts.
    Opens a pain alert when back pain is 2 or more above the baseline NRS."""
    enrollment = _enrollment(patient, lock=True)
    at = submitted_at or clock.now()
    today = local_date(patient, at)
    week = max((today - enrollment.started_on).days, 0) // 7 + 1
    exists = db.session.execute(
        select(CheckIn.id).where(CheckIn.patient_id == patient.id, CheckIn.week == week)
    ).first()
    if exists:
        raise Conflict(f"You already checked in for week {week}")
    checkin = CheckIn(
        patient_id=patient.id,
        week=week,
        local_date=today,
        back_pain=back_pain,
        did_committed_action=did_committed_action,
        submitted_at=at,
    )
    db.session.add(checkin)
    db.session.flush()
    metrics.record_activity(patient_id=patient.id, kind="checkin", occurred_at=at)
    key, name, kind, threshold = CHECKIN_ALERT_SCORE
    baseline = _baseline_score(patient.id, key, name)
    if baseline is not None and back_pain - baseline >= threshold - EPSILON:
        _raise_alert(
            patient,
            kind=kind,
            score=f"{key}.{name}",
            baseline=baseline,
            value=float(back_pain),
            source="checkin",
            checkin_id=checkin.id,
        )
    return checkin


def _slope(points: list[tuple[int, int]]) -> float:
    mean_x = statistics.fmean(x for x, _ in points)
    mean_y = statistics.fmean(y for _, y in points)
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    if sxx == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / sxx


def checkin_summary(patient: Account) -> dict:
    """Returns the patient's check-ins (oldest first) with change from baseline back pain, and
    the trend: the least-squares slope of back pain per week over the last 8 check-ins
    (improving ≤ −0.25, worsening ≥ 0.25, otherwise stable; none before 3 check-ins)."""
    rows = list(
        db.session.execute(
            select(CheckIn).where(CheckIn.patient_id == patient.id).order_by(CheckIn.week)
        ).scalars()
    )
    baseline = _baseline_score(patient.id, "nrs", "back_pain")
    checkins = [
        {
            "id": c.id,
            "week": c.week,
            "local_date": c.local_date,
            "back_pain": c.back_pain,
            "did_committed_action": c.did_committed_action,
            "submitted_at": c.submitted_at,
            "change_from_baseline": None if baseline is None else c.back_pain - baseline,
        }
        for c in rows
    ]
    recent = rows[-TREND_WINDOW:]
    slope = direction = None
    if len(recent) >= TREND_MIN_CHECKINS:
        slope = _slope([(c.week, c.back_pain) for c in recent])
        direction = (
            "improving"
            if slope <= -TREND_THRESHOLD
            else "worsening"
            if slope >= TREND_THRESHOLD
            else "stable"
        )
    answered = [c.did_committed_action for c in rows if c.did_committed_action is not None]
    return {
        "patient_id": patient.id,
        "baseline_back_pain": baseline,
        "checkins": checkins,
        "trend": {
            "checkins": len(rows),
            "slope_per_week": slope,
            "direction": direction,
            "recent_mean": statistics.fmean(c.back_pain for c in rows[-4:]) if rows else None,
            "committed_action_share": (sum(answered) / len(answered)) if answered else None,
        },
    }


# --- decision aid -----------------------------------------------------------------------------


def _baseline_text(patient_id: str, key: str, name: str) -> str | None:
    return db.session.execute(
        select(QuestionnaireScore.value_text).where(
            QuestionnaireScore.patient_id == patient_id,
            QuestionnaireScore.questionnaire_key == key,
            QuestionnaireScore.name == name,
            QuestionnaireScore.timepoint == "baseline",
        )
    ).scalar_one_or_none()


def comparable_patients(*, risk: str, band: str, exclude: str | None = None) -> list[str]:
    """Returns the ids of patients whose baseline has this STarT Back risk group and ODI band."""
    sbt, odi = aliased(QuestionnaireScore), aliased(QuestionnaireScore)
    stmt = (
        select(sbt.patient_id)
        .join(
            odi,
            and_(
                odi.patient_id == sbt.patient_id,
                odi.questionnaire_key == "odi",
                odi.name == "band",
                odi.timepoint == "baseline",
            ),
        )
        .where(
            sbt.questionnaire_key == "startback",
            sbt.name == "risk",
            sbt.timepoint == "baseline",
            sbt.value_text == risk,
            odi.value_text == band,
        )
    )
    if exclude is not None:
        stmt = stmt.where(sbt.patient_id != exclude)
    return list(db.session.execute(stmt).scalars())


def _group_values(patient_ids: list[str], key: str, name: str) -> dict[str, dict[str, float]]:
    values: dict[str, dict[str, float]] = {}
    if not patient_ids:
        return values
    rows = db.session.execute(
        select(
            QuestionnaireScore.patient_id, QuestionnaireScore.timepoint, QuestionnaireScore.value
        ).where(
            QuestionnaireScore.questionnaire_key == key,
            QuestionnaireScore.name == name,
            QuestionnaireScore.patient_id.in_(patient_ids),
        )
    )
    for patient_id, timepoint, value in rows:
        values.setdefault(patient_id, {})[timepoint] = value
    return values


def decision_aid(patient: Account, locale: str) -> dict:
    """Returns the patient's baseline beside what happened to comparable patients (same STarT
    Back group and ODI band): their number, the share reaching the minimal important change at
    month 3 and month 12 and the median change; groups under 10 patients are not shown."""
    risk = _baseline_text(patient.id, "startback", "risk")
    band = _baseline_text(patient.id, "odi", "band")
    baseline = {
        "odi_percent": _baseline_score(patient.id, "odi", "odi_percent"),
        "band": band,
        "back_pain": _baseline_score(patient.id, "nrs", "back_pain"),
        "risk": risk,
        "risk_meaning": risk_meaning(risk, locale),
    }
    result = {
        "patient_id": patient.id,
        "baseline": baseline,
        "comparison": None,
        "min_group_size": DECISION_AID_MIN_GROUP,
        "note": pick(
            {
                "nl": "Wat er gebeurde bij vergelijkbare deelnemers aan het programma; geen "
                "voorspelling voor u. Informatie voor het gezamenlijke besluit, geen voorschrift.",
                "en": "What happened to comparable patients in the programme; not a prediction "
                "for you. Information for the shared decision, not an instruction.",
            },
            locale,
        ),
    }
    if risk is None or band is None:
        return result
    group = comparable_patients(risk=risk, band=band, exclude=patient.id)
    shown = len(group) >= DECISION_AID_MIN_GROUP
    outcomes = []
    for key, name in DECISION_AID_SCORES:
        score_def = definitions.get(key).score(name)
        values = _group_values(group, key, name) if shown else {}
        for timepoint in DECISION_AID_TIMEPOINTS:
            pairs = [
                (v["baseline"], v[timepoint])
                for v in values.values()
                if v.get("baseline") is not None and v.get(timepoint) is not None
            ]
            entry = {
                "key": key,
                "score": name,
                "label": pick(score_def.label, locale),
                "timepoint": timepoint,
                "shown": len(pairs) >= DECISION_AID_MIN_GROUP,
                "patients": None,
                "share_mic_absolute": None,
                "share_mic_relative": None,
                "median_change": None,
            }
            if entry["shown"]:
                reached = [mic_reached(score_def, b, v) for b, v in pairs]
                relative = [r for _, r in reached if r is not None]
                entry.update(
                    patients=len(pairs),
                    share_mic_absolute=sum(1 for a, _ in reached if a) / len(pairs),
                    # Only pairs with a baseline above 0 have a relative change: the share
                    # is suppressed when they are fewer than the group minimum themselves.
                    share_mic_relative=(
                        sum(relative) / len(relative)
                        if len(relative) >= DECISION_AID_MIN_GROUP
                        else None
                    ),
                    median_change=statistics.median(v - b for b, v in pairs),
                )
            outcomes.append(entry)
    result["comparison"] = {
        "risk": risk,
        "band": band,
        "shown": shown,
        "patients": len(group) if shown else None,
        "outcomes": outcomes,
    }
    return result


# --- the therapist's work list --------------------------------------------------------------------


def worklist_extras(*, therapist: Account, patient_ids) -> dict[str, dict]:
    """Returns for each of the therapist's patients among `patient_ids`:
    `{"open_alerts": n, "risk": "low|medium|high" or None, "risk_meaning": text or None}`,
    the STarT Back group at baseline with its stepped-care meaning in the therapist's locale
    (information for the shared decision, not an instruction)."""
    ids = list(
        db.session.execute(
            select(Account.id).where(
                Account.id.in_(list(patient_ids)), Account.therapist_id == therapist.id
            )
        ).scalars()
    )
    if not ids:
        return {}
    open_alerts = dict(
        db.session.execute(
            select(OutcomeAlert.patient_id, func.count())
            .where(OutcomeAlert.patient_id.in_(ids), OutcomeAlert.acknowledged_at.is_(None))
            .group_by(OutcomeAlert.patient_id)
        ).all()
    )
    risks = dict(
        db.session.execute(
            select(QuestionnaireScore.patient_id, QuestionnaireScore.value_text).where(
                QuestionnaireScore.patient_id.in_(ids),
                QuestionnaireScore.questionnaire_key == "startback",
                QuestionnaireScore.name == "risk",
                QuestionnaireScore.timepoint == "baseline",
            )
        ).all()
    )
    return {
        pid: {
            "open_alerts": open_alerts.get(pid, 0),
            "risk": risks.get(pid),
            "risk_meaning": risk_meaning(risks.get(pid), therapist.locale),
        }
        for pid in ids
    }
