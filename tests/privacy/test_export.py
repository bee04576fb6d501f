"""Export (GDPR art. 15/20): the job, the ZIP's contents, short-lived URLs, expiry, failures."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import Column, ForeignKey, String, Table, select

from coaching.extensions import db
from coaching.media.models import MediaDeletion
from coaching.media.service import purge_pending
from coaching.media.storage import get_storage
from coaching.privacy import service
from coaching.privacy.models import DataExport
from tests.conftest import assert_error
from tests.privacy.conftest import API, download, first_lesson, read_zip, submit


def _start(client, headers) -> dict:
    response = client.post(f"{API}/me/export", headers=headers)
    assert response.status_code == 202, response.get_json()
    return response.get_json()


def _status(client, headers, export_id):
    return client.get(f"{API}/me/exports/{export_id}", headers=headers)


def _ready_zip(client, headers, clock) -> tuple[dict, dict, dict]:
    started = _start(client, headers)
    assert service.run_pending_exports(clock.now()) == 1
    view = _status(client, headers, started["id"]).get_json()
    document, files = read_zip(download(client, view["download_url"]))
    return view, document, files


def test_export_is_a_job_whose_zip_holds_everything_about_the_patient(
    clock, content, client, world, rich
):
    h = world.h
    submit(client, h["patient"])
    lesson = first_lesson(client, h["patient"])
    reflections = [b["id"] for b in lesson["blocks"] if b["type"] == "reflection"]
    answers = dict.fromkeys(reflections[:1], "Wandelen met de hond")
    progress = client.put(
        f"{API}/lessons/{lesson['id']}/progress",
        json={"status": "completed", "answers": answers},
        headers=h["patient"],
    )
    assert progress.status_code == 200, progress.get_json()
    appointment = client.post(
        f"{API}/patients/{world.patient.id}/appointments",
        json={"kind": "in_person", "starts_at": "2026-03-04T10:00:00Z"},
        headers=h["therapist"],
    )
    assert appointment.status_code == 201, appointment.get_json()
    # A therapist's look is logged, and the access log is part of what is held.
    looked = client.get(f"{API}/patients/{world.patient.id}/outcomes", headers=h["therapist"])
    assert looked.status_code == 200
    started = _start(client, h["patient"])
    assert started["status"] == "pending" and started["download_url"] is None
    assert _status(client, h["patient"], started["id"]).get_json()["status"] == "pending"

    assert service.run_pending_exports(clock.now()) == 1
    view = _status(client, h["patient"], started["id"]).get_json()
    assert view["status"] == "ready" and view["size_bytes"] > 0
    assert view["download_url"] and view["download_expires_at"] <= view["expires_at"]
    raw = download(client, view["download_url"])
    document, files = read_zip(raw)

    assert document["format"] == "coaching-export/1"
    assert document["account"]["email"] == world.patient.email
    assert "password_hash" not in document["account"]
    records = document["records"]
    for table in (
        "consent_acceptances",
        "enrollments",
        "invites",
        "conversations",
        "messages",
        "questionnaire_responses",
        "questionnaire_scores",
        "notifications",
        "devices",
        "uptake_events",
        "patient_activity",
        "audit_log",
        "data_exports",
        "lesson_progress",
        "appointments",
    ):
        assert records.get(table), f"{table} missing from the export"
    for secret in ("login_sessions", "refresh_tokens", "idempotency_records"):
        assert secret not in records
    bodies = {m["body"] for m in records["messages"]}
    assert "Mijn rug doet pijn" in bodies
    assert "Geheim van een ander" not in raw.decode("latin-1")
    assert world.other_patient.email not in raw.decode("latin-1")
    assert {r["questionnaire_key"] for r in records["questionnaire_responses"]} == {"nrs"}
    assert [p["status"] for p in records["lesson_progress"]] == ["completed"]
    if answers:
        assert "Wandelen met de hond" in json.dumps(records["lesson_answers"], ensure_ascii=False)
    assert {r["actor_id"] for r in records["audit_log"]} == {world.therapist.id}
    assert all("row_hash" not in r for r in records["audit_log"])

    # Both videos (the patient's and the therapist's) and their thumbnails, byte for byte.
    videos = [name for name in files if name.endswith(".mp4")]
    assert len(videos) == 2
    assert all(files[name] == rich.video_bytes for name in videos)
    assert len([name for name in files if name.endswith(".jpg")]) == 2
    listed = {f["path"] for f in document["files"]}
    assert listed == set(files)
    video_rows = [m for m in records["messages"] if m["kind"] == "video"]
    assert {m["media_key"] for m in video_rows} == set(videos)


def test_a_second_request_while_one_is_prepared_returns_the_same_export(clock, client, world):
    first = _start(client, world.h["patient"])
    second = _start(client, world.h["patient"])
    assert first["id"] == second["id"]
    service.run_pending_exports(clock.now())
    third = _start(client, world.h["patient"])
    assert third["id"] != first["id"]


def test_idempotency_key_replays_the_first_answer(clock, client, world):
    headers = {**world.h["patient"], "Idempotency-Key": "export-1"}
    first = client.post(f"{API}/me/export", headers=headers)
    service.run_pending_exports(clock.now())
    again = client.post(f"{API}/me/export", headers=headers)
    assert again.status_code == 202 and again.get_json() == first.get_json()
    assert again.headers.get("Idempotent-Replayed") == "true"


def test_exports_are_only_the_patients_own(client, world):
    export = _start(client, world.h["patient"])
    assert_error(_status(client, world.h["other_patient"], export["id"]), 404)
    assert_error(_status(client, world.h["foreign_patient"], export["id"]), 404)
    assert_error(_status(client, world.h["patient"], "no-such-export"), 404)
    for role in ("therapist", "owner"):
        assert_error(_status(client, world.h[role], export["id"]), 403)
        assert_error(client.post(f"{API}/me/export", headers=world.h[role]), 403)
    assert_error(_status(client, {}, export["id"]), 401)
    assert_error(client.post(f"{API}/me/export"), 401)


def test_export_needs_consent_as_every_patient_endpoint(client, make):
    patient = make.patient(consented=False)
    assert_error(
        client.post(f"{API}/me/export", headers=make.headers(patient)), 403, contains="consent"
    )


def test_the_download_url_is_short_lived_and_the_zip_expires(clock, client, world, app, make):
    h = world.h
    view, _, _ = _ready_zip(client, h["patient"], clock)
    url = view["download_url"]
    clock.advance(seconds=app.config["MEDIA_URL_TTL_SECONDS"] + 1)
    from urllib.parse import urlsplit

    assert_error(client.get(urlsplit(url).path), 403, contains="expired")
    # Asking again gives a fresh URL while the export lives (with a fresh access token).
    h = {"patient": make.headers(world.patient)}
    fresh = _status(client, h["patient"], view["id"]).get_json()
    assert download(client, fresh["download_url"])

    clock.advance(hours=app.config["EXPORT_TTL_HOURS"])
    h = {"patient": make.headers(world.patient)}
    key = db.session.get(DataExport, view["id"]).media_key
    assert service.expire_exports(clock.now()) == 1
    gone = _status(client, h["patient"], view["id"]).get_json()
    assert gone["status"] == "expired" and gone["download_url"] is None
    assert db.session.execute(select(MediaDeletion.key)).scalars().all() == [key]
    purge_pending(clock.now())
    assert get_storage().size_of(key) is None


def test_a_failing_build_is_retried_and_then_marked_failed(clock, client, world, monkeypatch, make):
    export = _start(client, world.h["patient"])
    storage = get_storage()

    def broken(**kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(storage, "save_file", broken)
    assert service.run_pending_exports(clock.now()) == 0
    row = db.session.get(DataExport, export["id"])
    assert row.status == "pending" and row.attempts == 1 and row.due_at > clock.now()
    assert service.run_pending_exports(clock.now()) == 0  # not due yet
    for _ in range(2):
        clock.set(db.session.get(DataExport, export["id"]).due_at)
        service.run_pending_exports(clock.now())
    db.session.expire_all()
    row = db.session.get(DataExport, export["id"])
    assert row.status == "failed" and row.failure_reason == "OSError"
    view = _status(client, make.headers(world.patient), export["id"]).get_json()
    assert view["status"] == "failed" and view["download_url"] is None


def test_a_worker_that_died_leaves_the_export_to_another_after_the_lease(clock, client, world):
    export = _start(client, world.h["patient"])
    assert service._claim_export(clock.now()) == export["id"]  # claimed, then the worker dies
    assert service.run_pending_exports(clock.now()) == 0
    clock.advance(minutes=16)
    assert service.run_pending_exports(clock.now()) == 1
    assert db.session.get(DataExport, export["id"]).status == "ready"


def test_export_through_s3(clock, client, world, s3, rich):
    view, document, files = _ready_zip(client, world.h["patient"], clock)
    assert view["download_url"].startswith(s3.server.url)
    assert len([n for n in files if n.endswith(".mp4")]) == 2


@pytest.fixture
def new_domain_table(app):
    """A table a future domain might add: patient-owned rows the privacy code never heard of."""
    table = Table(
        "zz_future_diary",
        db.metadata,
        Column("id", String(36), primary_key=True),
        Column("patient_id", ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
        Column("entry", String(200)),
    )
    table.create(db.engine)
    yield table
    db.session.rollback()
    table.drop(db.engine)
    db.metadata.remove(table)


def test_a_new_domains_table_is_exported_and_erased_without_changes(
    clock, client, world, new_domain_table
):
    db.session.execute(
        new_domain_table.insert(),
        [
            {"id": "d1", "patient_id": world.patient.id, "entry": "Slecht geslapen"},
            {"id": "d2", "patient_id": world.other_patient.id, "entry": "Iemand anders"},
        ],
    )
    db.session.commit()
    _, document, _ = _ready_zip(client, world.h["patient"], clock)
    assert document["records"]["zz_future_diary"] == [
        {"id": "d1", "patient_id": world.patient.id, "entry": "Slecht geslapen"}
    ]
    response = client.delete(
        f"{API}/me", json={"password": "correct-horse-battery"}, headers=world.h["patient"]
    )
    assert response.status_code == 200, response.get_json()
    left = db.session.execute(select(new_domain_table.c.id)).scalars().all()
    assert left == ["d2"]


def test_collector_links_cover_every_patient_column():
    """Every column that names a patient or account is walked (declared or by its name)."""
    from coaching.privacy.collector import links

    walked = {(link.child, link.column) for link in links()}
    for table in db.metadata.sorted_tables:
        for column in table.columns:
            if column.name in ("patient_id", "recipient_id", "account_id"):
                assert (table.name, column.name) in walked, (table.name, column.name)


def test_no_url_is_handed_out_after_the_export_expires(clock, client, world, make):
    view, _, _ = _ready_zip(client, world.h["patient"], clock)
    clock.advance(hours=24, seconds=1)
    service.expire_exports(clock.now())
    gone = _status(client, make.headers(world.patient), view["id"]).get_json()
    assert gone["status"] == "expired" and gone["download_url"] is None


def test_simultaneous_requests_make_one_export(app, world, monkeypatch):
    """Both requests look, find none and insert: the unique index on open exports lets one in,
    and the other answers that one (202 both times, and the next request too)."""
    import threading

    from coaching.extensions import db as database

    look = service._open_export
    barrier = threading.Barrier(2)
    local = threading.local()
    looks = []

    def look_then_wait(patient_id):
        found = look(patient_id)
        looks.append(found)
        if not getattr(local, "waited", False):  # only the first look of each request waits
            local.waited = True
            barrier.wait(timeout=30)
        return found

    monkeypatch.setattr(service, "_open_export", look_then_wait)
    answers = []

    def post():
        response = app.test_client().post(f"{API}/me/export", headers=world.h["patient"])
        answers.append((response.status_code, response.get_json()))

    threads = [threading.Thread(target=post) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [status for status, _ in answers] == [202, 202], answers
    assert answers[0][1]["id"] == answers[1][1]["id"]
    # Neither saw the other's; the loser looked again after its insert failed.
    assert looks[:2] == [None, None] and len(looks) == 3 and looks[2] is not None
    database.session.expire_all()
    assert len(database.session.execute(select(DataExport)).scalars().all()) == 1
    monkeypatch.setattr(service, "_open_export", look)
    assert _start(app.test_client(), world.h["patient"])["id"] == answers[0][1]["id"]


@pytest.mark.parametrize("moment", ["build_document", "save_file"])
def test_a_zip_built_while_the_patient_erases_their_account_is_deleted(
    app, clock, client, world, monkeypatch, moment
):
    """The patient erases their account in another request while the job builds: before the ZIP
    is stored, or after it (the row is gone when the job marks it ready)."""
    import threading

    from tests.conftest import PASSWORD

    _start(client, world.h["patient"])
    storage = get_storage()
    keys = []
    erased = []

    def erase():
        with app.app_context():
            response = app.test_client().delete(
                f"{API}/me", json={"password": PASSWORD}, headers=world.h["patient"]
            )
            erased.append(response.status_code)

    def in_another_thread():
        thread = threading.Thread(target=erase)
        thread.start()
        thread.join()

    new_key = service.new_key

    def capture():
        keys.append(new_key())
        return keys[-1]

    monkeypatch.setattr(service, "new_key", capture)
    if moment == "build_document":
        build = service.build_document

        def build_then_erase(found):
            result = build(found)
            in_another_thread()
            return result

        monkeypatch.setattr(service, "build_document", build_then_erase)
    else:
        save = storage.save_file

        def save_then_erase(**kwargs):
            save(**kwargs)
            in_another_thread()

        monkeypatch.setattr(storage, "save_file", save_then_erase)

    assert service.run_pending_exports(clock.now()) == 0
    assert erased == [200]
    (key,) = keys
    db.session.expire_all()
    assert db.session.execute(select(DataExport)).scalars().all() == []
    queued = db.session.execute(select(MediaDeletion.key)).scalars().all()
    assert storage.size_of(key) is None or key in queued
    purge_pending(clock.now())
    assert storage.size_of(key) is None


def test_the_zip_of_a_worker_that_died_after_storing_it_is_deleted(clock, client, world):
    export = _start(client, world.h["patient"])
    assert service._claim_export(clock.now()) == export["id"]
    row = db.session.get(DataExport, export["id"])
    service.build_export(row)  # stored, then the worker dies before its commit
    db.session.rollback()
    row = db.session.get(DataExport, export["id"])
    first = row.media_key
    assert row.status == "running" and get_storage().size_of(first) is not None

    clock.advance(minutes=16)
    assert service.run_pending_exports(clock.now()) == 1
    db.session.expire_all()
    row = db.session.get(DataExport, export["id"])
    assert row.status == "ready" and row.media_key != first
    assert db.session.execute(select(MediaDeletion.key)).scalars().all() == [first]
    purge_pending(clock.now())
    assert get_storage().size_of(first) is None
    assert get_storage().size_of(row.media_key) is not None


def test_a_failed_attempt_leaves_no_zip_behind(clock, client, world, monkeypatch):
    export = _start(client, world.h["patient"])
    storage = get_storage()
    save = storage.save_file

    def stored_then_broken(**kwargs):
        save(**kwargs)
        raise OSError("connection reset")

    monkeypatch.setattr(storage, "save_file", stored_then_broken)
    assert service.run_pending_exports(clock.now()) == 0
    row = db.session.get(DataExport, export["id"])
    assert row.status == "pending" and row.media_key is None
    (key,) = db.session.execute(select(MediaDeletion.key)).scalars().all()
    assert storage.size_of(key) is not None
    purge_pending(clock.now())
    assert storage.size_of(key) is None


def test_a_phone_passed_on_brings_no_push_log_of_its_former_owner(clock, client, world):
    """A push token moves to the account signed in on the phone now; the pushes the log sender
    recorded for the former owner stay theirs (in their export, out of the new owner's)."""
    from coaching.notifications import service as notifications
    from coaching.notifications.dispatch import dispatch_due
    from coaching.notifications.models import PushLogEntry
    from tests.privacy.conftest import register_device

    h = world.h
    register_device(client, h["patient"], token="shared-phone")
    notifications.enqueue(
        recipient_id=world.patient.id,
        category="message",
        key=f"message:former-owner:{world.patient.id}",
        title={"nl": "Nieuw bericht", "en": "New message"},
        body={"nl": "Je hebt een bericht", "en": "You have a message"},
    )
    db.session.commit()
    assert dispatch_due() == {"claimed": 1, "sent": 1}
    register_device(client, h["other_patient"], token="shared-phone")

    _, document, _ = _ready_zip(client, h["other_patient"], clock)
    assert "push_log" not in document["records"]
    assert world.patient.id not in json.dumps(document)
    _, document, _ = _ready_zip(client, h["patient"], clock)
    assert len(document["records"]["push_log"]) == 1

    erased = client.delete(
        f"{API}/me", json={"password": "correct-horse-battery"}, headers=h["other_patient"]
    )
    assert erased.status_code == 200, erased.get_json()
    assert db.session.execute(select(PushLogEntry)).scalars().all() != []
    # The former owner's own erasure takes them.
    erased = client.delete(
        f"{API}/me", json={"password": "correct-horse-battery"}, headers=h["patient"]
    )
    assert erased.status_code == 200, erased.get_json()
    db.session.expire_all()
    assert db.session.execute(select(PushLogEntry)).scalars().all() == []


def test_the_zip_is_out_of_reach_from_its_expiry_on_before_the_job_has_run(
    clock, client, world, make
):
    from datetime import timedelta
    from urllib.parse import urlsplit

    from coaching.db import utc_iso

    view, _, _ = _ready_zip(client, world.h["patient"], clock)
    expires_at = db.session.get(DataExport, view["id"]).expires_at
    clock.set(expires_at - timedelta(minutes=1))
    late = _status(client, make.headers(world.patient), view["id"]).get_json()
    assert late["download_expires_at"] == utc_iso(expires_at)
    clock.set(expires_at)
    # The URL dies with the export, not minutes later, and none is handed out any more.
    assert_error(client.get(urlsplit(late["download_url"]).path), 403, contains="expired")
    gone = _status(client, make.headers(world.patient), view["id"]).get_json()
    assert gone["status"] == "expired" and gone["download_url"] is None
