"""The programme API as the app uses it: /me/programme, lessons with ETag, progress, /me/today,
/me/events, and who may call what."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from coaching.db import utc_iso
from coaching.enrolment import service as enrolment
from coaching.extensions import db
from coaching.metrics.models import PatientActivity
from tests.conftest import PASSWORD, assert_error
from tests.content.conftest import API, put_progress


def _register(client, make, locale: str, email: str) -> dict:
    invite = make.invite()
    response = client.post(
        f"{API}/patients",
        json={
            "invite_code": invite.code,
            "email": email,
            "password": PASSWORD,
            "display_name": "Nieuwe Patiënt",
            "locale": locale,
            "timezone": "Europe/Amsterdam",
        },
    )
    assert response.status_code == 201, response.get_json()
    headers = {"Authorization": f"Bearer {response.get_json()['access_token']}"}
    version = client.get(f"{API}/consent").get_json()["version"]
    assert (
        client.post(f"{API}/me/consent", json={"version": version}, headers=headers).status_code
        == 201
    )
    return headers


def test_a_new_dutch_patient_goes_through_the_first_lesson(client, make, content):
    headers = _register(client, make, "nl", "nieuw@example.test")
    programme = client.get(f"{API}/me/programme", headers=headers)
    assert programme.status_code == 200
    body = programme.get_json()
    assert set(body) == {"enrollment_id", "status", "started_on", "modules"}
    assert body["status"] == "active" and body["started_on"] == "2026-03-02"
    first, second = body["modules"]
    assert {"slug", "title", "position", "unlocked", "unlocks_on", "completed", "lessons"} <= set(
        first
    )
    assert (first["slug"], first["title"], first["position"]) == (
        "first-steps",
        "Eerste stappen",
        1,
    )
    assert first["unlocked"] and first["unlocks_on"] == "2026-03-02" and not first["completed"]
    assert not second["unlocked"] and second["unlocks_on"] == "2026-03-09"
    lesson = first["lessons"][0]
    assert {"id", "slug", "title", "completed"} <= set(lesson)
    assert lesson["title"] == "Hoe pijn werkt" and not lesson["completed"]

    read = client.get(f"{API}/lessons/{lesson['id']}", headers=headers)
    assert read.status_code == 200
    data = read.get_json()
    assert {"id", "slug", "module_slug", "title", "locale", "blocks"} <= set(data)
    assert (data["locale"], data["title"], data["module_slug"]) == (
        "nl",
        "Hoe pijn werkt",
        "first-steps",
    )
    assert [b["type"] for b in data["blocks"]] == [
        "text",
        "video",
        "image",
        "exercise",
        "reflection",
    ]
    assert "<strong>alarmsignaal</strong>" in data["blocks"][0]["html"]
    assert data["blocks"][3]["steps"][0] == "Merk op wat er nu is."
    etag = read.headers["ETag"]
    again = client.get(f"{API}/lessons/{lesson['id']}", headers={**headers, "If-None-Match": etag})
    assert again.status_code == 304 and again.headers["ETag"] == etag
    assert again.get_data() == b""

    done = put_progress(client, headers, lesson["id"], "completed", {"what-matters": "Fietsen"})
    assert done.status_code == 200
    assert set(done.get_json()) >= {"lesson_id", "status", "started_at", "completed_at"}
    today = client.get(f"{API}/me/today", headers=headers).get_json()
    assert set(today) >= {
        "next_lesson",
        "due_questionnaires",
        "unread_messages",
        "next_appointment",
    }
    assert today["next_lesson"]["title"] == "Weer in beweging"
    assert today["next_lesson"]["module_slug"] == "first-steps"
    assert today["next_appointment"] is None
    assert isinstance(today["unread_messages"], int)


def test_an_english_patient_reads_english(client, make, content):
    headers = _register(client, make, "en", "new@example.test")
    programme = client.get(f"{API}/me/programme", headers=headers).get_json()
    assert programme["modules"][0]["title"] == "First steps"
    lesson_id = programme["modules"][0]["lessons"][0]["id"]
    data = client.get(f"{API}/lessons/{lesson_id}", headers=headers).get_json()
    assert (data["locale"], data["title"]) == ("en", "How pain works")
    assert data["blocks"][3]["title"] == "Three-minute breathing space"


def test_etag_differs_per_locale_and_accepts_lists_and_weak_tags(client, world, content):
    lesson_id = content.lesson["how-pain-works"]
    dutch = client.get(f"{API}/lessons/{lesson_id}", headers=world.h["patient"])
    world.patient.locale = "en"
    db.session.commit()
    english = client.get(f"{API}/lessons/{lesson_id}", headers=world.h["patient"])
    assert dutch.headers["ETag"] != english.headers["ETag"]
    assert english.headers["Cache-Control"] == "private, no-cache"
    etag = english.headers["ETag"]
    for header in (f'"nope", {etag}', f"W/{etag}", "*"):
        response = client.get(
            f"{API}/lessons/{lesson_id}", headers={**world.h["patient"], "If-None-Match": header}
        )
        assert response.status_code == 304, header
    stale = client.get(
        f"{API}/lessons/{lesson_id}",
        headers={**world.h["patient"], "If-None-Match": dutch.headers["ETag"]},
    )
    assert stale.status_code == 200


def test_locked_lesson_is_403_with_the_date(client, world, content):
    response = client.get(f"{API}/lessons/{content.lesson['observer']}", headers=world.h["patient"])
    body = assert_error(response, 403, contains="locked")
    assert "2026-03-09" in body["message"]
    response = put_progress(client, world.h["patient"], content.lesson["observer"])
    assert_error(response, 403, contains="locked")


def test_locked_until_a_date_once_the_previous_module_is_done(client, world, make, content, clock):
    for slug in ("how-pain-works", "moving-again"):
        assert (
            put_progress(client, world.h["patient"], content.lesson[slug], "completed").status_code
            == 200
        )
    response = client.get(f"{API}/lessons/{content.lesson['observer']}", headers=world.h["patient"])
    body = assert_error(response, 403, contains="locked")
    assert "until 2026-03-09" in body["message"]
    clock.advance(days=7)
    headers = make.headers(world.patient)  # (the old access token has expired)
    response = client.get(f"{API}/lessons/{content.lesson['observer']}", headers=headers)
    assert response.status_code == 200


@pytest.mark.parametrize("lesson_id", ["00000000-0000-0000-0000-000000000000", "nope", "x" * 300])
def test_unknown_lesson_is_404(client, world, content, lesson_id):
    assert_error(client.get(f"{API}/lessons/{lesson_id}", headers=world.h["patient"]), 404)
    assert_error(put_progress(client, world.h["patient"], lesson_id), 404)


def test_progress_is_idempotent(client, world, content, clock):
    lesson_id = content.lesson["how-pain-works"]
    headers = world.h["patient"]
    first = put_progress(client, headers, lesson_id).get_json()
    assert first["status"] == "started" and first["completed_at"] is None
    clock.advance(minutes=3)
    assert put_progress(client, headers, lesson_id).get_json() == first
    done = put_progress(client, headers, lesson_id, "completed").get_json()
    assert done["status"] == "completed"
    assert done["started_at"] == first["started_at"]
    assert done["completed_at"] == utc_iso(clock.now())
    clock.advance(minutes=3)
    assert put_progress(client, headers, lesson_id, "completed").get_json() == done
    # Going back to "started" keeps it completed.
    assert put_progress(client, headers, lesson_id, "started").get_json() == done
    kinds = db.session.execute(
        select(PatientActivity.kind).where(PatientActivity.patient_id == world.patient.id)
    ).scalars()
    assert sorted(kinds) == ["lesson_completed", "lesson_started"]


def test_answers_are_stored_merged_and_removed(client, world, content):
    lesson_id = content.lesson["how-pain-works"]
    headers = world.h["patient"]
    response = put_progress(
        client, headers, lesson_id, answers={"what-matters": "Wandelen", "breathing": True}
    )
    assert response.get_json()["answers"] == {"what-matters": "Wandelen", "breathing": True}
    response = put_progress(client, headers, lesson_id, answers={"what-matters": "Fietsen"})
    assert response.get_json()["answers"] == {"what-matters": "Fietsen", "breathing": True}
    response = put_progress(client, headers, lesson_id, answers={"breathing": None})
    assert response.get_json()["answers"] == {"what-matters": "Fietsen"}
    got = client.get(f"{API}/lessons/{lesson_id}/progress", headers=headers)
    assert got.status_code == 200 and got.get_json()["answers"] == {"what-matters": "Fietsen"}
    fresh = client.get(
        f"{API}/lessons/{content.lesson['moving-again']}/progress", headers=headers
    ).get_json()
    assert fresh == {
        "lesson_id": content.lesson["moving-again"],
        "status": "not_started",
        "started_at": None,
        "completed_at": None,
        "answers": {},
    }


@pytest.mark.parametrize(
    ("answers", "field"),
    [
        ({"nope": "x"}, "answers.nope"),
        ({"intro": "x"}, "answers.intro"),
        ({"explainer": True}, "answers.explainer"),
        ({"what-matters": 3}, "answers.what-matters"),
        ({"what-matters": ["a"]}, "answers.what-matters"),
        ({"breathing": 5}, "answers.breathing"),
        ({"what-matters": "x" * 4001}, "answers.what-matters"),
    ],
)
def test_bad_answers_are_422_naming_the_block(client, world, content, answers, field):
    response = put_progress(
        client, world.h["patient"], content.lesson["how-pain-works"], answers=answers
    )
    assert_error(response, 422, field=field)
    # Nothing was written.
    got = client.get(
        f"{API}/lessons/{content.lesson['how-pain-works']}/progress", headers=world.h["patient"]
    )
    assert got.get_json()["status"] == "not_started"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"status": "finished"}, "status"),
        ({}, "status"),
        ({"status": "started", "extra": 1}, "extra"),
        ({"status": "started", "answers": "x"}, "answers"),
        ({"status": "started", "answers": {"x" * 65: "a"}}, "answers." + "x" * 65),
        ({"status": 5}, "status"),
        ({"status": "started", "answers": {f"b{n}": "a" for n in range(51)}}, "answers"),
    ],
)
def test_bad_progress_bodies(client, world, content, body, field):
    response = client.put(
        f"{API}/lessons/{content.lesson['how-pain-works']}/progress",
        json=body,
        headers=world.h["patient"],
    )
    assert_error(response, 422, field=field)


def test_malformed_json_is_400(client, world, content):
    response = client.put(
        f"{API}/lessons/{content.lesson['how-pain-works']}/progress",
        data="{nope",
        content_type="application/json",
        headers=world.h["patient"],
    )
    assert_error(response, 400)
    response = client.post(
        f"{API}/me/events", data="[", content_type="application/json", headers=world.h["patient"]
    )
    assert_error(response, 400)


def test_events_from_the_allow_list_are_recorded(client, world, content, clock):
    headers = world.h["patient"]
    response = client.post(f"{API}/me/events", json={"name": "app_opened"}, headers=headers)
    assert response.status_code == 202
    assert response.get_json() == {"name": "app_opened", "occurred_at": utc_iso(clock.now())}
    earlier = clock.now() - timedelta(hours=5)
    response = client.post(
        f"{API}/me/events",
        json={"name": "exercise_started", "occurred_at": utc_iso(earlier)},
        headers=headers,
    )
    assert response.status_code == 202
    rows = db.session.execute(
        select(PatientActivity.kind, PatientActivity.occurred_at).where(
            PatientActivity.patient_id == world.patient.id
        )
    ).all()
    assert sorted(rows) == sorted([("app_opened", clock.now()), ("exercise_started", earlier)])


def test_an_event_sent_again_with_its_idempotency_key_is_recorded_once(client, world, content):
    headers = {**world.h["patient"], "Idempotency-Key": "app-opened-1"}
    first = client.post(f"{API}/me/events", json={"name": "app_opened"}, headers=headers)
    again = client.post(f"{API}/me/events", json={"name": "app_opened"}, headers=headers)
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()
    kinds = db.session.execute(
        select(PatientActivity.kind).where(PatientActivity.patient_id == world.patient.id)
    ).scalars()
    assert list(kinds) == ["app_opened"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "hacked"}, "name"),
        ({"name": ""}, "name"),
        ({"name": "x" * 41}, "name"),
        ({}, "name"),
        ({"name": "app_opened", "occurred_at": "2026-03-02T09:00:00"}, "occurred_at"),
        ({"name": "app_opened", "occurred_at": "2026-02-01T09:00:00Z"}, "occurred_at"),
        ({"name": "app_opened", "occurred_at": "2026-03-03T09:00:00Z"}, "occurred_at"),
        ({"name": "app_opened", "occurred_at": "9999-12-31T23:59:59-01:00"}, "occurred_at"),
        ({"name": "app_opened", "extra": True}, "extra"),
    ],
)
def test_bad_events_are_422(client, world, content, body, field):
    response = client.post(f"{API}/me/events", json=body, headers=world.h["patient"])
    assert_error(response, 422, field=field)


def test_today_includes_due_questionnaires_unread_messages_and_appointment(
    client, world, content, clock
):
    headers = world.h["patient"]
    today = client.get(f"{API}/me/today", headers=headers).get_json()
    # The outcomes domain's baseline questionnaires are due right after enrolment.
    assert {"key": "odi", "timepoint": "baseline", "due_on": "2026-03-02", "status": "due"} in (
        today["due_questionnaires"]
    )
    assert today["unread_messages"] == 0
    conversation = client.get(f"{API}/conversations", headers=world.h["therapist"]).get_json()
    mine = next(c for c in conversation if c["patient_id"] == world.patient.id)
    sent = client.post(
        f"{API}/conversations/{mine['id']}/messages",
        json={"kind": "text", "body": "Hoe gaat het?"},
        headers=world.h["therapist"],
    )
    assert sent.status_code == 201, sent.get_json()
    starts = clock.now() + timedelta(days=2)
    planned = client.post(
        f"{API}/patients/{world.patient.id}/appointments",
        json={"starts_at": utc_iso(starts), "kind": "video_call", "duration_minutes": 30},
        headers=world.h["therapist"],
    )
    assert planned.status_code == 201, planned.get_json()
    today = client.get(f"{API}/me/today", headers=headers).get_json()
    assert today["unread_messages"] == 1
    assert today["next_appointment"]["id"] == planned.get_json()["id"]
    assert today["next_appointment"]["kind"] == "video_call"
    assert today["next_appointment"]["starts_at"] == utc_iso(starts)


def test_today_without_the_other_domains(client, world, content, monkeypatch):
    from coaching.content import service

    monkeypatch.setattr(service, "_other", lambda module, name: None)
    today = client.get(f"{API}/me/today", headers=world.h["patient"]).get_json()
    assert today["due_questionnaires"] == [] and today["unread_messages"] == 0
    assert today["next_appointment"] is None


def test_without_content_the_programme_is_empty(client, world):
    body = client.get(f"{API}/me/programme", headers=world.h["patient"]).get_json()
    assert body["modules"] == []
    today = client.get(f"{API}/me/today", headers=world.h["patient"]).get_json()
    assert today["next_lesson"] is None


# --- who may call what -----------------------------------------------------------------------

ENDPOINTS = [
    ("get", "/me/programme", None),
    ("get", "/lessons/{lesson}", None),
    ("get", "/lessons/{lesson}/progress", None),
    ("put", "/lessons/{lesson}/progress", {"status": "started"}),
    ("get", "/me/today", None),
    ("post", "/me/events", {"name": "app_opened"}),
]


def _call(client, method, path, body, headers, content):
    url = API + path.format(lesson=content.lesson["how-pain-works"])
    kwargs = {"headers": headers}
    if body is not None:
        kwargs["json"] = body
    return getattr(client, method)(url, **kwargs)


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
def test_endpoints_need_a_consented_patient(client, world, make, content, method, path, body):
    assert_error(_call(client, method, path, body, {}, content), 401)
    for name in ("therapist", "owner"):
        assert_error(_call(client, method, path, body, world.h[name], content), 403)
    unconsented = make.patient(world.therapist, consented=False)
    response = _call(client, method, path, body, make.headers(unconsented), content)
    assert_error(response, 403, contains="consent")
    response = _call(client, method, path, body, world.h["patient"], content)
    assert response.status_code < 300, response.get_json()


def test_another_patients_progress_stays_theirs(client, world, content):
    lesson_id = content.lesson["how-pain-works"]
    put_progress(client, world.h["patient"], lesson_id, "completed", {"what-matters": "Mijn"})
    other = client.get(f"{API}/lessons/{lesson_id}/progress", headers=world.h["other_patient"])
    assert other.get_json()["status"] == "not_started" and other.get_json()["answers"] == {}


def test_patient_without_enrolment_gets_404(client, make, content):
    patient = make.patient(make.therapist())
    db.session.delete(enrolment.enrollment_for(patient.id))
    db.session.commit()
    headers = make.headers(patient)
    assert_error(client.get(f"{API}/me/programme", headers=headers), 404)
    assert_error(
        client.get(f"{API}/lessons/{content.lesson['how-pain-works']}", headers=headers), 404
    )
