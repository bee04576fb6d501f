"""Reminder rules: the planner turns the programme's state into queue rows, each under an
idempotency key, so any number of planners may run at any rate and plan each reminder once.

Daily reminders go out at the patient's daily time in their own time zone. A day is planned for
a patient when their daily time comes within `PLAN_AHEAD` (an hour) of now: the practice
reminder for that local date is planned then (its row marks the day as planned) and, for the
same patients, the lesson, questionnaire and inactivity rules run. Appointments and therapist
reply reminders are planned on every tick. New-message notifications are enqueued by the
messaging domain itself.

The rules that read other domains call their functions directly:
`coaching.content.service.module_unlock_dates_for(pairs)` ((module slug, unlock date) pairs of
the modules whose date is settled), `coaching.outcomes.service.due_questionnaires_for(pairs)`
(dicts
with `timepoint` and `due_on`), `coaching.appointments.service.appointments_between(start, end)`
(the `Appointment` rows not cancelled) and
`coaching.messaging.service.messages_awaiting_reply(older_than)` ((therapist id, patient id,
waiting since) per conversation). They are called through their modules, so a test can stand in
for one by replacing the module's attribute.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import date, datetime, time, timedelta

from sqlalchemy import exists, literal, select

from coaching.accounts.models import Account
from coaching.appointments import service as appointments
from coaching.content import service as content
from coaching.enrolment.models import Enrollment
from coaching.extensions import db
from coaching.messaging import service as messaging
from coaching.notifications.models import Notification, ReminderSettings
from coaching.notifications.service import insert_ignore, new_row
from coaching.notifications.timing import Prefs, at_local, local_date
from coaching.outcomes import service as outcomes

log = logging.getLogger(__name__)

PLAN_AHEAD = timedelta(hours=1)
GRACE = timedelta(minutes=30)  # a reminder planned this late still goes out; later ones do not
CHUNK = 1000
INACTIVE_DAYS = 4
INACTIVITY_EVERY_DAYS = 7
INACTIVITY_MAX_NUDGES = 3  # then we stop: nagging makes people uninstall
QUESTIONNAIRE_REPEAT_DAYS = 3
REPLY_WAIT = timedelta(hours=36)
APPOINTMENT_OFFSETS = (("24h", timedelta(hours=24)), ("2h", timedelta(hours=2)))

# No health details: these texts show on a lock screen and pass Google's and Apple's servers.
TEXTS = {
    "practice": (
        {"nl": "Tijd om te oefenen", "en": "Time to practise"},
        {
            "nl": "Een paar minuten oefenen vandaag? Je programma staat klaar.",
            "en": "A few minutes of practice today? Your programme is ready.",
        },
    ),
    "lesson": (
        {"nl": "Nieuwe les beschikbaar", "en": "New lesson available"},
        {
            "nl": "Er staat een nieuwe les voor je klaar.",
            "en": "A new lesson is waiting for you.",
        },
    ),
    "questionnaire": (
        {"nl": "Korte vragenlijst", "en": "Short questionnaire"},
        {
            "nl": "Wil je een korte vragenlijst invullen? Het duurt maar een paar minuten.",
            "en": "Would you fill in a short questionnaire? It only takes a few minutes.",
        },
    ),
    "inactivity": (
        {"nl": "We missen je", "en": "We miss you"},
        {
            "nl": "Het is even geleden. Pak de draad weer op wanneer het jou uitkomt.",
            "en": "It has been a while. Pick up where you left off whenever it suits you.",
        },
    ),
    "appointment": (
        {"nl": "Afspraak binnenkort", "en": "Appointment coming up"},
        {
            "nl": "Je hebt binnenkort een afspraak met je fysiotherapeut.",
            "en": "You have an appointment with your physiotherapist soon.",
        },
    ),
    "reply": (
        {"nl": "Bericht wacht op antwoord", "en": "A message is waiting for a reply"},
        {
            "nl": "Een patiënt wacht al meer dan anderhalve dag op je antwoord.",
            "en": "A patient has been waiting more than a day and a half for your reply.",
        },
    ),
}


def _text(kind: str) -> dict:
    title, body = TEXTS[kind]
    return {"title": title, "body": body}


def plan(now: datetime) -> dict[str, int]:
    """Plan every reminder that is due to be planned as of `now`; returns counts per rule."""
    counts: Counter = Counter()
    # One rule failing (say, another domain mid-migration) must not stop the others.
    for rule in (plan_daily, plan_appointments, plan_reply_reminders):
        try:
            counts += rule(now)
        except Exception:
            db.session.rollback()
            log.exception("reminder rule %s failed", rule.__name__)
            counts[f"{rule.__name__}_failed"] += 1
    return {k: v for k, v in counts.items() if v}


# --- daily reminders ---------------------------------------------------------------------------


def _active_patients():
    return (
        select(Account.id)
        .join(Enrollment, Enrollment.patient_id == Account.id)
        .where(
            Account.role == "patient",
            Account.is_active.is_(True),
            Enrollment.status == "active",
        )
    )


def _groups() -> list[tuple[str, time | None]]:
    """Returns the distinct (time zone, daily time) pairs of active patients."""
    stmt = (
        select(Account.timezone, ReminderSettings.daily_time)
        .join(Enrollment, Enrollment.patient_id == Account.id)
        .outerjoin(ReminderSettings, ReminderSettings.account_id == Account.id)
        .where(
            Account.role == "patient",
            Account.is_active.is_(True),
            Enrollment.status == "active",
        )
        .distinct()
    )
    return [(tz, t) for tz, t in db.session.execute(stmt).all()]


def plan_daily(now: datetime) -> Counter:
    """Plan the practice reminders (and the day's other reminders) of every patient whose daily
    time on some local date falls within [now - GRACE, now + PLAN_AHEAD]."""
    counts: Counter = Counter()
    for timezone, daily_time in _groups():
        effective = daily_time or Prefs().daily_time
        today = local_date(now, timezone)
        for day in (today - timedelta(days=1), today, today + timedelta(days=1)):
            target = at_local(day, effective, timezone)
            if now - GRACE <= target <= now + PLAN_AHEAD:
                counts += _plan_group_day(timezone, daily_time, day, target, now)
    return counts


def _plan_group_day(
    timezone: str, daily_time: time | None, day: date, target: datetime, now: datetime
) -> Counter:
    counts: Counter = Counter()
    key = literal("practice:") + Account.id + literal(f":{day.isoformat()}")
    time_matches = (
        ReminderSettings.daily_time.is_(None)
        if daily_time is None
        else ReminderSettings.daily_time == daily_time
    )
    stmt = (
        select(Account, Enrollment, ReminderSettings)
        .join(Enrollment, Enrollment.patient_id == Account.id)
        .outerjoin(ReminderSettings, ReminderSettings.account_id == Account.id)
        .where(
            Account.role == "patient",
            Account.is_active.is_(True),
            Enrollment.status == "active",
            Account.timezone == timezone,
            time_matches,
            ~exists().where(Notification.idempotency_key == key),
        )
        .order_by(Account.id)
        .limit(CHUNK)
    )
    after = ""
    while True:
        # Keyset pages: each chunk starts after the last patient of the previous one.
        batch = db.session.execute(stmt.where(Account.id > after)).all()
        if not batch:
            break
        after = batch[-1][0].id
        rows = []
        for account, _enrollment, settings in batch:
            prefs = Prefs.of(timezone=account.timezone, locale=account.locale, settings=settings)
            rows.append(
                new_row(
                    recipient_id=account.id,
                    category="practice",
                    key=f"practice:{account.id}:{day.isoformat()}",
                    data={"link": "/today"},
                    scheduled_for=target,
                    prefs=prefs,
                    now=now,
                    day=day,
                    **_text("practice"),
                )
            )
        counts["practice"] += insert_ignore(rows)
        try:
            # A savepoint: a failing rule of another domain costs only this chunk's extras.
            with db.session.begin_nested():
                counts += _plan_day_extras(batch, day, target, now)
        except Exception:
            log.exception("day rules failed for %d patients", len(batch))
            counts["day_rules_failed"] += len(batch)
        db.session.commit()
        if len(batch) < CHUNK:
            break
    return counts


def _plan_day_extras(batch, day: date, at: datetime, now: datetime) -> Counter:
    """Plan the lesson, questionnaire and inactivity reminders of a chunk of patients for one
    local date, reading the other domains once for the whole chunk."""
    pairs = [(account, enrollment) for account, enrollment, _settings in batch]
    unlocks = content.module_unlock_dates_for(pairs)
    due = outcomes.due_questionnaires_for(pairs)
    first_days = _first_questionnaire_days([a.id for a, _ in pairs])
    rows: list[dict] = []
    for account, enrollment, settings in batch:
        prefs = Prefs.of(timezone=account.timezone, locale=account.locale, settings=settings)
        rows += plan_patient_day(
            account,
            enrollment,
            prefs,
            day,
            at,
            now,
            unlock_dates=unlocks.get(account.id, []),
            due=due.get(account.id, []),
            first_days=first_days,
        )
    counts: Counter = Counter()
    for category in {row["category"] for row in rows}:
        counts[category] += insert_ignore([r for r in rows if r["category"] == category])
    return counts


def _first_questionnaire_days(patient_ids: list[str]) -> dict[str, date]:
    """Returns idempotency key → local date of the first questionnaire reminders planned for
    these patients (the second comes three days after the first)."""
    if not patient_ids:
        return {}
    return dict(
        db.session.execute(
            select(Notification.idempotency_key, Notification.local_date).where(
                Notification.recipient_id.in_(patient_ids),
                Notification.category == "questionnaire",
                Notification.idempotency_key.like("questionnaire:%:1"),
            )
        ).all()
    )


def plan_patient_day(
    patient: Account,
    enrollment: Enrollment,
    prefs: Prefs,
    day: date,
    at: datetime,
    now: datetime,
    *,
    unlock_dates: list[tuple[str, date]],
    due: list[dict],
    first_days: dict[str, date],
) -> list[dict]:
    """Returns a patient's lesson, questionnaire and inactivity reminders for one local date."""
    rows: list[dict] = []
    common = {"recipient_id": patient.id, "prefs": prefs, "now": now, "day": day}

    for slug, unlocks_on in unlock_dates:
        if day - timedelta(days=2) <= unlocks_on <= day:
            rows.append(
                new_row(
                    category="lesson",
                    key=f"lesson:{patient.id}:{slug}",
                    data={"link": "/programme"},
                    scheduled_for=at,
                    **common,
                    **_text("lesson"),
                )
            )

    rows.extend(_questionnaire_rows(patient, due, day, at, common, first_days))

    last = enrollment.last_active_at or enrollment.enrolled_at
    if last is not None:
        idle_days = (day - local_date(last, prefs.timezone)).days
        if idle_days >= INACTIVE_DAYS:
            nudge = (idle_days - INACTIVE_DAYS) // INACTIVITY_EVERY_DAYS
            if nudge < INACTIVITY_MAX_NUDGES:
                rows.append(
                    new_row(
                        category="inactivity",
                        key=f"inactivity:{patient.id}:{int(last.timestamp())}:{nudge}",
                        data={"link": "/today"},
                        scheduled_for=at,
                        skip_if_active_since=last,
                        **common,
                        **_text("inactivity"),
                    )
                )
    return rows


def _questionnaire_rows(
    patient: Account,
    items: list[dict],
    day: date,
    at: datetime,
    common: dict,
    first_days: dict[str, date],
) -> list[dict]:
    """One reminder per timepoint (all its questionnaires together: one push, not six): on the
    due date, and once more three days after the first if any of them is still open."""
    due_by_timepoint: dict[str, date] = {}
    for item in items:
        timepoint, due_on = item["timepoint"], item["due_on"]
        if due_on > day:
            continue
        due_by_timepoint[timepoint] = min(due_on, due_by_timepoint.get(timepoint, due_on))
    if not due_by_timepoint:
        return []
    bases = {tp: f"questionnaire:{patient.id}:{tp}" for tp in due_by_timepoint}
    rows = []
    for base in bases.values():
        first_day = first_days.get(f"{base}:1")
        if first_day is None:
            number = 1
        elif day >= first_day + timedelta(days=QUESTIONNAIRE_REPEAT_DAYS):
            number = 2
        else:
            continue
        rows.append(
            new_row(
                category="questionnaire",
                key=f"{base}:{number}",
                data={"link": "/questionnaires"},
                scheduled_for=at,
                **common,
                **_text("questionnaire"),
            )
        )
    return rows


# --- appointments and therapist replies --------------------------------------------------------


def _prefs_of(account_ids: set[str]) -> dict[str, Prefs]:
    if not account_ids:
        return {}
    rows = db.session.execute(
        select(Account, ReminderSettings)
        .outerjoin(ReminderSettings, ReminderSettings.account_id == Account.id)
        .where(Account.id.in_(account_ids), Account.is_active.is_(True))
    ).all()
    return {a.id: Prefs.of(timezone=a.timezone, locale=a.locale, settings=s) for a, s in rows}


def plan_appointments(now: datetime) -> Counter:
    """Plan the reminders 24 hours and 2 hours before each appointment, for the patient."""
    counts: Counter = Counter()
    longest = max(offset for _, offset in APPOINTMENT_OFFSETS)
    wanted = []
    # Cancelled appointments are left out by appointments_between itself.
    for appointment in appointments.appointments_between(now - GRACE, now + longest + PLAN_AHEAD):
        for label, offset in APPOINTMENT_OFFSETS:
            remind_at = appointment.starts_at - offset
            if now - GRACE <= remind_at <= now + PLAN_AHEAD:
                wanted.append(
                    (
                        appointment.patient_id,
                        appointment.id,
                        appointment.starts_at,
                        label,
                        remind_at,
                    )
                )
    prefs = _prefs_of({w[0] for w in wanted})
    rows = [
        new_row(
            recipient_id=patient_id,
            category="appointment",
            key=f"appointment:{appointment_id}:{int(starts_at.timestamp())}:{label}",
            data={"link": f"/appointments/{appointment_id}"},
            scheduled_for=remind_at,
            prefs=prefs[patient_id],
            now=now,
            **_text("appointment"),
        )
        for patient_id, appointment_id, starts_at, label, remind_at in wanted
        if patient_id in prefs
    ]
    counts["appointment"] += insert_ignore(rows)
    db.session.commit()
    return counts


def plan_reply_reminders(now: datetime) -> Counter:
    """Remind a therapist once about each patient message waiting more than 36 hours."""
    counts: Counter = Counter()
    wanted = []
    # (therapist_id, patient_id, waiting since): the conversation's oldest unanswered patient
    # message, so one reminder per message left waiting.
    for therapist_id, patient_id, since in messaging.messages_awaiting_reply(now - REPLY_WAIT):
        message_id = f"{therapist_id}:{patient_id}:{int(since.timestamp())}"
        wanted.append((therapist_id, message_id, patient_id))
    prefs = _prefs_of({w[0] for w in wanted})
    rows = [
        new_row(
            recipient_id=therapist_id,
            category="message",
            key=f"reply:{message_id}",
            data={"link": f"/patients/{patient_id}/messages"},
            scheduled_for=now,
            prefs=prefs[therapist_id],
            now=now,
            **_text("reply"),
        )
        for therapist_id, message_id, patient_id in wanted
        if therapist_id in prefs
    ]
    counts["reply"] += insert_ignore(rows)
    db.session.commit()
    return counts
