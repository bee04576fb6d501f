"""Devices, reminder settings and the notification history over HTTP (API.md)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from coaching.extensions import db
from coaching.notifications import service
from coaching.notifications.models import Device
from tests.conftest import assert_error

DEVICES = "/api/v1/me/devices"
SETTINGS = "/api/v1/me/reminder-settings"
HISTORY = "/api/v1/me/notifications"


def _notify(account, key, **kw):
    row = service.enqueue(
        recipient_id=account.id,
        category=kw.pop("category", "message"),
        key=key,
        title={"nl": "Nieuw bericht", "en": "New message"},
        body={"nl": "Er is een bericht.", "en": "There is a message."},
        data={"link": "/messages"},
        **kw,
    )
    db.session.commit()
    return row


# --- devices -----------------------------------------------------------------------------------


def test_register_a_device_then_the_same_token_again(client, world):
    body = {"token": "fcm-token-1", "platform": "android"}
    first = client.post(DEVICES, json=body, headers=world.h["patient"])
    assert first.status_code == 201
    again = client.post(DEVICES, json={**body, "platform": "ios"}, headers=world.h["patient"])
    assert again.status_code == 200
    assert again.get_json()["id"] == first.get_json()["id"]
    assert db.session.get(Device, first.get_json()["id"]).platform == "ios"


def test_a_parallel_registration_of_the_same_token_is_the_same_device(client, world, monkeypatch):
    """The app retries on a flaky network: a second request with the token misses the first's
    row when it looks, then collides with it on insert. It answers 200 with the same device."""
    from coaching.db import new_id
    from coaching.notifications import service as notifications

    looked_up = notifications._device_with_token
    first_id = new_id()

    def other_request_commits_in_between(token):
        found = looked_up(token)
        if found is None and token == "raced-token":
            monkeypatch.setattr(notifications, "_device_with_token", looked_up)
            with db.engine.begin() as conn:  # the parallel request, on its own connection
                conn.execute(
                    Device.__table__.insert().values(
                        id=first_id,
                        account_id=world.patient.id,
                        token=token,
                        platform="android",
                        is_active=True,
                        created_at=notifications.clock.now(),
                        last_seen_at=notifications.clock.now(),
                    )
                )
        return found

    monkeypatch.setattr(notifications, "_device_with_token", other_request_commits_in_between)
    body = {"token": "raced-token", "platform": "android"}
    response = client.post(DEVICES, json=body, headers=world.h["patient"])
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["id"] == first_id
    assert db.session.execute(select(func.count()).select_from(Device)).scalar_one() == 1


def test_a_token_registered_by_another_account_moves_to_this_one(client, world):
    body = {"token": "shared-phone", "platform": "android"}
    first = client.post(DEVICES, json=body, headers=world.h["patient"]).get_json()
    moved = client.post(DEVICES, json=body, headers=world.h["other_patient"])
    assert moved.status_code == 200
    assert moved.get_json()["id"] == first["id"]
    device = db.session.get(Device, first["id"])
    db.session.refresh(device)
    assert device.account_id == world.other_patient.id
    # The first account can no longer remove it.
    assert_error(client.delete(f"{DEVICES}/{first['id']}", headers=world.h["patient"]), 404)


def test_a_device_needs_no_consent_and_therapists_may_register(client, make, world):
    unconsented = make.patient(consented=False)
    response = client.post(
        DEVICES, json={"token": "t-new", "platform": "ios"}, headers=make.headers(unconsented)
    )
    assert response.status_code == 201
    response = client.post(
        DEVICES, json={"token": "t-th", "platform": "web"}, headers=world.h["therapist"]
    )
    assert response.status_code == 201


def test_device_registration_refuses_bad_input(client, world):
    h = world.h["patient"]
    assert_error(
        client.post(DEVICES, json={"token": "x", "platform": "nokia"}, headers=h), 422, "platform"
    )
    assert_error(client.post(DEVICES, json={"platform": "ios"}, headers=h), 422, "token")
    assert_error(
        client.post(DEVICES, json={"token": "x" * 1025, "platform": "ios"}, headers=h), 422, "token"
    )
    assert_error(
        client.post(DEVICES, json={"token": 5, "platform": "ios"}, headers=h), 422, "token"
    )
    assert_error(
        client.post(DEVICES, json={"token": "x", "platform": "ios", "account_id": "a"}, headers=h),
        422,
        "account_id",
    )
    assert_error(
        client.post(DEVICES, data="{nope", headers={**h, "Content-Type": "application/json"}),
        400,
    )


def test_devices_need_a_patient_or_therapist(client, world):
    body = {"token": "x", "platform": "ios"}
    assert_error(client.post(DEVICES, json=body), 401)
    assert_error(client.post(DEVICES, json=body, headers=world.h["owner"]), 403)
    assert_error(client.delete(f"{DEVICES}/whatever"), 401)
    assert_error(client.delete(f"{DEVICES}/whatever", headers=world.h["owner"]), 403)


def test_delete_own_device_and_not_another_accounts(client, world):
    mine = client.post(
        DEVICES, json={"token": "mine", "platform": "ios"}, headers=world.h["patient"]
    ).get_json()["id"]
    theirs = client.post(
        DEVICES, json={"token": "theirs", "platform": "ios"}, headers=world.h["foreign_patient"]
    ).get_json()["id"]
    assert_error(client.delete(f"{DEVICES}/{theirs}", headers=world.h["patient"]), 404)
    assert client.delete(f"{DEVICES}/{mine}", headers=world.h["patient"]).status_code == 204
    assert_error(client.delete(f"{DEVICES}/{mine}", headers=world.h["patient"]), 404)
    assert db.session.get(Device, theirs) is not None


# --- reminder settings -------------------------------------------------------------------------


def test_reminder_settings_default_then_change(client, world):
    h = world.h["patient"]
    defaults = client.get(SETTINGS, headers=h)
    assert defaults.status_code == 200
    assert defaults.get_json() == {
        "daily_time": "19:00",
        "quiet_hours": {"start": "22:00", "end": "08:00"},
        "categories": {
            "lesson": True,
            "practice": True,
            "questionnaire": True,
            "message": True,
            "inactivity": True,
            "appointment": True,
        },
        "pause_until": None,
        "timezone": "Europe/Amsterdam",
    }
    changed = client.put(
        SETTINGS,
        json={
            "daily_time": "20:30",
            "quiet_hours": {"start": "23:00", "end": "07:00"},
            "categories": {"inactivity": False},
            "pause_until": "2026-04-10",
            "timezone": "Europe/Lisbon",
        },
        headers=h,
    )
    assert changed.status_code == 200, changed.get_json()
    body = client.get(SETTINGS, headers=h).get_json()
    assert body["daily_time"] == "20:30"
    assert body["quiet_hours"] == {"start": "23:00", "end": "07:00"}
    assert body["categories"]["inactivity"] is False and body["categories"]["lesson"] is True
    assert body["pause_until"] == "2026-04-10"
    assert body["timezone"] == "Europe/Lisbon"
    assert client.get("/api/v1/me", headers=h).get_json()["timezone"] == "Europe/Lisbon"
    # Quiet hours off, pause lifted; the rest stays.
    body = client.put(SETTINGS, json={"quiet_hours": None, "pause_until": None}, headers=h)
    assert body.get_json()["quiet_hours"] is None
    assert body.get_json()["pause_until"] is None
    assert body.get_json()["daily_time"] == "20:30"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"daily_time": "25:00"}, "daily_time"),
        ({"daily_time": "7:00"}, "daily_time"),
        ({"daily_time": 1900}, "daily_time"),
        ({"quiet_hours": {"start": "22:00"}}, "quiet_hours.end"),
        ({"quiet_hours": {"start": "22:00", "end": "8am"}}, "quiet_hours.end"),
        ({"categories": {"marketing": False}}, "categories.marketing"),
        ({"categories": {"lesson": "no"}}, "categories.lesson"),
        ({"categories": {"lesson": 1}}, "categories.lesson"),
        ({"categories": {"message": 0}}, "categories.message"),
        ({"pause_until": "next week"}, "pause_until"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"timezone": "x" * 65}, "timezone"),
        ({"daily_time": "23:00"}, "daily_time"),  # inside the default quiet hours
        # Quiet hours that would cover the daily time (19:00): the field sent is the one named.
        ({"quiet_hours": {"start": "18:00", "end": "08:00"}}, "quiet_hours"),
        ({"volume": 11}, "volume"),
    ],
)
def test_reminder_settings_refuse_bad_input(client, world, body, field):
    assert_error(client.put(SETTINGS, json=body, headers=world.h["patient"]), 422, field)


def test_reminder_settings_refuse_malformed_json_and_need_consent(client, make, world):
    h = world.h["patient"]
    assert_error(
        client.put(SETTINGS, data="{", headers={**h, "Content-Type": "application/json"}), 400
    )
    unconsented = make.headers(make.patient(consented=False))
    assert_error(client.get(SETTINGS, headers=unconsented), 403, contains="consent")
    assert_error(client.get(SETTINGS), 401)
    assert_error(client.get(SETTINGS, headers=world.h["owner"]), 403)
    assert client.get(SETTINGS, headers=world.h["therapist"]).status_code == 200


# --- history -----------------------------------------------------------------------------------


def test_history_is_own_newest_first_paginated_and_localized(client, make, world, clock):
    for i in range(3):
        _notify(world.patient, f"k{i}", scheduled_for=clock.now() + timedelta(minutes=i))
    _notify(world.other_patient, "theirs")
    english = make.patient(locale="en")
    _notify(english, "en-1")
    response = client.get(f"{HISTORY}?page_size=2", headers=world.h["patient"])
    assert response.status_code == 200
    assert json.loads(response.headers["X-Pagination"])["total"] == 3
    items = response.get_json()
    assert [i["status"] for i in items] == ["scheduled", "scheduled"]
    assert items[0]["scheduled_for"] > items[1]["scheduled_for"]
    assert items[0]["scheduled_for"].endswith("Z") and items[0]["sent_at"] is None
    assert set(items[0]) >= {
        "id",
        "category",
        "title",
        "body",
        "scheduled_for",
        "sent_at",
        "status",
    }
    assert items[0]["title"] == "Nieuw bericht"
    assert (
        client.get(HISTORY, headers=make.headers(english)).get_json()[0]["title"] == "New message"
    )
    assert_error(client.get(HISTORY), 401)
    assert_error(client.get(HISTORY, headers=world.h["owner"]), 403)
    assert_error(client.get(f"{HISTORY}?page_size=500", headers=world.h["patient"]), 422)


def test_opened_is_recorded_once_and_only_for_the_recipient(client, world, clock):
    row = _notify(world.patient, "open-me")
    url = f"{HISTORY}/{row.id}/opened"
    assert_error(client.post(url, headers=world.h["other_patient"]), 404)
    assert_error(client.post(url, headers=world.h["therapist"]), 404)
    assert_error(client.post(url), 401)
    first = client.post(url, headers=world.h["patient"])
    assert first.status_code == 200
    opened_at = first.get_json()["opened_at"]
    assert opened_at is not None
    clock.advance(minutes=5)
    again = client.post(url, headers=world.h["patient"])
    assert again.status_code == 200
    assert again.get_json()["opened_at"] == opened_at
    assert_error(client.post(f"{HISTORY}/nope/opened", headers=world.h["patient"]), 404)
