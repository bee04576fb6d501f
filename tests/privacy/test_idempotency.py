"""Stored idempotent answers are personal data: erasure deletes those about the patient, also
the staff's (a therapist's message to them), and a job deletes every one past its 24 h."""

from __future__ import annotations

from sqlalchemy import select

from coaching import idempotency
from coaching.extensions import db
from coaching.idempotency import IdempotencyRecord
from tests.messaging.flows import conversation_of, send_text
from tests.privacy.conftest import API


def _bodies() -> list[str]:
    db.session.expire_all()
    return db.session.execute(select(IdempotencyRecord.body)).scalars().all()


def test_erasure_deletes_the_staffs_stored_answers_about_the_patient(client, world):
    h = world.h
    conversation = conversation_of(client, h["patient"])["id"]
    other_conversation = conversation_of(client, h["other_patient"])["id"]
    secret = "Uw MRI laat een hernia zien"
    send_text(client, {**h["therapist"], "Idempotency-Key": "msg-1"}, conversation, body=secret)
    send_text(client, {**h["patient"], "Idempotency-Key": "msg-2"}, conversation, body="Dank")
    # The same therapist's answer about another patient stays: it names none of this one's ids.
    send_text(
        client, {**h["therapist"], "Idempotency-Key": "msg-3"}, other_conversation, body="Ander"
    )
    assert any(secret in body for body in _bodies())

    response = client.post(
        f"{API}/patients/{world.patient.id}/erasure",
        json={"reason": "Verzoek per brief", "destroy_medical_record": True},
        headers=h["therapist"],
    )
    assert response.status_code == 200, response.get_json()
    bodies = _bodies()
    assert not any(secret in body or conversation in body for body in bodies)
    assert not any(world.patient.id in body for body in bodies)
    assert [b for b in bodies if other_conversation in b] and len(bodies) == 1


def test_records_past_their_window_are_purged(clock, client, world, make):
    conversation = conversation_of(client, world.h["patient"])["id"]
    send_text(client, {**world.h["patient"], "Idempotency-Key": "old"}, conversation, body="Oud")
    clock.advance(hours=23)
    headers = make.headers(world.patient)  # the first login's token has expired
    send_text(client, {**headers, "Idempotency-Key": "new"}, conversation, body="Nieuw")
    assert idempotency.purge_expired(clock.now()) == 0
    clock.advance(hours=1)
    assert idempotency.purge_expired(clock.now(), batch=1) == 1
    (record,) = db.session.execute(select(IdempotencyRecord)).scalars().all()
    assert record.key == "new"
    # The one still in its window still answers.
    again = client.post(
        f"{API}/conversations/{conversation}/messages",
        json={"kind": "text", "body": "Nieuw"},
        headers={**make.headers(world.patient), "Idempotency-Key": "new"},
    )
    assert again.status_code == 201 and again.headers.get("Idempotent-Replayed") == "true"
    clock.advance(hours=23)
    assert idempotency.purge_expired(clock.now()) == 1
    assert _bodies() == []


def test_the_purge_is_a_scheduled_job():
    from coaching.scheduling import collect_jobs

    jobs = {job.name: job for job in collect_jobs()}
    assert jobs["privacy.purge_idempotency"].func is idempotency.purge_expired
