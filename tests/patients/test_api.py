"""The therapist's work list and patient detail: own patients only, progress per module, last
activity, reflections, other domains' extras, and an audit row for every read."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from coaching.audit.models import AuditEntry
from coaching.db import utc_iso
from coaching.extensions import db
from coaching.patients import service
from tests.conftest import assert_error
from tests.content.conftest import API, put_progress

CONTRACT_FIELDS = {
    "id",
    "display_name",
    "enrolled_on",
    "status",
    "last_active_at",
    "current_module",
    "unread_messages",
    "awaiting_reply_since",
}


def _reads(patient_id, resource_type):
    return db.session.execute(
        select(AuditEntry).where(
            AuditEntry.patient_id == patient_id,
            AuditEntry.resource_type == resource_type,
            AuditEntry.action == "read",
        )
    ).all()


def test_work_list_shows_own_patients_with_progress(client, world, content, clock):
    put_progress(
        client,
        world.h["patient"],
        content.lesson["how-pain-works"],
        "completed",
        {"what-matters": "Tuinieren"},
    )
    response = client.get(f"{API}/patients", headers=world.h["therapist"])
    assert response.status_code == 200
    items = response.get_json()
    assert [i["id"] for i in items] == sorted(
        [world.patient.id, world.other_patient.id],
        key=lambda pid: {
            world.patient.id: world.patient.display_name,
            world.other_patient.id: world.other_patient.display_name,
        }[pid],
    )
    assert json.loads(response.headers["X-Pagination"])["total"] == 2
    item = next(i for i in items if i["id"] == world.patient.id)
    assert set(item) >= CONTRACT_FIELDS
    assert item["display_name"] == world.patient.display_name
    assert item["enrolled_on"] == "2026-03-02" and item["status"] == "active"
    assert item["last_active_at"] == utc_iso(clock.now())
    assert item["current_module"] == {
        "slug": "first-steps",
        "title": "Eerste stappen",
        "position": 1,
        "unlocked": True,
        "unlocks_on": "2026-03-02",
        "lessons_completed": 1,
        "lessons_total": 2,
    }
    assert item["progress"] == {
        "modules_completed": 0,
        "modules_total": 2,
        "lessons_completed": 1,
        "lessons_total": 4,
    }
    assert item["unread_messages"] == 0 and item["awaiting_reply_since"] is None
    other = next(i for i in items if i["id"] == world.other_patient.id)
    assert other["last_active_at"] is None
    # Every patient shown is an audited read.
    assert len(_reads(world.patient.id, "worklist")) == 1
    assert len(_reads(world.other_patient.id, "worklist")) == 1


def test_work_list_merges_messaging_and_outcomes(client, world, content):
    conversations = client.get(f"{API}/conversations", headers=world.h["patient"]).get_json()
    sent = client.post(
        f"{API}/conversations/{conversations[0]['id']}/messages",
        json={"kind": "text", "body": "Ik heb een vraag"},
        headers=world.h["patient"],
    )
    assert sent.status_code == 201, sent.get_json()
    items = client.get(f"{API}/patients", headers=world.h["therapist"]).get_json()
    item = next(i for i in items if i["id"] == world.patient.id)
    assert item["unread_messages"] == 1
    assert item["awaiting_reply_since"] == sent.get_json()["created_at"]
    assert item["open_alerts"] == 0  # from outcomes
    assert "open_cycles" in item  # from messaging, passed on as it is
    attention = client.get(f"{API}/patients?sort=attention", headers=world.h["therapist"])
    assert attention.get_json()[0]["id"] == world.patient.id


def test_defaults_when_no_domain_adds_extras(client, world, content, monkeypatch):
    monkeypatch.setattr(service, "EXTRA_DOMAINS", ())
    item = client.get(f"{API}/patients", headers=world.h["therapist"]).get_json()[0]
    assert item["unread_messages"] == 0 and item["awaiting_reply_since"] is None
    assert "open_alerts" not in item


def test_extras_of_a_domain_are_passed_on_as_json(client, world, content, monkeypatch, clock):
    def extras(*, therapist, patient_ids):
        assert therapist.id == world.therapist.id
        return {
            pid: {"waiting_since": clock.now(), "due_on": clock.now().date(), "flags": ["x"]}
            for pid in patient_ids
        }

    monkeypatch.setattr(service, "_extras_function", lambda domain: extras)
    item = client.get(f"{API}/patients", headers=world.h["therapist"]).get_json()[0]
    assert item["waiting_since"] == utc_iso(clock.now())
    assert item["due_on"] == "2026-03-02" and item["flags"] == ["x"]
    assert item["unread_messages"] == 0


def test_pagination_and_status_filter(client, world, content):
    response = client.get(f"{API}/patients?page=2&page_size=1", headers=world.h["therapist"])
    assert len(response.get_json()) == 1
    assert json.loads(response.headers["X-Pagination"]) == {
        "total": 2,
        "total_pages": 2,
        "page": 2,
        "page_size": 1,
    }
    assert (
        client.get(f"{API}/patients?status=completed", headers=world.h["therapist"]).get_json()
        == []
    )
    assert_error(
        client.get(f"{API}/patients?status=gone", headers=world.h["therapist"]), 422, "status"
    )
    assert_error(client.get(f"{API}/patients?sort=age", headers=world.h["therapist"]), 422, "sort")
    assert_error(client.get(f"{API}/patients?page_size=101", headers=world.h["therapist"]), 422)


def test_each_therapist_sees_only_their_own(client, world, content):
    assert client.get(f"{API}/patients", headers=world.h["colleague"]).get_json() == []
    foreign = client.get(f"{API}/patients", headers=world.h["other_therapist"]).get_json()
    assert [i["id"] for i in foreign] == [world.foreign_patient.id]


def test_detail_with_modules_reflections_and_appointments(client, world, content, clock):
    world.therapist.locale = "en"
    db.session.commit()
    lesson_id = content.lesson["how-pain-works"]
    put_progress(
        client,
        world.h["patient"],
        lesson_id,
        "started",
        {"what-matters": "Tuinieren", "breathing": True},
    )
    clock.advance(minutes=2)
    put_progress(client, world.h["patient"], lesson_id, "completed", {"what-matters": "Fietsen"})
    planned = client.post(
        f"{API}/patients/{world.patient.id}/appointments",
        json={"starts_at": utc_iso(clock.now() + timedelta(days=1)), "kind": "in_person"},
        headers=world.h["therapist"],
    ).get_json()
    response = client.get(f"{API}/patients/{world.patient.id}", headers=world.h["therapist"])
    assert response.status_code == 200
    detail = response.get_json()
    assert set(detail) >= CONTRACT_FIELDS
    assert detail["email"] == world.patient.email and detail["locale"] == "nl"
    first, second = detail["modules"]
    assert first["title"] == "First steps"  # in the therapist's language
    assert (first["lessons_completed"], first["lessons_total"], first["completed"]) == (1, 2, False)
    assert first["lessons"][0]["status"] == "completed"
    assert first["lessons"][0]["completed_at"] == utc_iso(clock.now())
    assert first["lessons"][1]["status"] == "not_started"
    assert not second["unlocked"] and second["unlocks_on"] == "2026-03-09"
    (reflection,) = detail["reflections"]
    assert reflection["question"].startswith("Wat zou je weer willen doen")  # as the patient saw it
    assert reflection["answer"] == "Fietsen"
    assert reflection["lesson_title"] == "Hoe pijn werkt"
    assert reflection["updated_at"] == utc_iso(clock.now())
    assert [a["id"] for a in detail["upcoming_appointments"]] == [planned["id"]]
    assert detail["next_appointment"]["id"] == planned["id"]
    assert len(_reads(world.patient.id, "patient")) == 1


def test_detail_is_for_the_patients_own_therapist_only(client, world, content):
    url = f"{API}/patients/{world.patient.id}"
    assert_error(client.get(url), 401)
    for name in ("colleague", "other_therapist"):
        assert_error(client.get(url, headers=world.h[name]), 404)
    for name in ("owner", "patient", "other_patient"):
        assert_error(client.get(url, headers=world.h[name]), 403)
    assert_error(client.get(f"{API}/patients/nope", headers=world.h["therapist"]), 404)
    assert_error(
        client.get(f"{API}/patients/{world.therapist.id}", headers=world.h["therapist"]), 404
    )
    assert _reads(world.patient.id, "patient") == []


@pytest.mark.parametrize("name", ["owner", "patient"])
def test_work_list_is_for_therapists(client, world, name):
    assert_error(client.get(f"{API}/patients", headers=world.h[name]), 403)


def test_work_list_needs_a_token(client):
    assert_error(client.get(f"{API}/patients"), 401)


def test_work_list_without_content(client, world):
    item = client.get(f"{API}/patients", headers=world.h["therapist"]).get_json()[0]
    assert item["current_module"] is None
    assert item["progress"]["modules_total"] == 0
