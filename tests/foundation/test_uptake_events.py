"""The uptake events `invited`, `invite_opened`, `registered` and `consented`: recorded once per
invite, at the right time, with the invite's breakdown attributes."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from coaching.enrolment import service
from coaching.enrolment.models import Invite
from coaching.extensions import db
from coaching.metrics.models import FUNNEL_STEPS, UptakeEvent
from tests.conftest import PASSWORD, START
from tests.foundation.conftest import bearer


def _events(invite_code: str | None = None) -> list[UptakeEvent]:
    stmt = select(UptakeEvent)
    if invite_code is not None:
        stmt = stmt.join(Invite, Invite.id == UptakeEvent.invite_id).where(
            Invite.code == invite_code
        )
    events = db.session.execute(stmt).scalars()
    return sorted(events, key=lambda e: (e.occurred_at, FUNNEL_STEPS.index(e.name)))


def _register(client, code: str, email: str = "p@example.test"):
    response = client.post(
        "/api/v1/patients",
        json={
            "invite_code": code,
            "email": email,
            "password": PASSWORD,
            "display_name": "P",
            "locale": "en",
            "timezone": "Europe/Amsterdam",
        },
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def test_the_journey_records_each_step_once_with_the_invites_attributes(client, people, clock):
    therapist = people.h["therapist"]
    created = client.post(
        "/api/v1/invites",
        json={"referral_source": "specialist", "channel": "letter"},
        headers=therapist,
    ).get_json()
    code = created["code"]
    clock.advance(minutes=1)
    client.get(f"/api/v1/invites/{code}")
    clock.advance(minutes=1)
    client.get(f"/api/v1/invites/{code}")  # a second look does not add a step
    clock.advance(minutes=1)
    pair = _register(client, code)
    clock.advance(minutes=1)
    headers = bearer(pair["access_token"])
    version = service.current_consent_version()
    client.post("/api/v1/me/consent", json={"version": version}, headers=headers)
    clock.advance(minutes=1)
    client.post("/api/v1/me/consent", json={"version": version}, headers=headers)

    events = _events(code)
    assert [(e.name, e.occurred_at) for e in events] == [
        ("invited", START),
        ("invite_opened", START + timedelta(minutes=1)),
        ("registered", START + timedelta(minutes=3)),
        ("consented", START + timedelta(minutes=4)),
    ]
    patient_id = client.get("/api/v1/me", headers=headers).get_json()["id"]
    for event in events:
        assert event.practice_id == people.practice_a.id
        assert event.therapist_id == people.therapist.id
        assert event.referral_source == "specialist"
        assert event.channel == "letter"
        assert event.recorded_at == event.occurred_at
    assert events[0].patient_id is None and events[1].patient_id is None
    assert events[2].patient_id == patient_id and events[3].patient_id == patient_id


def test_registering_without_a_look_up_opens_the_invite_too(client, people, make, clock):
    invite = make.invite(people.therapist, referral_source="self", channel="qr")
    clock.advance(days=2)
    _register(client, invite.code)
    names = [(e.name, e.occurred_at) for e in _events(invite.code)]
    assert names == [
        ("invited", START),
        ("invite_opened", START + timedelta(days=2)),
        ("registered", START + timedelta(days=2)),
    ]


def test_refused_requests_record_nothing(client, people, make, clock):
    invite = make.invite(people.therapist)
    revoked = make.invite(people.therapist)
    service.revoke_invite(therapist=people.therapist, code=revoked.code)
    db.session.commit()
    before = len(_events())
    client.get(f"/api/v1/invites/{revoked.code}")
    client.get("/api/v1/invites/ZZZZZZZZZZ")
    client.post("/api/v1/invites", json={"referral_source": "x"}, headers=people.h["therapist"])
    response = client.post(
        "/api/v1/patients",
        json={
            "invite_code": invite.code,
            "email": people.therapist.email,
            "password": PASSWORD,
            "display_name": "P",
            "locale": "nl",
            "timezone": "Europe/Amsterdam",
        },
    )
    assert response.status_code == 409
    assert len(_events()) == before
    clock.advance(days=31)
    client.get(f"/api/v1/invites/{invite.code}")  # expired: no step
    assert len(_events()) == before


def test_each_invite_has_its_own_events(client, people, make):
    first = make.invite(people.therapist, referral_source="gp")
    second = make.invite(people.other_therapist, referral_source="insurer", channel="sms")
    client.get(f"/api/v1/invites/{first.code}")
    assert [e.name for e in _events(first.code)] == ["invited", "invite_opened"]
    assert [e.name for e in _events(second.code)] == ["invited"]
    (event,) = _events(second.code)
    assert event.practice_id == people.practice_b.id
    assert (event.referral_source, event.channel) == ("insurer", "sms")
