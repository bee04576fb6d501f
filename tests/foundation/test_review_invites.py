"""Invite and consent requests arriving at once: a revocation that loses to a registration says
so (409) instead of marking the used invite revoked, and one patient's consent given twice at
once is one acceptance (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading

from sqlalchemy import func, select

from coaching.enrolment import service
from coaching.enrolment.models import ConsentAcceptance, Invite
from coaching.extensions import db
from coaching.metrics.models import UptakeEvent
from tests.conftest import PASSWORD, assert_error

API = "/api/v1"


def _registration(code: str) -> dict:
    return {
        "invite_code": code,
        "email": "racer@example.test",
        "password": PASSWORD,
        "display_name": "Racer",
        "locale": "nl",
        "timezone": "Europe/Amsterdam",
    }


def _paused_after(monkeypatch, name: str):
    """Makes `service.<name>` wait, once it has returned, until the returned event is set;
    `inside` is set when a call got there."""
    inside, release, original = threading.Event(), threading.Event(), getattr(service, name)

    def paused(*args, **kwargs):
        result = original(*args, **kwargs)
        inside.set()
        assert release.wait(timeout=10)
        return result

    monkeypatch.setattr(service, name, paused)
    return inside, release


def test_a_revocation_that_loses_to_the_registration_is_409_and_the_invite_stays_redeemed(
    app, client, make, world, monkeypatch
):
    invite = make.invite(world.therapist)
    code, headers = invite.code, world.h["therapist"]
    inside, release = _paused_after(monkeypatch, "get_invite_for")
    answers: list = []

    def revoke():
        response = app.test_client().delete(f"{API}/invites/{code}", headers=headers)
        answers.append(response)

    thread = threading.Thread(target=revoke)
    thread.start()
    # The revocation has read the invite as pending; the patient registers meanwhile.
    assert inside.wait(timeout=10)
    registered = client.post(f"{API}/patients", json=_registration(code))
    release.set()
    thread.join(timeout=30)
    monkeypatch.undo()
    assert registered.status_code == 201, registered.get_json()
    assert_error(answers[0], 409)
    db.session.expire_all()
    stored = db.session.execute(select(Invite).where(Invite.code == code)).scalar_one()
    assert stored.revoked_at is None and stored.redeemed_at is not None
    statuses = {i["code"]: i["status"] for i in client.get(f"{API}/invites", headers=headers).json}
    assert statuses[code] == "redeemed"


def test_a_registration_that_loses_to_the_revocation_is_404(app, client, make, world, monkeypatch):
    invite = make.invite(world.therapist)
    code, headers = invite.code, world.h["therapist"]
    inside, release = _paused_after(monkeypatch, "_usable_invite")
    answers: list = []

    def register():
        answers.append(app.test_client().post(f"{API}/patients", json=_registration(code)))

    thread = threading.Thread(target=register)
    thread.start()
    assert inside.wait(timeout=10)
    revoked = client.delete(f"{API}/invites/{code}", headers=headers)
    release.set()
    thread.join(timeout=30)
    monkeypatch.undo()
    assert revoked.status_code == 204
    assert_error(answers[0], 404)
    statuses = {i["code"]: i["status"] for i in client.get(f"{API}/invites", headers=headers).json}
    assert statuses[code] == "revoked"


def test_revoking_twice_is_204_both_times(client, make, world):
    invite = make.invite(world.therapist)
    for _ in range(2):
        response = client.delete(f"{API}/invites/{invite.code}", headers=world.h["therapist"])
        assert response.status_code == 204


def _meet_where_consents_race(monkeypatch, is_postgres: bool, n: int = 2) -> None:
    """Makes n acceptances wait for each other where they would race: on SQLite after each has
    looked for an acceptance (nothing stops them there), on PostgreSQL just before the
    patient's lock (which lets one through at a time)."""
    name = "_lock_patient" if is_postgres else "current_acceptance"
    barrier, original = threading.Barrier(n), getattr(service, name)

    def synchronised(*args, **kwargs):
        if is_postgres:
            barrier.wait(timeout=10)
            return original(*args, **kwargs)
        result = original(*args, **kwargs)
        barrier.wait(timeout=10)
        return result

    monkeypatch.setattr(service, name, synchronised)


def test_consent_given_twice_at_once_is_one_acceptance(app, make, world, monkeypatch, is_postgres):
    patient = make.patient(world.therapist, consented=False)
    patient_id = patient.id
    headers = make.headers(patient)
    version = service.current_consent_version()
    answers: list = []

    def accept():
        response = app.test_client().post(
            f"{API}/me/consent", json={"version": version}, headers=headers
        )
        answers.append((response.status_code, response.get_json()))

    _meet_where_consents_race(monkeypatch, is_postgres)
    threads = [threading.Thread(target=accept) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    monkeypatch.undo()
    assert [status for status, _ in answers] == [201, 201], answers
    assert answers[0][1] == answers[1][1]
    count = db.session.execute(
        select(func.count())
        .select_from(ConsentAcceptance)
        .where(ConsentAcceptance.patient_id == patient_id)
    ).scalar_one()
    assert count == 1
    events = db.session.execute(
        select(func.count())
        .select_from(UptakeEvent)
        .where(UptakeEvent.patient_id == patient_id, UptakeEvent.name == "consented")
    ).scalar_one()
    assert events == 1


def test_a_code_no_database_can_hold_is_an_unknown_code(client, world):
    # PostgreSQL refuses a NUL character in a string: that code cannot exist (404, not 422).
    assert_error(client.get(f"{API}/invites/AB%00CDEFGH"), 404)
    assert_error(client.delete(f"{API}/invites/AB%00CDEFGH", headers=world.h["therapist"]), 404)
