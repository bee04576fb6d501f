"""Invites, patient registration, enrolment and consent."""

from __future__ import annotations

import re
import secrets
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

from flask import current_app, g
from sqlalchemy import select, update

from coaching import clock
from coaching.accounts import service as accounts
from coaching.accounts.models import Account
from coaching.content import service as content
from coaching.enrolment.models import ConsentAcceptance, Enrollment, Invite
from coaching.errors import Conflict, NotFound
from coaching.extensions import db
from coaching.metrics import service as metrics
from coaching.practices.models import Practice

# No 0/O, 1/I/L: codes are read aloud and typed from paper.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 10  # 10 × log2(31) ≈ 49.5 bits
CONSENT_DIR = Path(__file__).parent / "consent"


def generate_code() -> str:
    """Returns a new random invite code."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalize_code(code: str) -> str:
    """Returns a code as stored: upper case, without spaces or dashes people add when typing."""
    return re.sub(r"[\s-]", "", code).upper()


def create_invite(
    *, therapist: Account, referral_source: str, channel: str, expires_in_days: int | None = None
) -> Invite:
    """Returns a new pending invite of a therapist, and records the `invited` step."""
    now = clock.now()
    days = expires_in_days or current_app.config["INVITE_DEFAULT_DAYS"]
    invite = Invite(
        code=generate_code(),
        therapist_id=therapist.id,
        practice_id=therapist.practice_id,
        referral_source=referral_source,
        channel=channel,
        created_at=now,
        expires_at=now + timedelta(days=days),
    )
    db.session.add(invite)
    db.session.flush()
    metrics.record_event(invite=invite, name="invited", occurred_at=now)
    return invite


def invites_query(therapist: Account, status: str | None = None):
    """Returns a select() of a therapist's own invites, newest first, optionally of one status."""
    stmt = select(Invite).where(Invite.therapist_id == therapist.id)
    if status is not None:
        now = clock.now()
        live = (Invite.revoked_at.is_(None), Invite.redeemed_at.is_(None))
        conditions = {
            "revoked": (Invite.revoked_at.is_not(None),),
            "redeemed": (Invite.revoked_at.is_(None), Invite.redeemed_at.is_not(None)),
            "expired": (*live, Invite.expires_at <= now),
            "opened": (*live, Invite.expires_at > now, Invite.opened_at.is_not(None)),
            "pending": (*live, Invite.expires_at > now, Invite.opened_at.is_(None)),
        }
        stmt = stmt.where(*conditions[status])
    return stmt.order_by(Invite.created_at.desc(), Invite.id)


def get_invite_for(therapist: Account, code: str) -> Invite:
    """Returns the therapist's own invite with this code, or raises NotFound."""
    invite = db.session.execute(
        select(Invite).where(
            Invite.code == normalize_code(code), Invite.therapist_id == therapist.id
        )
    ).scalar_one_or_none()
    if invite is None:
        raise NotFound("Invite not found")
    return invite


def revoke_invite(*, therapist: Account, code: str) -> None:
    """Revoke a therapist's own invite; a redeemed one cannot be revoked."""
    invite = get_invite_for(therapist, code)
    if invite.redeemed_at is None and invite.revoked_at is None:
        # Only while it is still unused: a patient may be registering with the code at this
        # moment, and the invite read above does not know (a used invite marked revoked would
        # answer 204 and show the therapist a registered patient's invite as revoked).
        db.session.execute(
            update(Invite)
            .where(
                Invite.id == invite.id, Invite.redeemed_at.is_(None), Invite.revoked_at.is_(None)
            )
            .values(revoked_at=clock.now())
            .execution_options(synchronize_session=False)
        )
        db.session.refresh(invite)
    if invite.redeemed_at is not None:
        raise Conflict("This invite was already redeemed")


def _usable_invite(code: str) -> Invite:
    if not isinstance(code, str) or len(code) > 40:
        raise NotFound("Invite not found")
    invite = db.session.execute(
        select(Invite).where(Invite.code == normalize_code(code))
    ).scalar_one_or_none()
    if invite is None or invite.status_at(clock.now()) not in ("pending", "opened"):
        raise NotFound("Invite not found")
    return invite


def look_up_invite(code: str, locale: str) -> dict:
    """Returns what a patient sees of an invite; the first look-up marks it opened."""
    invite = _usable_invite(code)
    now = clock.now()
    if invite.opened_at is None:
        invite.opened_at = now
        metrics.record_event(invite=invite, name="invite_opened", occurred_at=now)
    practice = db.session.get(Practice, invite.practice_id)
    therapist = db.session.get(Account, invite.therapist_id)
    db.session.flush()
    return {
        "practice_name": practice.name,
        "therapist_name": therapist.display_name,
        "programme_title": content.programme_title(locale),
        "expires_at": invite.expires_at,
    }


def local_date(account: Account, at=None):
    """Returns the date in the account's own time zone at a moment (default: now)."""
    return (at or clock.now()).astimezone(ZoneInfo(account.timezone)).date()


def register_patient(
    *, invite_code: str, email: str, password: str, display_name: str, locale: str, timezone: str
) -> Account:
    """Returns a new patient enrolled through an invite, linked to its therapist and practice."""
    invite = _usable_invite(invite_code)
    accounts.check_timezone(timezone)
    if accounts.find_by_email(email) is not None:
        raise Conflict("An account with this e-mail address already exists")
    now = clock.now()
    # Claim the invite atomically: two registrations racing for one code cannot both win.
    claimed = db.session.execute(
        update(Invite)
        .where(Invite.id == invite.id, Invite.redeemed_at.is_(None), Invite.revoked_at.is_(None))
        .values(redeemed_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if claimed != 1:
        raise NotFound("Invite not found")
    patient = accounts.create_account(
        email=email,
        password=password,
        role="patient",
        display_name=display_name,
        locale=locale,
        timezone=timezone,
        practice_id=invite.practice_id,
        therapist_id=invite.therapist_id,
    )
    db.session.refresh(invite)
    invite.patient_id = patient.id
    if invite.opened_at is None:
        # Registering with a code typed from paper opens it too.
        invite.opened_at = now
        metrics.record_event(
            invite=invite, name="invite_opened", occurred_at=now, patient_id=patient.id
        )
    enrollment = Enrollment(
        patient_id=patient.id,
        invite_id=invite.id,
        therapist_id=invite.therapist_id,
        practice_id=invite.practice_id,
        programme_slug=content.programme_slug(),
        status="active",
        started_on=local_date(patient, now),
        enrolled_at=now,
    )
    db.session.add(enrollment)
    db.session.flush()
    metrics.record_event(invite=invite, name="registered", occurred_at=now, patient_id=patient.id)
    _after_registration(patient, enrollment)
    return patient


# Other domains hook into registration (a conversation is opened, reminders planned ...).
REGISTRATION_HOOKS: list = []


def _after_registration(patient: Account, enrollment: Enrollment) -> None:
    for hook in REGISTRATION_HOOKS:
        hook(patient=patient, enrollment=enrollment)


def move_enrolment_back(enrollment: Enrollment, started_on, enrolled_at) -> None:
    """Moves a fresh enrolment into the past, for demo data: with it the patient's invite (when
    it was sent, opened and redeemed) and the invite's uptake events move back by as much, and
    its milestone row is recomputed. Moving only the enrolment left the journey's first steps
    after the later ones (lessons dated from the new start), so the chained funnel stopped at
    `consented`."""
    shift = enrollment.enrolled_at - enrolled_at
    enrollment.started_on = started_on
    enrollment.enrolled_at = enrolled_at
    invite = db.session.execute(
        select(Invite).where(Invite.patient_id == enrollment.patient_id)
    ).scalar_one_or_none()
    if invite is not None and shift:
        for column in ("created_at", "expires_at", "opened_at", "redeemed_at"):
            if getattr(invite, column) is not None:
                setattr(invite, column, getattr(invite, column) - shift)
        metrics.shift_invite_events(invite, shift)
    db.session.flush()


def enrollment_for(patient_id: str) -> Enrollment | None:
    """Returns a patient's enrolment, if any."""
    return db.session.execute(
        select(Enrollment).where(Enrollment.patient_id == patient_id)
    ).scalar_one_or_none()


# --- consent -------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _consent_documents() -> dict[str, dict[str, str]]:
    docs: dict[str, dict[str, str]] = {}
    for path in CONSENT_DIR.glob("*.md"):
        version, locale = path.name.removesuffix(".md").rsplit(".", 1)
        docs.setdefault(version, {})[locale] = path.read_text(encoding="utf-8")
    return docs


def _version_key(version: str) -> tuple:
    return tuple(int(part) if part.isdigit() else part for part in version.split("."))


def current_consent_version() -> str:
    """Returns the newest consent version."""
    return max(_consent_documents(), key=_version_key)


def consent_document(locale: str) -> dict:
    """Returns the current consent document in a locale (falling back to Dutch)."""
    version = current_consent_version()
    texts = _consent_documents()[version]
    chosen = locale if locale in texts else "nl"
    return {"version": version, "locale": chosen, "text": texts[chosen]}


def current_acceptance(patient_id: str) -> ConsentAcceptance | None:
    """Returns the patient's acceptance of the current version, if they gave it."""
    return db.session.execute(
        select(ConsentAcceptance)
        .where(
            ConsentAcceptance.patient_id == patient_id,
            ConsentAcceptance.version == current_consent_version(),
            ConsentAcceptance.withdrawn_at.is_(None),
        )
        .order_by(ConsentAcceptance.accepted_at.desc())
        .limit(1)
    ).scalar_one_or_none()


def has_current_consent(*, patient_id: str) -> bool:
    """Returns whether the patient accepted the current consent version (cached per request)."""
    cache = g.setdefault("_consent_cache", {})
    if patient_id not in cache:
        cache[patient_id] = current_acceptance(patient_id) is not None
    return cache[patient_id]


def _lock_patient(patient: Account) -> None:
    """Lock the patient's account row until the transaction ends (on PostgreSQL).

    Acceptances of one patient queue here, so each looks for an acceptance after the one before
    it committed (a new snapshot under READ COMMITTED). FOR NO KEY UPDATE, so that rows
    referring to the account can still be written meanwhile. SQLite takes no lock for a
    SELECT: there the look-up is repeated after the insert instead (SQLite runs one writer at a
    time, so the second writer's look-up sees the first's row).
    """
    db.session.execute(
        select(Account.id).where(Account.id == patient.id).with_for_update(key_share=True)
    )


def _other_acceptance(patient_id: str, version: str, *, besides: str) -> ConsentAcceptance | None:
    return db.session.execute(
        select(ConsentAcceptance)
        .where(
            ConsentAcceptance.patient_id == patient_id,
            ConsentAcceptance.version == version,
            ConsentAcceptance.withdrawn_at.is_(None),
            ConsentAcceptance.id != besides,
        )
        .order_by(ConsentAcceptance.accepted_at, ConsentAcceptance.id)
        .limit(1)
    ).scalar_one_or_none()


def _video_choice(patient_id: str) -> bool:
    """Returns what the patient last said about video coaching (yes before they said anything)."""
    latest = db.session.execute(
        select(ConsentAcceptance.is_video_accepted)
        .where(ConsentAcceptance.patient_id == patient_id, ConsentAcceptance.withdrawn_at.is_(None))
        .order_by(ConsentAcceptance.accepted_at.desc(), ConsentAcceptance.id)
        .limit(1)
    ).scalar_one_or_none()
    return True if latest is None else latest


def accept_consent(
    *, patient: Account, version: str, video: bool | None = None
) -> ConsentAcceptance:
    """Returns the patient's acceptance of the current version; an outdated version conflicts.

    Without `video` the patient's last word on video coaching stands: accepting again, or a new
    version, does not switch back on what they switched off (and had every video deleted for).
    """
    if version != current_consent_version():
        raise Conflict(
            f"Consent version {version} is outdated; the current version is "
            f"{current_consent_version()}"
        )
    _lock_patient(patient)
    existing = current_acceptance(patient.id)
    if existing is None:
        acceptance = ConsentAcceptance(
            patient_id=patient.id,
            version=version,
            locale=patient.locale,
            accepted_at=clock.now(),
            is_video_accepted=_video_choice(patient.id) if video is None else video,
        )
        db.session.add(acceptance)
        db.session.flush()
        # Another acceptance may have passed the look-up at the same time (SQLite, see
        # _lock_patient): the later writer sees the earlier one's row now, and keeps that one.
        existing = _other_acceptance(patient.id, version, besides=acceptance.id)
        if existing is not None:
            db.session.delete(acceptance)
            db.session.flush()
    if existing is not None:
        if video is not None and existing.is_video_accepted != video:
            existing.is_video_accepted = video
            db.session.flush()
        return existing
    g.pop("_consent_cache", None)
    metrics.record_patient_event(
        patient_id=patient.id, name="consented", occurred_at=acceptance.accepted_at
    )
    return acceptance
