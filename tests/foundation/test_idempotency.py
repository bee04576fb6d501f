"""`Idempotency-Key` on creating POSTs: the same key from the same account within 24 h answers
the first response again and creates nothing new."""

from __future__ import annotations

import jwt
import pytest
from sqlalchemy import func, select

from coaching.enrolment.models import Invite
from coaching.extensions import db
from coaching.idempotency import IdempotencyRecord
from tests.conftest import PASSWORD, assert_error
from tests.foundation.conftest import bearer, table_counts

INVITE = {"referral_source": "gp", "channel": "email"}


def _key(value: str = "key-1") -> dict:
    return {"Idempotency-Key": value}


def _count(model) -> int:
    return db.session.execute(select(func.count()).select_from(model)).scalar_one()


def test_same_key_same_account_replays_the_first_answer(client, people):
    headers = {**people.h["therapist"], **_key()}
    first = client.post("/api/v1/invites", json=INVITE, headers=headers)
    counts = table_counts()
    second = client.post("/api/v1/invites", json=INVITE, headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.get_json() == first.get_json()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert table_counts() == counts  # no invite, no uptake event, no record added
    assert _count(Invite) == 1


def test_replay_within_24_hours_and_a_new_answer_after(client, people, clock):
    body = {"name": "Fysio", "city": "Delft"}
    first = client.post("/api/v1/practices", json=body, headers={**people.h["owner"], **_key()})
    clock.advance(hours=23, minutes=59)
    again = client.post("/api/v1/practices", json=body, headers={**people.fresh("owner"), **_key()})
    assert again.get_json()["id"] == first.get_json()["id"]
    clock.advance(minutes=1)  # 24 h after the first answer
    later = client.post("/api/v1/practices", json=body, headers={**people.fresh("owner"), **_key()})
    assert later.status_code == 201
    assert later.get_json()["id"] != first.get_json()["id"]
    assert "Idempotent-Replayed" not in later.headers
    # The key now stands for the new answer.
    clock.advance(hours=1)
    last = client.post("/api/v1/practices", json=body, headers={**people.fresh("owner"), **_key()})
    assert last.get_json()["id"] == later.get_json()["id"]
    assert _count(IdempotencyRecord) == 1


def test_same_key_with_a_different_body_is_409(client, people):
    headers = {**people.h["therapist"], **_key()}
    client.post("/api/v1/invites", json=INVITE, headers=headers)
    counts = table_counts()
    other = client.post("/api/v1/invites", json={**INVITE, "channel": "sms"}, headers=headers)
    assert_error(other, 409, contains="idempotency-key")
    assert table_counts() == counts


def test_same_key_on_another_endpoint_is_409(client, people):
    headers = {**people.h["owner"], **_key()}
    client.post("/api/v1/practices", json={"name": "A", "city": "B"}, headers=headers)
    practice = people.practice_a
    response = client.post(
        f"/api/v1/practices/{practice.id}/therapists",
        json={"email": "t@example.test", "display_name": "T", "password": PASSWORD},
        headers=headers,
    )
    assert_error(response, 409)


def test_keys_are_per_account(client, people):
    mine = client.post("/api/v1/invites", json=INVITE, headers={**people.h["therapist"], **_key()})
    theirs = client.post(
        "/api/v1/invites", json=INVITE, headers={**people.h["colleague"], **_key()}
    )
    assert theirs.status_code == 201 and "Idempotent-Replayed" not in theirs.headers
    assert theirs.get_json()["code"] != mine.get_json()["code"]
    assert _count(Invite) == 2


def test_without_a_key_every_post_creates(client, people):
    for _ in range(2):
        client.post("/api/v1/invites", json=INVITE, headers=people.h["therapist"])
    assert _count(Invite) == 2 and _count(IdempotencyRecord) == 0


def test_failed_requests_are_not_remembered(client, people):
    headers = {**people.h["therapist"], **_key()}
    bad = client.post("/api/v1/invites", json={"channel": "email"}, headers=headers)
    assert_error(bad, 422)
    assert _count(IdempotencyRecord) == 0
    good = client.post("/api/v1/invites", json=INVITE, headers=headers)
    assert good.status_code == 201 and "Idempotent-Replayed" not in good.headers


def test_a_replay_needs_a_valid_token(client, people, login):
    pair = login(people.therapist.email)
    headers = {**bearer(pair["access_token"]), **_key()}
    client.post("/api/v1/invites", json=INVITE, headers=headers)
    client.post(
        "/api/v1/auth/logout", json={"refresh_token": pair["refresh_token"]}, headers=headers
    )
    assert_error(client.post("/api/v1/invites", json=INVITE, headers=headers), 401)
    assert_error(
        client.post(
            "/api/v1/invites", json=INVITE, headers={"Authorization": "Bearer x", **_key()}
        ),
        401,
    )


def test_too_long_key_is_422(client, people):
    headers = {**people.h["therapist"], **_key("k" * 201)}
    assert_error(
        client.post("/api/v1/invites", json=INVITE, headers=headers), 422, field="Idempotency-Key"
    )
    assert _count(Invite) == 0
    ok = client.post(
        "/api/v1/invites", json=INVITE, headers={**people.h["therapist"], **_key("k" * 200)}
    )
    assert ok.status_code == 201


def test_consent_acceptance_replays(client, people):
    from coaching.enrolment.service import current_consent_version

    headers = {**people.h["new_patient"], **_key()}
    body = {"version": current_consent_version()}
    first = client.post("/api/v1/me/consent", json=body, headers=headers)
    second = client.post("/api/v1/me/consent", json=body, headers=headers)
    assert second.get_json() == first.get_json()
    assert second.headers["Idempotent-Replayed"] == "true"


@pytest.fixture
def registration(make, people):
    invite = make.invite(people.therapist)
    return {
        "invite_code": invite.code,
        "email": "retry@example.test",
        "password": PASSWORD,
        "display_name": "Retry",
        "locale": "nl",
        "timezone": "Europe/Amsterdam",
    }


def test_repeated_registration_signs_in_again_without_storing_tokens(client, registration):
    first = client.post("/api/v1/patients", json=registration, headers=_key())
    assert first.status_code == 201
    counts = table_counts()
    second = client.post("/api/v1/patients", json=registration, headers=_key())
    assert second.status_code == 201
    assert second.headers["Idempotent-Replayed"] == "true"
    pair, again = first.get_json(), second.get_json()
    assert set(again) == set(pair) and again["role"] == "patient"
    sub = jwt.decode(pair["access_token"], options={"verify_signature": False})["sub"]
    assert jwt.decode(again["access_token"], options={"verify_signature": False})["sub"] == sub
    # One patient, one enrolment; only a new login was added.
    changed = {k for k, v in table_counts().items() if v != counts[k]}
    assert changed == {"login_sessions", "refresh_tokens"}
    # Neither answer's tokens are kept anywhere in the idempotency records.
    stored = " ".join(db.session.execute(select(IdempotencyRecord.body)).scalars())
    for token in (pair["access_token"], pair["refresh_token"], again["refresh_token"]):
        assert token not in stored
    # The first refresh token may have been used already: the replay must not hand it out again.
    assert (
        client.post(
            "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
        ).status_code
        == 200
    )
    assert (
        client.post(
            "/api/v1/auth/refresh", json={"refresh_token": again["refresh_token"]}
        ).status_code
        == 200
    )


def test_registration_retry_with_another_body_is_not_a_replay(client, registration):
    client.post("/api/v1/patients", json=registration, headers=_key())
    other = client.post(
        "/api/v1/patients", json={**registration, "display_name": "Other"}, headers=_key()
    )
    # Anonymous keys are scoped by the exact body: this is a new registration of a used code.
    assert_error(other, 404)


def test_two_requests_with_one_key_at_once_create_one_thing_and_give_one_answer(
    app, people, monkeypatch
):
    """Both find no stored answer (they meet at a barrier right after looking); one stores its
    answer first and the other, its work undone, answers as a repeat of it (it used to create a
    second invite on SQLite, and answer 409 on PostgreSQL)."""
    import threading

    from coaching import idempotency

    barrier = threading.Barrier(2, timeout=10)
    looked = threading.local()
    real_lookup = idempotency.lookup

    def lookup_then_meet():
        stored = real_lookup()
        if not getattr(looked, "once", False):
            looked.once = True
            barrier.wait()
        return stored

    monkeypatch.setattr(idempotency, "lookup", lookup_then_meet)
    headers = {**people.h["therapist"], **_key("both-at-once")}
    db.session.commit()
    answers = []

    def post():
        answers.append(app.test_client().post("/api/v1/invites", json=INVITE, headers=headers))

    threads = [threading.Thread(target=post) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(a.status_code for a in answers) == [201, 201]
    assert answers[0].get_json() == answers[1].get_json()
    assert sorted(a.headers.get("Idempotent-Replayed", "no") for a in answers) == ["no", "true"]
    db.session.expire_all()
    assert _count(Invite) == 1
    assert _count(IdempotencyRecord) == 1
