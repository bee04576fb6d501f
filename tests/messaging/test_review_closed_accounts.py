"""A closed account (erased, its medical record kept) takes no further part in video coaching:
erasure deleted its conversation, and nothing opens a new one or sends it messages."""

from __future__ import annotations

from sqlalchemy import func, select

from coaching.accounts.models import Account
from coaching.extensions import db
from coaching.messaging.models import Conversation, Message
from coaching.notifications.models import Notification
from tests.conftest import PASSWORD, assert_error
from tests.messaging.flows import API, conversation_of, send_text

NRS = {"back_pain": 6, "leg_pain": 3}


def _count(model, *where) -> int:
    return db.session.execute(select(func.count()).select_from(model).where(*where)).scalar_one()


def test_the_therapists_list_opens_no_conversation_with_an_erased_patient(client, world):
    erased_id, other_id = world.patient.id, world.other_patient.id
    submitted = client.post(
        f"{API}/me/questionnaires/nrs/responses", json={"answers": NRS}, headers=world.h["patient"]
    )
    assert submitted.status_code == 201, submitted.get_json()
    erased = client.delete(f"{API}/me", json={"password": PASSWORD}, headers=world.h["patient"])
    assert erased.get_json()["status"] == "closed_retained"  # the account stays, closed
    assert _count(Conversation, Conversation.patient_id == erased_id) == 0

    listed = client.get(f"{API}/conversations", headers=world.h["therapist"])
    assert listed.status_code == 200
    assert [c["patient_id"] for c in listed.get_json()] == [other_id]
    assert _count(Conversation, Conversation.patient_id == erased_id) == 0


def test_a_conversation_kept_with_a_closed_account_takes_no_new_messages(client, world):
    # Kept by a configuration that retains the conversations as part of the medical record.
    conversation = conversation_of(client, world.h["patient"])
    send_text(client, world.h["patient"], conversation["id"], "Mijn vraag")
    db.session.get(Account, world.patient.id).is_active = False
    db.session.commit()
    notifications = _count(Notification)
    for body in (
        {"kind": "text", "body": "Hoe gaat het?"},
        {"kind": "video", "content_type": "video/mp4", "size_bytes": 1000},
    ):
        sent = client.post(
            f"{API}/conversations/{conversation['id']}/messages",
            json=body,
            headers=world.h["therapist"],
        )
        assert_error(sent, 404)
    assert _count(Message, Message.conversation_id == conversation["id"]) == 1
    assert _count(Notification) == notifications
    # The therapist's other patients are not affected.
    other = next(
        c
        for c in client.get(f"{API}/conversations", headers=world.h["therapist"]).get_json()
        if c["patient_id"] == world.other_patient.id
    )
    send_text(client, world.h["therapist"], other["id"], "Hallo")
