"""Erasure (GDPR art. 17): by the patient with their password, by their therapist or an owner on
request; what goes, what stays pseudonymised, what the retention rules keep, and for how long."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from coaching.accounts.models import Account, LoginSession
from coaching.audit.models import AuditEntry
from coaching.enrolment.models import Invite
from coaching.extensions import db
from coaching.media.models import MediaDeletion
from coaching.media.service import purge_pending
from coaching.media.storage import get_storage
from coaching.messaging.models import Conversation, Message
from coaching.metrics.models import FunnelMilestone, UptakeEvent
from coaching.notifications.models import Device, Notification
from coaching.outcomes.models import QuestionnaireResponse, QuestionnaireScore
from coaching.privacy import collector, service
from coaching.privacy.models import ErasureRecord
from tests.conftest import PASSWORD, assert_error
from tests.privacy.conftest import API, submit


def _erase_me(client, headers, password=PASSWORD):
    return client.delete(f"{API}/me", json={"password": password}, headers=headers)


def _erase(client, headers, patient_id, **body):
    return client.post(
        f"{API}/patients/{patient_id}/erasure",
        json={"reason": "Verzoek van de patiënt per brief", **body},
        headers=headers,
    )


def _count(model, *where) -> int:
    db.session.expire_all()
    return db.session.execute(select(func.count()).select_from(model).where(*where)).scalar_one()


def _funnel(client, world) -> dict:
    response = client.get(f"{API}/metrics/funnel", headers=world.h["owner"])
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def _media_keys(patient_id: str) -> list[str]:
    rows = db.session.execute(
        select(Message.media_key, Message.thumbnail_key)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(Conversation.patient_id == patient_id, Message.kind == "video")
    ).all()
    return [key for row in rows for key in row if key]


def test_erasing_myself_deletes_everything_and_keeps_the_funnel(clock, client, world, rich):
    patient_id = world.patient.id
    keys = _media_keys(patient_id)
    assert len(keys) == 4 and all(get_storage().size_of(k) for k in keys)
    events = _count(UptakeEvent, UptakeEvent.patient_id == patient_id)
    funnel_before = _funnel(client, world)
    other_messages = _count(Message) - _count(
        Message,
        Message.conversation_id == rich.conversation["id"],
    )

    response = _erase_me(client, world.h["patient"])
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["status"] == "erased" and body["retained"] == []
    assert body["patient_id"] == patient_id and body["requested_by_role"] == "patient"

    assert db.session.get(Account, patient_id) is None
    assert _count(LoginSession, LoginSession.account_id == patient_id) == 0
    assert _count(Conversation, Conversation.patient_id == patient_id) == 0
    assert _count(Message) == other_messages  # the other patient's text is untouched
    assert _count(Device, Device.account_id == patient_id) == 0
    assert _count(Notification, Notification.recipient_id == patient_id) == 0
    # Uptake events stay, under a pseudonym that points nowhere; the funnel counts the same.
    assert _count(UptakeEvent, UptakeEvent.patient_id == patient_id) == 0
    pseudonymous = db.session.execute(
        select(UptakeEvent.patient_id).where(UptakeEvent.invite_id == world.patient_invite_id)
    ).scalars()
    # (Steps before registration, such as `invited`, never had a patient.)
    pseudonyms = set(pseudonymous) - {None}
    assert len(pseudonyms) == 1 and patient_id not in pseudonyms
    assert _count(UptakeEvent, UptakeEvent.patient_id.in_(pseudonyms)) == events > 0
    assert db.session.get(FunnelMilestone, world.patient_invite_id).patient_id is None
    assert db.session.get(Invite, world.patient_invite_id).patient_id is None
    assert _funnel(client, world) == funnel_before

    # The videos are deleted from the store after the commit, by the media job.
    assert set(db.session.execute(select(MediaDeletion.key)).scalars()) == set(keys)
    purge_pending(clock.now())
    assert not any(get_storage().size_of(k) for k in keys)

    # The old tokens and the password no longer work.
    assert_error(client.get(f"{API}/me", headers=world.h["patient"]), 401)
    signin = client.post(
        f"{API}/auth/token", json={"email": world.patient.email, "password": PASSWORD}
    )
    assert_error(signin, 401)
    record = db.session.execute(select(ErasureRecord)).scalar_one()
    assert record.account_id == patient_id and record.purged_at is not None
    assert record.counts["messages.deleted"] == 3  # two videos and a text


@pytest.fixture
def world(world):
    """The shared world plus the invite the patient registered with."""
    from coaching.enrolment.models import Enrollment

    world.patient_invite_id = db.session.execute(
        select(Enrollment.invite_id).where(Enrollment.patient_id == world.patient.id)
    ).scalar_one()
    return world


def test_a_wrong_password_erases_nothing(client, world, rich):
    before = collector.collect(world.patient.id).count()
    assert_error(_erase_me(client, world.h["patient"], "not-my-password"), 403, contains="password")
    assert collector.collect(world.patient.id).count() == before
    assert client.get(f"{API}/me", headers=world.h["patient"]).status_code == 200


def test_the_medical_record_is_kept_on_a_closed_account_until_retention_ends(
    clock, client, world, rich
):
    submit(client, world.h["patient"])
    patient_id = world.patient.id
    db.session.get(Account, patient_id).locale = "en"
    db.session.get(Account, patient_id).timezone = "Europe/London"
    db.session.commit()
    clock.advance(minutes=5)  # joined earlier than closed
    response = _erase_me(client, world.h["patient"])
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "closed_retained"
    assert set(body["retained"]) >= {"questionnaire_responses", "questionnaire_scores"}
    assert body["retained_until"].startswith("2046-03-02")

    account = db.session.get(Account, patient_id)
    assert account is not None and account.is_active is False
    assert account.email.endswith("@erased.invalid") and account.password_hash == "!erased"
    assert account.display_name == world.patient.display_name  # identifies the kept record
    assert (account.therapist_id, account.practice_id) == (
        world.patient.therapist_id,
        world.patient.practice_id,
    )
    # Nothing else of the patient: their settings and when they joined are gone.
    assert (account.locale, account.timezone) == ("nl", "Europe/Amsterdam")
    assert account.created_at == clock.now() and account.last_login_at is None
    assert _count(QuestionnaireResponse, QuestionnaireResponse.patient_id == patient_id) == 1
    assert _count(QuestionnaireScore, QuestionnaireScore.patient_id == patient_id) == 2
    assert _count(Conversation, Conversation.patient_id == patient_id) == 0
    assert _count(LoginSession, LoginSession.account_id == patient_id) == 0
    assert_error(client.get(f"{API}/me", headers=world.h["patient"]), 401)

    # A day before the end nothing happens; at the end the rest goes.
    clock.set(service._years_later(clock.now(), 20) - __import__("datetime").timedelta(days=1))
    assert service.purge_expired_retention(clock.now()) == 0
    clock.advance(days=1)
    assert service.purge_expired_retention(clock.now()) == 1
    assert db.session.get(Account, patient_id) is None
    assert _count(QuestionnaireResponse, QuestionnaireResponse.patient_id == patient_id) == 0
    assert _count(QuestionnaireScore, QuestionnaireScore.patient_id == patient_id) == 0
    record = db.session.execute(select(ErasureRecord)).scalar_one()
    assert record.purged_at == clock.now()
    assert record.counts["purge.questionnaire_responses.deleted"] == 1


@pytest.mark.parametrize(
    "setting", [{"MEDICAL_RECORD_RETENTION_YEARS": 0}, {"ERASURE_RETAINED_TABLES": "none"}]
)
def test_retention_is_configurable(client, world, app, monkeypatch, setting):
    for key, value in setting.items():
        monkeypatch.setitem(app.config, key, value)
    submit(client, world.h["patient"])
    body = _erase_me(client, world.h["patient"]).get_json()
    assert body["status"] == "erased" and body["retained"] == []
    assert _count(QuestionnaireResponse) == 0


def test_a_configured_table_keeps_the_rows_it_belongs_to(client, world, app, monkeypatch):
    # Scores alone cannot be kept without their responses (the database would cascade).
    monkeypatch.setitem(app.config, "ERASURE_RETAINED_TABLES", "questionnaire_scores")
    submit(client, world.h["patient"])
    body = _erase_me(client, world.h["patient"]).get_json()
    assert body["retained"] == ["questionnaire_responses", "questionnaire_scores"]
    assert _count(QuestionnaireScore) == 2


def test_therapist_erases_an_own_patient_on_request(client, world, rich):
    submit(client, world.h["patient"])
    response = _erase(client, world.h["therapist"], world.patient.id)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["status"] == "closed_retained" and body["requested_by_role"] == "therapist"
    logged = db.session.execute(
        select(AuditEntry).where(
            AuditEntry.patient_id == world.patient.id, AuditEntry.action == "delete"
        )
    ).scalar_one()
    assert logged.actor_id == world.therapist.id and logged.resource_type == "patient"
    record = db.session.execute(select(ErasureRecord)).scalar_one()
    assert record.reason.startswith("Verzoek")
    # Later the caregiver decides the record may be destroyed as well (WGBO art. 7:455).
    again = _erase(client, world.h["therapist"], world.patient.id, destroy_medical_record=True)
    assert again.status_code == 200 and again.get_json()["status"] == "erased"
    assert db.session.get(Account, world.patient.id) is None
    assert _count(QuestionnaireResponse) == 0
    assert_error(_erase(client, world.h["therapist"], world.patient.id), 404)


def test_owner_may_erase_any_patient(client, world):
    response = _erase(client, world.h["owner"], world.foreign_patient.id)
    assert response.status_code == 200
    assert db.session.get(Account, world.foreign_patient.id) is None


@pytest.mark.parametrize("caller", ["colleague", "other_therapist"])
def test_other_therapists_get_404(client, world, caller):
    assert_error(_erase(client, world.h[caller], world.patient.id), 404)
    assert db.session.get(Account, world.patient.id) is not None


def test_staff_erasure_authorisation(client, world):
    assert_error(_erase(client, {}, world.patient.id), 401)
    assert_error(_erase(client, world.h["patient"], world.patient.id), 403)
    assert_error(_erase(client, world.h["other_patient"], world.patient.id), 403)
    # Only patients are erased here: a therapist's id is not a patient.
    assert_error(_erase(client, world.h["owner"], world.therapist.id), 404)
    assert_error(_erase(client, world.h["owner"], "no-such-id"), 404)


def test_only_patients_erase_themselves_and_consent_is_not_needed(client, world, make):
    for role in ("therapist", "owner"):
        assert_error(_erase_me(client, world.h[role]), 403)
    assert_error(_erase_me(client, {}), 401)
    unconsented = make.patient(consented=False)
    response = _erase_me(client, make.headers(unconsented))
    assert response.status_code == 200


def test_erasure_bodies_are_validated(client, world):
    h = world.h
    malformed = client.delete(
        f"{API}/me", data="{", headers={**h["patient"], "Content-Type": "application/json"}
    )
    assert_error(malformed, 400)
    assert_error(client.delete(f"{API}/me", json={}, headers=h["patient"]), 422, field="password")
    unknown = client.delete(f"{API}/me", json={"password": PASSWORD, "x": 1}, headers=h["patient"])
    assert_error(unknown, 422, field="x")
    long_reason = _erase(client, h["therapist"], world.patient.id, reason="x" * 501)
    assert_error(long_reason, 422, field="reason")
    # Destroying the medical record cannot be undone: only a JSON true says so ("yes", 1 or
    # "on" are no decision of the caregiver's).
    for loose in ("yes!", "yes", 1, "on", "true"):
        wrong_type = _erase(client, h["therapist"], world.patient.id, destroy_medical_record=loose)
        assert_error(wrong_type, 422, field="destroy_medical_record")
    assert db.session.get(Account, world.patient.id) is not None


def test_wrong_passwords_are_rate_limited(client, world, app):
    statuses = [_erase_me(client, world.h["patient"], "guess").status_code for _ in range(11)]
    assert statuses[:10] == [403] * 10 and statuses[10] == 429


def test_the_audit_chain_stays_valid_after_erasure(client, world, rich):
    from coaching.audit.service import verify

    assert client.get(f"{API}/patients/{world.patient.id}/outcomes", headers=world.h["therapist"])
    _erase(client, world.h["owner"], world.patient.id, destroy_medical_record=True)
    assert _count(AuditEntry, AuditEntry.patient_id == world.patient.id) >= 2
    assert verify().ok


def test_the_kept_record_stays_readable_by_the_practice_as_fhir(client, world):
    submit(client, world.h["patient"])
    _erase_me(client, world.h["patient"])
    response = client.get(f"{API}/patients/{world.patient.id}/fhir", headers=world.h["therapist"])
    assert response.status_code == 200
    bundle = response.get_json()
    kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert kinds.count("QuestionnaireResponse") == 1


def test_the_privacy_jobs_are_scheduled():
    from coaching.scheduling import collect_jobs

    names = {job.name for job in collect_jobs()}
    assert {"privacy.build_exports", "privacy.expire_exports", "privacy.purge_retained"} <= names
