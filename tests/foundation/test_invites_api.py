"""Invites: creating (therapists), listing own invites with their status, revoking, and the public
look-up without a token."""

from __future__ import annotations

import json
import math

import pytest
from sqlalchemy import func, select

from coaching.enrolment import service
from coaching.enrolment.models import Invite
from coaching.extensions import db
from tests.conftest import START, assert_error
from tests.foundation.conftest import table_counts

NEW = {"referral_source": "gp", "channel": "email"}
LOOKALIKES = set("0O1Il")


def _create(client, headers, **body):
    response = client.post("/api/v1/invites", json={**NEW, **body}, headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def _statuses(client, headers, query="") -> dict[str, str]:
    response = client.get(f"/api/v1/invites{query}", headers=headers)
    assert response.status_code == 200
    return {i["code"]: i["status"] for i in response.get_json()}


# --- who may do what ----------------------------------------------------------------------------


def test_anonymous_gets_401_except_on_the_public_look_up(client, people):
    invite = _create(client, people.h["therapist"])
    before = table_counts()
    assert_error(client.post("/api/v1/invites", json=NEW), 401)
    assert_error(client.get("/api/v1/invites"), 401)
    assert_error(client.delete(f"/api/v1/invites/{invite['code']}"), 401)
    assert table_counts() == before
    assert client.get(f"/api/v1/invites/{invite['code']}").status_code == 200


@pytest.mark.parametrize("role", ["owner", "patient", "new_patient"])
def test_other_roles_get_403(client, people, role):
    invite = _create(client, people.h["therapist"])
    headers = people.h[role]
    before = table_counts()
    assert_error(client.post("/api/v1/invites", json=NEW, headers=headers), 403)
    assert_error(client.get("/api/v1/invites", headers=headers), 403)
    assert_error(client.delete(f"/api/v1/invites/{invite['code']}", headers=headers), 403)
    assert table_counts() == before


def test_therapists_see_only_their_own_invites(client, people):
    mine = _create(client, people.h["therapist"])
    colleagues = _create(client, people.h["colleague"])
    foreign = _create(client, people.h["other_therapist"])
    assert set(_statuses(client, people.h["therapist"])) == {mine["code"]}
    assert set(_statuses(client, people.h["colleague"])) == {colleagues["code"]}
    assert set(_statuses(client, people.h["other_therapist"])) == {foreign["code"]}


@pytest.mark.parametrize("who", ["colleague", "other_therapist"])
def test_revoking_another_therapists_invite_is_404(client, people, who):
    invite = _create(client, people.h["therapist"])
    headers = people.h[who]
    before = table_counts()
    assert_error(client.delete(f"/api/v1/invites/{invite['code']}", headers=headers), 404)
    assert table_counts() == before
    assert _statuses(client, people.h["therapist"])[invite["code"]] == "pending"


# --- creating -----------------------------------------------------------------------------------


def test_create_answers_the_contract(client, people):
    body = _create(client, people.h["therapist"], referral_source="insurer", channel="qr")
    assert set(body) == {"code", "status", "referral_source", "channel", "created_at", "expires_at"}
    assert body["status"] == "pending"
    assert (body["referral_source"], body["channel"]) == ("insurer", "qr")
    assert body["created_at"] == "2026-03-02T09:00:00Z"
    assert body["expires_at"] == "2026-04-01T09:00:00Z"  # 30 days by default
    stored = db.session.execute(select(Invite).where(Invite.code == body["code"])).scalar_one()
    assert stored.therapist_id == people.therapist.id
    assert stored.practice_id == people.practice_a.id


@pytest.mark.parametrize(("days", "expires"), [(1, "2026-03-03"), (90, "2026-05-31")])
def test_expires_in_days_bounds(client, people, days, expires):
    body = _create(client, people.h["therapist"], expires_in_days=days)
    assert body["expires_at"] == f"{expires}T09:00:00Z"


CREATE_ERRORS = [
    *[({"expires_in_days": days}, "expires_in_days") for days in (0, 91, -1, 1000)],
    *[({"expires_in_days": days}, "expires_in_days") for days in ("5", 5.5, True, None, [5])],
    ({"referral_source": "friend"}, "referral_source"),
    ({"channel": "pigeon"}, "channel"),
    ({"channel": "EMAIL"}, "channel"),
    ({"therapist_id": "x"}, "therapist_id"),
    ({"code": "AAAAAAAAAA"}, "code"),
    ({"status": "redeemed"}, "status"),
]


def test_create_validation(client, people):
    headers = people.h["therapist"]
    before = table_counts()
    for body, field in CREATE_ERRORS:
        response = client.post("/api/v1/invites", json={**NEW, **body}, headers=headers)
        assert response.status_code == 422, body
        assert_error(response, 422, field=field)
    assert table_counts() == before


def test_every_referral_source_and_channel_is_accepted(client, people):
    for source in ("gp", "physio", "specialist", "insurer", "self", "other"):
        _create(client, people.h["therapist"], referral_source=source)
    for channel in ("in_person", "email", "sms", "letter", "qr"):
        _create(client, people.h["therapist"], channel=channel)


# --- codes --------------------------------------------------------------------------------------


def test_code_alphabet_and_strength():
    assert not LOOKALIKES & set(service.CODE_ALPHABET)
    assert len(set(service.CODE_ALPHABET)) == len(service.CODE_ALPHABET)
    assert service.CODE_LENGTH >= 8
    assert service.CODE_LENGTH * math.log2(len(service.CODE_ALPHABET)) >= 40


def test_codes_come_from_secrets_and_do_not_repeat(monkeypatch):
    calls = []
    real_choice = service.secrets.choice

    def spy(alphabet):
        calls.append(alphabet)
        return real_choice(alphabet)

    monkeypatch.setattr(service.secrets, "choice", spy)
    code = service.generate_code()
    assert len(calls) == len(code) == service.CODE_LENGTH
    assert all(alphabet == service.CODE_ALPHABET for alphabet in calls)
    monkeypatch.undo()
    codes = {service.generate_code() for _ in range(5000)}
    assert len(codes) == 5000
    used = set("".join(codes))
    assert used <= set(service.CODE_ALPHABET) and not used & LOOKALIKES
    assert used == set(service.CODE_ALPHABET)  # every symbol turns up: the whole alphabet is used


def test_created_codes_have_no_lookalikes(client, people):
    for _ in range(5):
        code = _create(client, people.h["therapist"])["code"]
        assert len(code) >= 8 and not LOOKALIKES & set(code)


# --- statuses with the clock --------------------------------------------------------------------


def test_status_follows_the_invites_life(client, people, clock, make):
    h = people.h["therapist"]
    pending = _create(client, h)["code"]
    opened = _create(client, h)["code"]
    expiring = _create(client, h, expires_in_days=1)["code"]
    revoked = _create(client, h)["code"]
    redeemed = _create(client, h)["code"]
    client.get(f"/api/v1/invites/{opened}")
    assert client.delete(f"/api/v1/invites/{revoked}", headers=h).status_code == 204
    service.register_patient(
        invite_code=redeemed,
        email="r@example.test",
        password="correct-horse-battery",
        display_name="R",
        locale="nl",
        timezone="Europe/Amsterdam",
    )
    db.session.commit()
    assert _statuses(client, h) == {
        pending: "pending",
        opened: "opened",
        expiring: "pending",
        revoked: "revoked",
        redeemed: "redeemed",
    }
    clock.advance(days=1)  # exactly at expires_at: expired
    assert _statuses(client, people.fresh("therapist"))[expiring] == "expired"
    clock.advance(days=40)
    assert _statuses(client, people.fresh("therapist")) == {
        pending: "expired",
        opened: "expired",
        expiring: "expired",
        revoked: "revoked",
        redeemed: "redeemed",
    }


def test_filter_by_status(client, people, clock):
    h = people.h["therapist"]
    a = _create(client, h)["code"]
    b = _create(client, h)["code"]
    c = _create(client, h, expires_in_days=1)["code"]
    d = _create(client, h)["code"]
    client.get(f"/api/v1/invites/{b}")
    client.delete(f"/api/v1/invites/{d}", headers=h)
    assert set(_statuses(client, h, "?status=pending")) == {a, c}
    assert set(_statuses(client, h, "?status=opened")) == {b}
    assert set(_statuses(client, h, "?status=revoked")) == {d}
    assert set(_statuses(client, h, "?status=expired")) == set()
    clock.advance(days=2)
    later = people.fresh("therapist")
    assert set(_statuses(client, later, "?status=pending")) == {a}
    assert set(_statuses(client, later, "?status=expired")) == {c}
    assert set(_statuses(client, later, "?status=revoked")) == {d}
    assert_error(client.get("/api/v1/invites?status=lost", headers=later), 422, field="status")


def test_list_is_newest_first_and_paginated(client, people, clock):
    h = people.h["therapist"]
    codes = []
    for _ in range(3):
        codes.append(_create(client, h)["code"])
        clock.advance(minutes=1)
    response = client.get("/api/v1/invites?page_size=2", headers=h)
    assert [i["code"] for i in response.get_json()] == [codes[2], codes[1]]
    assert json.loads(response.headers["X-Pagination"]) == {
        "total": 3,
        "total_pages": 2,
        "page": 1,
        "page_size": 2,
    }
    assert_error(client.get("/api/v1/invites?page_size=101", headers=h), 422, field="page_size")


# --- revoking -----------------------------------------------------------------------------------


def test_revoke_own_invite(client, people):
    h = people.h["therapist"]
    code = _create(client, h)["code"]
    response = client.delete(f"/api/v1/invites/{code}", headers=h)
    assert response.status_code == 204 and response.data == b""
    assert _statuses(client, h)[code] == "revoked"
    assert client.delete(f"/api/v1/invites/{code}", headers=h).status_code == 204  # again: fine
    assert_error(client.get(f"/api/v1/invites/{code}"), 404)


def test_revoke_accepts_the_code_as_people_type_it(client, people):
    h = people.h["therapist"]
    code = _create(client, h)["code"]
    typed = f"{code[:5].lower()}-{code[5:].lower()}"
    assert client.delete(f"/api/v1/invites/{typed}", headers=h).status_code == 204


def test_revoke_unknown_is_404_and_redeemed_is_409(client, people):
    h = people.h["therapist"]
    assert_error(client.delete("/api/v1/invites/ZZZZZZZZZZ", headers=h), 404)
    assert_error(client.delete("/api/v1/invites/" + "Z" * 300, headers=h), 404)
    people.patient  # noqa: B018  (registered with an invite of this therapist)
    redeemed = db.session.execute(
        select(Invite.code).where(Invite.patient_id == people.patient.id)
    ).scalar_one()
    assert_error(client.delete(f"/api/v1/invites/{redeemed}", headers=h), 409)


# --- the public look-up -------------------------------------------------------------------------


def test_look_up_without_a_token(client, people):
    code = _create(client, people.h["therapist"])["code"]
    response = client.get(f"/api/v1/invites/{code}")
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"practice_name", "therapist_name", "programme_title", "expires_at"}
    assert body["practice_name"] == "Practice A"
    assert body["therapist_name"] == people.therapist.display_name
    assert body["programme_title"]
    assert body["expires_at"] == "2026-04-01T09:00:00Z"


def test_look_up_in_english(client, people):
    code = _create(client, people.h["therapist"])["code"]
    nl = client.get(f"/api/v1/invites/{code}?locale=nl").get_json()["programme_title"]
    en = client.get(f"/api/v1/invites/{code}?locale=en").get_json()["programme_title"]
    assert nl != en
    by_header = client.get(f"/api/v1/invites/{code}", headers={"Accept-Language": "en-GB"})
    assert by_header.get_json()["programme_title"] == en
    assert_error(client.get(f"/api/v1/invites/{code}?locale=fr"), 422, field="locale")


def test_first_look_up_marks_the_invite_opened_once(client, people, clock):
    code = _create(client, people.h["therapist"])["code"]
    client.get(f"/api/v1/invites/{code}")
    first = db.session.execute(select(Invite.opened_at).where(Invite.code == code)).scalar_one()
    assert first == START
    clock.advance(hours=5)
    client.get(f"/api/v1/invites/{code}")
    db.session.expire_all()
    again = db.session.execute(select(Invite.opened_at).where(Invite.code == code)).scalar_one()
    assert again == first


def test_look_up_normalises_what_people_type(client, people):
    code = _create(client, people.h["therapist"])["code"]
    assert client.get(f"/api/v1/invites/{code.lower()}").status_code == 200
    assert client.get(f"/api/v1/invites/{code[:5]}-{code[5:]}").status_code == 200


def test_look_up_of_unusable_invites_is_404(client, people, clock):
    h = people.h["therapist"]
    revoked = _create(client, h)["code"]
    client.delete(f"/api/v1/invites/{revoked}", headers=h)
    expired = _create(client, h, expires_in_days=1)["code"]
    people.patient  # noqa: B018
    redeemed = db.session.execute(
        select(Invite.code).where(Invite.patient_id == people.patient.id)
    ).scalar_one()
    clock.advance(days=1)
    for code in (revoked, expired, redeemed, "ZZZZZZZZZZ", "x" * 41, "é"):
        body = assert_error(client.get(f"/api/v1/invites/{code}"), 404)
        assert body["message"] == "Invite not found"  # the same answer whatever the reason
    assert_error(client.get("/api/v1/invites/AB%00CD"), 404)
    assert_error(client.delete("/api/v1/invites/AB%00CD", headers=people.h["therapist"]), 404)
    # Nothing was marked opened by looking.
    opened = db.session.execute(
        select(func.count()).select_from(Invite).where(Invite.opened_at.is_not(None))
    ).scalar_one()
    assert opened == 1  # only the redeemed one (opened when it was registered)


def test_invite_expires_after_its_days(client, people, clock):
    code = _create(client, people.h["therapist"], expires_in_days=3)["code"]
    clock.advance(days=3, seconds=-1)
    assert client.get(f"/api/v1/invites/{code}").status_code == 200
    clock.advance(seconds=1)
    assert_error(client.get(f"/api/v1/invites/{code}"), 404)
