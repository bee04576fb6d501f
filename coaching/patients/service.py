"""The therapist's work list and the detail of one patient: programme progress, last activity,
reflections and upcoming appointments, merged with what other domains add per patient.

Other domains contribute through `coaching.<domain>.service.worklist_extras(therapist=,
patient_ids=)` (for each domain in `EXTRA_DOMAINS` that has it), returning
`{patient_id: {field: value}}`, e.g. unread_messages, awaiting_reply_since, open_alerts, risk.
Every read here is of patient data by staff, and is audited.
"""

from __future__ import annotations

import importlib
from datetime import UTC, datetime

from sqlalchemy import select

from coaching.accounts.models import Account
from coaching.audit import service as audit
from coaching.content import service as content
from coaching.enrolment.models import Enrollment
from coaching.errors import NotFound
from coaching.extensions import db

EXTRA_DOMAINS = ("outcomes", "messaging")
# What the work list shows when no domain says otherwise (API.md's fields).
EXTRA_DEFAULTS = {"unread_messages": 0, "awaiting_reply_since": None}
SORTS = ("name", "attention", "last_active")


def patient_for_therapist(therapist: Account, patient_id: str) -> Account:
    """Returns the therapist's own patient, or raises NotFound (others' patients do not exist)."""
    patient = db.session.get(Account, patient_id) if isinstance(patient_id, str) else None
    if patient is None or patient.role != "patient" or patient.therapist_id != therapist.id:
        raise NotFound("Patient not found")
    return patient


def _extras_function(domain: str):
    module_name = f"coaching.{domain}.service"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name in (module_name, f"coaching.{domain}"):
            return None
        raise
    return getattr(module, "worklist_extras", None)


def domain_extras(therapist: Account, patient_ids: list[str]) -> dict[str, dict]:
    """Returns per patient the defaults overlaid with every domain's work-list extras."""
    merged = {pid: dict(EXTRA_DEFAULTS) for pid in patient_ids}
    if not patient_ids:
        return merged
    for domain in EXTRA_DOMAINS:
        function = _extras_function(domain)
        if function is None:
            continue
        for pid, values in (function(therapist=therapist, patient_ids=patient_ids) or {}).items():
            if pid in merged and isinstance(values, dict):
                merged[pid].update(values)
    return merged


def _rows(therapist: Account, status: str | None) -> list[tuple[Account, Enrollment]]:
    stmt = (
        select(Account, Enrollment)
        .join(Enrollment, Enrollment.patient_id == Account.id)
        .where(Account.role == "patient", Account.therapist_id == therapist.id)
        .order_by(Account.display_name, Account.id)
    )
    if status is not None:
        stmt = stmt.where(Enrollment.status == status)
    return [tuple(row) for row in db.session.execute(stmt).all()]


def _next_appointments(patient_ids: list[str]) -> dict:
    from coaching.appointments import service as appointments

    return appointments.next_appointments(patient_ids)


def _attention_key(item: dict):
    # Waiting longest for a reply first, then open alerts, then unread messages.
    since = item.get("awaiting_reply_since")
    far = datetime.max.replace(tzinfo=UTC)
    return (
        since if isinstance(since, datetime) else far,
        -int(item.get("open_alerts") or 0),
        -int(item.get("unread_messages") or 0),
        item["display_name"].casefold(),
    )


def _item(
    patient: Account, enrollment: Enrollment, states, extras: dict, appointment, locale: str
) -> dict:
    core = {
        "id": patient.id,
        "display_name": patient.display_name,
        "enrolled_on": enrollment.started_on,
        "status": enrollment.status,
        "last_active_at": enrollment.last_active_at,
        "current_module": content.module_summary(content.current_module(states), locale),
        "progress": content.progress_summary(states),
        "next_appointment": appointment,
    }
    return {**extras, **core}


def worklist(
    therapist: Account, *, status: str | None = None, sort: str = "name", page: int, page_size: int
) -> tuple[list[dict], int]:
    """Returns one page of the therapist's patients with their progress and extras, and the
    total; each patient shown is an audited read."""
    rows = _rows(therapist, status)
    total = len(rows)
    if sort == "last_active":
        never = datetime.min.replace(tzinfo=UTC)
        rows.sort(key=lambda r: r[1].last_active_at or never, reverse=True)
    if sort != "attention":
        rows = rows[(page - 1) * page_size : page * page_size]
    ids = [patient.id for patient, _ in rows]
    extras = domain_extras(therapist, ids)
    if sort == "attention":
        keyed = sorted(
            rows,
            key=lambda r: _attention_key({**extras[r[0].id], "display_name": r[0].display_name}),
        )
        rows = keyed[(page - 1) * page_size : page * page_size]
        ids = [patient.id for patient, _ in rows]
    states = content.programme_states(rows)
    appointments = _next_appointments(ids)
    items = [
        _item(
            patient,
            enrollment,
            states[patient.id],
            extras[patient.id],
            appointments.get(patient.id),
            therapist.locale,
        )
        for patient, enrollment in rows
    ]
    for patient, _ in rows:
        audit.record(
            actor=therapist,
            patient_id=patient.id,
            action="read",
            resource_type="worklist",
            resource_id=patient.id,
        )
    return items, total


def patient_detail(therapist: Account, patient_id: str) -> dict:
    """Returns one of the therapist's patients in detail (an audited read)."""
    from coaching.appointments import service as appointments

    patient = patient_for_therapist(therapist, patient_id)
    enrollment = db.session.execute(
        select(Enrollment).where(Enrollment.patient_id == patient.id)
    ).scalar_one_or_none()
    if enrollment is None:
        raise NotFound("Patient not found")
    states = content.programme_state(patient, enrollment)
    extras = domain_extras(therapist, [patient.id])[patient.id]
    item = _item(
        patient,
        enrollment,
        states,
        extras,
        appointments.next_appointments([patient.id]).get(patient.id),
        therapist.locale,
    )
    item.update(
        {
            "email": patient.email,
            "locale": patient.locale,
            "timezone": patient.timezone,
            "completed_at": enrollment.completed_at,
            "modules": content.modules_detail(states, therapist.locale),
            # The questions as the patient saw them, in their language.
            "reflections": content.reflections(patient.id, patient.locale),
            "upcoming_appointments": appointments.upcoming(patient.id),
        }
    )
    audit.record(
        actor=therapist,
        patient_id=patient.id,
        action="read",
        resource_type="patient",
        resource_id=patient.id,
    )
    return item
