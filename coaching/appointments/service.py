"""Planning, listing and cancelling appointments between a therapist and their patient.

A therapist plans sessions for their own patients; the patient sees them (and is reminded by the
notifications domain); either side cancels, and the other side is notified of a cancellation
(a deep link only, no details).
The reminders before an appointment are planned by the notifications domain from
`appointments_between()`.
"""

from __future__ import annotations

import importlib
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update

from coaching import clock
from coaching.accounts.models import Account
from coaching.appointments.models import Appointment
from coaching.audit import service as audit
from coaching.errors import Conflict, NotFound, ValidationFailed
from coaching.extensions import db

MIN_DURATION, MAX_DURATION = 5, 240
MAX_AHEAD = timedelta(days=366)
SCOPES = ("all", "upcoming", "past")

_TEXTS = {
    "cancelled_by_therapist": (
        {"nl": "Afspraak geannuleerd", "en": "Appointment cancelled"},
        {
            "nl": "Je fysiotherapeut heeft een afspraak geannuleerd.",
            "en": "Your physiotherapist cancelled an appointment.",
        },
    ),
    "cancelled_by_patient": (
        {"nl": "Afspraak geannuleerd", "en": "Appointment cancelled"},
        {
            "nl": "Een patiënt heeft een afspraak geannuleerd.",
            "en": "A patient cancelled an appointment.",
        },
    ),
}


def _patient_for_therapist(therapist: Account, patient_id: str) -> Account:
    from coaching.patients.service import patient_for_therapist

    return patient_for_therapist(therapist, patient_id)


def _notify(appointment: Appointment, recipient_id: str, event: str) -> None:
    try:
        notifications = importlib.import_module("coaching.notifications.service")
    except ModuleNotFoundError:
        return
    enqueue = getattr(notifications, "enqueue", None)
    if enqueue is None:
        return
    title, body = _TEXTS[event]
    enqueue(
        recipient_id=recipient_id,
        category="appointment",
        key=f"appointment-{event}:{appointment.id}",
        title=title,
        body=body,
        data={"link": f"/appointments/{appointment.id}"},
    )


def _audit(actor: Account, appointment: Appointment, action: str) -> None:
    audit.record(
        actor=actor,
        patient_id=appointment.patient_id,
        action=action,
        resource_type="appointment",
        resource_id=appointment.id,
    )


def _lock_therapist(therapist: Account) -> None:
    """Lock the therapist's account row until the transaction ends (on PostgreSQL).

    Plans of one therapist queue here, so each checks for an overlap after the one before it
    committed (a new snapshot under READ COMMITTED). FOR NO KEY UPDATE, so that rows referring
    to the account (audit entries, messages) can still be written meanwhile. SQLite takes no
    lock for a SELECT: there the overlap is checked again after the insert instead (SQLite runs
    one writer at a time, so the second writer's check sees the first's appointment).
    """
    db.session.execute(
        select(Account.id).where(Account.id == therapist.id).with_for_update(key_share=True)
    )


def _overlapping(
    therapist_id: str, starts_at: datetime, ends_at: datetime, *, besides: str | None = None
) -> bool:
    stmt = select(Appointment).where(
        Appointment.therapist_id == therapist_id,
        Appointment.cancelled_at.is_(None),
        Appointment.starts_at < ends_at,
        Appointment.starts_at > starts_at - timedelta(minutes=MAX_DURATION),
    )
    if besides is not None:
        stmt = stmt.where(Appointment.id != besides)
    candidates = db.session.execute(stmt).scalars()
    return any(a.ends_at > starts_at for a in candidates)


def plan_appointment(
    *,
    therapist: Account,
    patient_id: str,
    starts_at: datetime,
    duration_minutes: int,
    kind: str,
    note: str | None = None,
) -> Appointment:
    """Returns a new appointment of a therapist with their own patient.

    It must lie ahead (at most a year) and not overlap another of the therapist's appointments.
    """
    patient = _patient_for_therapist(therapist, patient_id)
    if not patient.is_active:
        # A closed account (erased, its medical record kept): nobody can sign in to see the
        # appointment, and its reminders would go to nobody.
        raise NotFound("Patient not found")
    now = clock.now()
    if starts_at < now:
        raise ValidationFailed.field("starts_at", "Lies in the past.")
    if starts_at > now + MAX_AHEAD:
        raise ValidationFailed.field("starts_at", "More than a year ahead.")
    if not MIN_DURATION <= duration_minutes <= MAX_DURATION:
        raise ValidationFailed.field(
            "duration_minutes", f"Must be {MIN_DURATION} to {MAX_DURATION} minutes."
        )
    ends_at = starts_at + timedelta(minutes=duration_minutes)
    _lock_therapist(therapist)
    if _overlapping(therapist.id, starts_at, ends_at):
        raise Conflict("You already have an appointment at that time")
    appointment = Appointment(
        patient_id=patient.id,
        therapist_id=therapist.id,
        starts_at=starts_at,
        duration_minutes=duration_minutes,
        kind=kind,
        note=note,
        created_at=now,
    )
    db.session.add(appointment)
    db.session.flush()
    # Another plan may have passed the check at the same time (SQLite, see _lock_therapist):
    # the later writer sees the earlier one's appointment now, and its transaction rolls back.
    if _overlapping(therapist.id, starts_at, ends_at, besides=appointment.id):
        raise Conflict("You already have an appointment at that time")
    _audit(therapist, appointment, "create")
    return appointment


def appointments_query(patient_id: str, scope: str = "all"):
    """Returns a select() of a patient's appointments: all (by time), upcoming (not cancelled and
    not ended, soonest first) or past (the others that have started, latest first).

    One going on is upcoming until it ends, as in `upcoming()` and `next_appointment()`.
    """
    stmt = select(Appointment).where(Appointment.patient_id == patient_id)
    now = clock.now()
    # The end is not a column: the few that started but have not ended are found here.
    going_on = [a.id for a in _ahead([patient_id]) if a.starts_at < now]
    if scope == "upcoming":
        return stmt.where(
            Appointment.cancelled_at.is_(None),
            or_(Appointment.starts_at >= now, Appointment.id.in_(going_on)),
        ).order_by(Appointment.starts_at, Appointment.id)
    if scope == "past":
        return stmt.where(Appointment.starts_at < now, Appointment.id.not_in(going_on)).order_by(
            Appointment.starts_at.desc(), Appointment.id
        )
    return stmt.order_by(Appointment.starts_at, Appointment.id)


def readable_patient_id(*, actor: Account, patient_id: str) -> str:
    """Returns the id of a patient whose appointments the caller may list: themself, or their
    therapist's own patient (an audited read); anyone else gets NotFound."""
    if actor.role == "patient":
        if actor.id != patient_id:
            raise NotFound("Patient not found")
        return patient_id
    patient = _patient_for_therapist(actor, patient_id)
    audit.record(
        actor=actor,
        patient_id=patient.id,
        action="read",
        resource_type="appointments",
        resource_id=patient.id,
    )
    return patient.id


def get_for(account: Account, appointment_id: str, *, audit_read: bool = True) -> Appointment:
    """Returns an appointment of the caller (the patient, or their therapist), else NotFound."""
    appointment = (
        db.session.get(Appointment, appointment_id) if isinstance(appointment_id, str) else None
    )
    if appointment is None:
        raise NotFound("Appointment not found")
    if account.role == "patient":
        if appointment.patient_id != account.id:
            raise NotFound("Appointment not found")
        return appointment
    patient = db.session.get(Account, appointment.patient_id)
    if patient is None or patient.therapist_id != account.id:
        raise NotFound("Appointment not found")
    if audit_read:
        _audit(account, appointment, "read")
    return appointment


def cancel(*, account: Account, appointment_id: str, reason: str | None = None) -> Appointment:
    """Returns the appointment cancelled by the patient or their therapist (again: unchanged).

    One that has already ended cannot be cancelled.
    """
    appointment = get_for(account, appointment_id, audit_read=False)
    if appointment.cancelled_at is not None:
        return appointment
    now = clock.now()
    if appointment.ends_at <= now:
        raise Conflict("This appointment has already taken place")
    # Only while it is still planned: the other side may be cancelling it at the same moment,
    # and the appointment read above does not know (the later cancel changes nothing, and
    # neither the canceller nor the notification is overwritten or sent twice).
    cancelled = db.session.execute(
        update(Appointment)
        .where(Appointment.id == appointment.id, Appointment.cancelled_at.is_(None))
        .values(cancelled_at=now, cancelled_by=account.id, cancel_reason=reason)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.refresh(appointment)
    if cancelled != 1:
        return appointment
    if account.role == "patient":
        _notify(appointment, appointment.therapist_id, "cancelled_by_patient")
    else:
        _audit(account, appointment, "update")
        _notify(appointment, appointment.patient_id, "cancelled_by_therapist")
    return appointment


def _ahead(patient_ids: list[str]) -> list[Appointment]:
    """Returns the patients' appointments not cancelled that have not ended, soonest first."""
    if not patient_ids:
        return []
    now = clock.now()
    rows = db.session.execute(
        select(Appointment)
        .where(
            Appointment.patient_id.in_(patient_ids),
            Appointment.cancelled_at.is_(None),
            Appointment.starts_at > now - timedelta(minutes=MAX_DURATION),
        )
        .order_by(Appointment.starts_at, Appointment.id)
    ).scalars()
    return [a for a in rows if a.ends_at > now]


def next_appointments(patient_ids: list[str]) -> dict[str, Appointment]:
    """Returns per patient their next (or ongoing) appointment that is not cancelled."""
    result: dict[str, Appointment] = {}
    for appointment in _ahead(list(patient_ids)):
        result.setdefault(appointment.patient_id, appointment)
    return result


def next_appointment(*, patient_id: str) -> Appointment | None:
    """Returns the patient's next (or ongoing) appointment that is not cancelled, if any."""
    return next_appointments([patient_id]).get(patient_id)


def upcoming(patient_id: str) -> list[Appointment]:
    """Returns the patient's appointments not cancelled that have not ended, soonest first."""
    return _ahead([patient_id])


def appointments_between(start: datetime, end: datetime) -> list[Appointment]:
    """Returns every appointment not cancelled starting in [start, end) (for reminders)."""
    return list(
        db.session.execute(
            select(Appointment)
            .where(
                Appointment.cancelled_at.is_(None),
                Appointment.starts_at >= start,
                Appointment.starts_at < end,
            )
            .order_by(Appointment.starts_at, Appointment.id)
        ).scalars()
    )
