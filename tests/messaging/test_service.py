"""Video coaching rules: conversations opened at registration, unread counts and the work-list
figures, notifications in bursts, the uptake event, cycles, the video check job, expiry,
retention and video consent withdrawal."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import delete, func, select

from coaching import clock as app_clock
from coaching.enrolment import service as enrolment
from coaching.enrolment.models import Enrollment
from coaching.extensions import db
from coaching.media import service as media_service
from coaching.media.models import MediaDeletion
from coaching.media.storage import MAX_URL_TTL_SECONDS, get_storage
from coaching.messaging import service
from coaching.messaging.models import CoachingCycle, Conversation, Message
from coaching.metrics.models import PatientActivity, UptakeEvent
from coaching.notifications.models import Notification
from tests.media.fixtures import upload_with_requests, upload_with_test_client
from tests.messaging.flows import (
    API,
    complete,
    conversation_of,
    process_videos,
    send_text,
    send_video,
    start_video,
)


def _conversation(patient) -> Conversation:
    return db.session.execute(
        select(Conversation).where(Conversation.patient_id == patient.id)
    ).scalar_one()


def _message(message_id) -> Message:
    return db.session.get(Message, message_id, populate_existing=True)


def _notifications(recipient) -> list[Notification]:
    return list(
        db.session.execute(
            select(Notification)
            .where(Notification.recipient_id == recipient.id, Notification.category == "message")
            .order_by(Notification.created_at)
        ).scalars()
    )


def _events(patient, name) -> list[UptakeEvent]:
    return list(
        db.session.execute(
            select(UptakeEvent).where(
                UptakeEvent.patient_id == patient.id, UptakeEvent.name == name
            )
        ).scalars()
    )


# --- conversations --------------------------------------------------------------------------


def test_registration_opens_the_conversation_once(world):
    conversation = _conversation(world.patient)
    assert conversation.therapist_id == world.therapist.id
    hooks = [
        h
        for h in enrolment.REGISTRATION_HOOKS
        if getattr(h, "__module__", "") == "coaching.messaging.service"
    ]
    assert len(hooks) == 1
    checks = len(media_service.UPLOAD_CHECKS)
    service._register_hooks()  # importing the module again appends nothing
    assert len(enrolment.REGISTRATION_HOOKS) == len(set(map(id, enrolment.REGISTRATION_HOOKS)))
    assert len(media_service.UPLOAD_CHECKS) == checks
    assert (
        service.ensure_conversation(patient_id=world.patient.id, therapist_id=world.therapist.id).id
        == conversation.id
    )


def test_patients_registered_before_get_their_conversation_on_first_access(h, client, world):
    db.session.execute(delete(Conversation))
    db.session.commit()
    mine = conversation_of(client, h("patient"))
    assert mine["patient_id"] == world.patient.id
    listed = client.get(f"{API}/conversations", headers=h("therapist")).get_json()
    assert {c["patient_id"] for c in listed} == {world.patient.id, world.other_patient.id}
    assert db.session.execute(select(func.count(Conversation.id))).scalar_one() == 2


# --- unread, work list, reminders -----------------------------------------------------------


def test_unread_counts_follow_what_the_receiver_has_read(h, client, world, clock):
    conversation = conversation_of(client, h("patient"))
    first = send_text(client, h("patient"), conversation["id"], "Een")
    clock.advance(minutes=1)
    send_text(client, h("patient"), conversation["id"], "Twee")
    assert service.unread_count(world.therapist) == 2
    assert service.unread_count(world.patient) == 0
    assert service.unread_count(world.owner) == 0
    assert service.unread_count(world.colleague) == 0
    client.post(f"{API}/messages/{first['id']}/read", headers=h("therapist"))
    assert service.unread_count(world.therapist) == 1


def test_worklist_extras_show_unread_waiting_and_open_cycles(h, client, world, clock):
    conversation = conversation_of(client, h("patient"))
    start = app_clock.now()
    send_text(client, h("patient"), conversation["id"], "Mag ik weer fietsen?")
    clock.advance(hours=2)
    send_text(client, h("patient"), conversation["id"], "Graag advies")
    cycle = client.post(
        f"{API}/conversations/{conversation['id']}/cycles",
        json={"activity": "Fietsen naar het werk"},
        headers=h("patient"),
    ).get_json()
    ids = [world.patient.id, world.other_patient.id, world.foreign_patient.id]
    extras = service.worklist_extras(therapist=world.therapist, patient_ids=ids)
    assert set(extras) == set(ids)
    mine = extras[world.patient.id]
    assert mine["unread_messages"] == 2
    assert mine["awaiting_reply_since"] == start
    assert mine["open_cycles"] == [
        {
            "id": cycle["id"],
            "activity": "Fietsen naar het werk",
            "phase": "requested",
            "waiting_on": "therapist",
            "waiting_since": app_clock.now(),
        }
    ]
    assert extras[world.other_patient.id] == {
        "unread_messages": 0,
        "awaiting_reply_since": None,
        "open_cycles": [],
    }
    # Another therapist's patient: nothing leaks.
    assert extras[world.foreign_patient.id]["open_cycles"] == []
    clock.advance(hours=1)
    send_text(
        client, h("therapist"), conversation["id"], "Ja, rustig opbouwen", cycle_id=cycle["id"]
    )
    answered = service.worklist_extras(therapist=world.therapist, patient_ids=ids)
    assert answered[world.patient.id]["awaiting_reply_since"] is None
    assert answered[world.patient.id]["open_cycles"][0]["waiting_on"] == "patient"
    clock.advance(hours=1)
    send_text(client, h("patient"), conversation["id"], "Gelukt!")
    assert (
        service.worklist_extras(therapist=world.therapist, patient_ids=ids)[world.patient.id][
            "awaiting_reply_since"
        ]
        == app_clock.now()
    )
    assert service.worklist_extras(therapist=world.therapist, patient_ids=[]) == {}


def test_messages_awaiting_reply_lists_old_unanswered_patient_messages(
    h, client, world, clock, sample_videos
):
    conversation = conversation_of(client, h("patient"))
    sent = app_clock.now()
    send_text(client, h("patient"), conversation["id"], "Vraag")
    clock.advance(hours=40)
    assert service.messages_awaiting_reply(app_clock.now() - timedelta(hours=36)) == [
        (world.therapist.id, world.patient.id, sent)
    ]
    assert service.messages_awaiting_reply(sent - timedelta(seconds=1)) == []
    # A reply still uploading does not answer yet; once it is ready it does.
    path, content_type = sample_videos["mp4"]
    reply = start_video(client, h("therapist"), conversation["id"], path, content_type)
    assert len(service.messages_awaiting_reply(app_clock.now())) == 1
    upload_with_test_client(client, reply["upload"], path)
    complete(client, h("therapist"), reply["id"])
    process_videos()
    assert service.messages_awaiting_reply(app_clock.now()) == []


# --- notifications, uptake, activity ------------------------------------------------------


def test_several_messages_in_a_row_make_one_notification(h, client, world, clock):
    conversation = conversation_of(client, h("patient"))
    first = send_text(client, h("patient"), conversation["id"], "Een")
    clock.advance(minutes=1)
    send_text(client, h("patient"), conversation["id"], "Twee")
    notes = _notifications(world.therapist)
    assert len(notes) == 1
    assert notes[0].data == {
        "link": f"/conversations/{conversation['id']}",
        "conversation_id": conversation["id"],
    }
    # No content travels through the push services.
    assert "Een" not in notes[0].body_nl + notes[0].body_en + notes[0].title_nl
    clock.advance(minutes=1)
    send_text(client, h("patient"), conversation["id"], "Drie")
    assert len(_notifications(world.therapist)) == 1  # still the same burst
    clock.advance(minutes=1)
    client.post(f"{API}/messages/{first['id']}/read", headers=h("therapist"))
    clock.advance(minutes=1)
    send_text(client, h("patient"), conversation["id"], "Vier")
    assert len(_notifications(world.therapist)) == 2  # the therapist looked in: a new burst
    send_text(client, h("therapist"), conversation["id"], "Antwoord")
    assert len(_notifications(world.patient)) == 1
    clock.advance(minutes=1)
    send_text(client, h("patient"), conversation["id"], "Vijf")
    assert len(_notifications(world.therapist)) == 3  # after an answer a new burst starts


def test_first_video_exchanged_when_a_video_is_answered(h, client, world, clock, sample_videos):
    conversation = conversation_of(client, h("patient"))
    send_text(client, h("patient"), conversation["id"], "Tekst")
    send_text(client, h("therapist"), conversation["id"], "Tekst terug")
    assert _events(world.patient, "first_video_exchanged") == []
    path, content_type = sample_videos["mp4"]
    send_video(client, h("patient"), conversation["id"], path, content_type)
    assert _events(world.patient, "first_video_exchanged") == []
    clock.advance(hours=3)
    send_text(client, h("therapist"), conversation["id"], "Mooi gedaan")
    events = _events(world.patient, "first_video_exchanged")
    assert len(events) == 1 and events[0].occurred_at == app_clock.now()
    clock.advance(hours=1)
    send_video(client, h("therapist"), conversation["id"], path, content_type)
    send_text(client, h("patient"), conversation["id"], "Dank")
    assert len(_events(world.patient, "first_video_exchanged")) == 1


def test_patient_messages_count_as_activity(h, client, world):
    conversation = conversation_of(client, h("patient"))
    send_text(client, h("patient"), conversation["id"], "Hoi")
    reply = send_text(client, h("therapist"), conversation["id"], "Hoi terug")
    client.post(f"{API}/messages/{reply['id']}/read", headers=h("patient"))
    kinds = db.session.execute(
        select(PatientActivity.kind).where(PatientActivity.patient_id == world.patient.id)
    ).scalars()
    assert sorted(kinds) == ["message_read", "message_sent"]
    enrollment = enrolment.enrollment_for(world.patient.id)
    db.session.refresh(enrollment)
    assert enrollment.last_active_at == app_clock.now()


# --- cycles ---------------------------------------------------------------------------------


def test_a_cycle_moves_between_the_two_sides_until_the_therapist_closes_it(h, client, world, clock):
    conversation = conversation_of(client, h("patient"))
    ask = send_text(client, h("patient"), conversation["id"], "Ik wil mijn kleinkind optillen")
    cycle = client.post(
        f"{API}/conversations/{conversation['id']}/cycles",
        json={"activity": "Kleinkind optillen", "message_id": ask["id"]},
        headers=h("patient"),
    ).get_json()
    assert (cycle["phase"], cycle["waiting_on"]) == ("requested", "therapist")
    assert _message(ask["id"]).cycle_id == cycle["id"]
    clock.advance(hours=5)
    answer = send_text(
        client, h("therapist"), conversation["id"], "Probeer dit", reply_to=ask["id"]
    )
    assert answer["cycle_id"] == cycle["id"]  # a reply joins the cycle of what it answers
    row = db.session.get(CoachingCycle, cycle["id"], populate_existing=True)
    assert (row.phase, row.waiting_since) == ("answered", app_clock.now())
    clock.advance(days=2)
    send_text(client, h("patient"), conversation["id"], "Het ging!", reply_to=answer["id"])
    row = db.session.get(CoachingCycle, cycle["id"], populate_existing=True)
    assert (row.phase, service.waiting_on(row)) == ("attempted", "therapist")
    closed = client.patch(
        f"{API}/cycles/{cycle['id']}",
        json={"status": "closed", "outcome": "Tilt weer met gebogen knieën"},
        headers=h("therapist"),
    ).get_json()
    assert closed["status"] == "closed" and closed["waiting_on"] is None
    assert closed["closed_at"] == closed["updated_at"]
    late = client.post(
        f"{API}/conversations/{conversation['id']}/messages",
        json={"kind": "text", "body": "Nog iets", "cycle_id": cycle["id"]},
        headers=h("patient"),
    )
    assert late.status_code == 409
    # A reply to a message of a closed cycle simply starts outside it.
    free = send_text(client, h("patient"), conversation["id"], "Los", reply_to=answer["id"])
    assert free["cycle_id"] is None


# --- the video check job ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "status", "code"),
    [
        ("mp4", "ready", None),
        ("mov", "ready", None),
        ("webm_vp8", "ready", None),
        ("webm_vp9", "ready", None),
        ("webm_live", "ready", None),
        ("junk", "failed", "not_a_video"),
        ("truncated_mp4", "failed", "truncated"),
        ("truncated_webm", "failed", "truncated"),
        ("audio_only", "failed", "no_video_stream"),
    ],
)
def test_each_upload_ends_ready_or_failed_with_a_reason(
    h, client, world, sample_videos, name, status, code
):
    path, content_type = sample_videos[name]
    conversation = conversation_of(client, h("patient"))
    message = send_video(client, h("patient"), conversation["id"], path, content_type)
    assert (message["status"], message["failure_code"]) == (status, code)
    row = _message(message["id"])
    storage = get_storage()
    if status == "ready":
        assert message["duration_s"] == pytest.approx(2.0, abs=0.15)
        assert message["media"] == "stored"
        assert storage.path(row.thumbnail_key).read_bytes()[:2] == b"\xff\xd8"
        assert len(_notifications(world.therapist)) == 1
    else:
        assert message["failure_reason"]  # a sentence the app can show, in Dutch here
        assert message["media"] == "deleted"
        assert row.sent_at is None and _notifications(world.therapist) == []
        service.purge_deleted_media(app_clock.now())
        assert storage.size_of(row.media_key) is None


def test_a_video_over_the_maximum_duration_fails(h, client, world, sample_videos, app, monkeypatch):
    monkeypatch.setitem(app.config, "MAX_VIDEO_SECONDS", 5)
    path, content_type = sample_videos["long_mp4"]
    conversation = conversation_of(client, h("patient"))
    message = send_video(client, h("patient"), conversation["id"], path, content_type)
    assert (message["status"], message["failure_code"]) == ("failed", "too_long")
    assert "5 minuten" not in message["failure_reason"] and "1 minuten" in message["failure_reason"]


def test_completing_twice_is_harmless_and_the_job_checks_once(h, client, world, sample_videos):
    path, content_type = sample_videos["mp4"]
    conversation = conversation_of(client, h("patient"))
    message = start_video(client, h("patient"), conversation["id"], path, content_type)
    upload_with_test_client(client, message["upload"], path)
    first = complete(client, h("patient"), message["id"])
    second = complete(client, h("patient"), message["id"])
    assert first.get_json()["status"] == second.get_json()["status"] == "processing"
    assert process_videos() == 1
    assert process_videos() == 0
    third = complete(client, h("patient"), message["id"])
    assert third.status_code == 200 and third.get_json()["status"] == "ready"


def test_a_size_that_does_not_match_fails_at_complete(h, client, world, sample_videos):
    path, content_type = sample_videos["mp4"]
    conversation = conversation_of(client, h("patient"))
    response = client.post(
        f"{API}/conversations/{conversation['id']}/messages",
        json={"kind": "video", "content_type": content_type, "size_bytes": 100},
        headers=h("patient"),
    ).get_json()
    # Local storage also refuses the wrong length; put the file there behind its back.
    key = _message(response["id"]).media_key
    with get_storage().writer(key) as out:
        out.write(path.read_bytes())
    done = complete(client, h("patient"), response["id"]).get_json()
    assert (done["status"], done["failure_code"]) == ("failed", "size_mismatch")
    assert db.session.execute(select(MediaDeletion.key)).scalars().all() == [key]


def test_the_check_leases_each_video_to_one_process(
    h, client, world, sample_videos, clock, monkeypatch
):
    path, content_type = sample_videos["mp4"]
    conversation = conversation_of(client, h("patient"))
    message = start_video(client, h("patient"), conversation["id"], path, content_type)
    upload_with_test_client(client, message["upload"], path)
    complete(client, h("patient"), message["id"])
    assert service._claim_next_video(app_clock.now()) == message["id"]
    assert service._claim_next_video(app_clock.now()) is None  # held by the first process
    clock.advance(minutes=11)  # that process died: the lease runs out
    assert service._claim_next_video(app_clock.now()) == message["id"]
    assert _message(message["id"]).processing_attempts == 2


def test_a_store_failure_is_retried_then_gives_up(
    h, client, world, sample_videos, clock, monkeypatch
):
    path, content_type = sample_videos["mp4"]
    conversation = conversation_of(client, h("patient"))
    message = start_video(client, h("patient"), conversation["id"], path, content_type)
    upload_with_test_client(client, message["upload"], path)
    complete(client, h("patient"), message["id"])
    storage = get_storage()

    def broken(key):
        raise OSError("store unreachable")

    monkeypatch.setattr(storage, "fetch", broken)
    for _ in range(service.MAX_PROCESSING_ATTEMPTS):
        assert process_videos() == 1
        assert _message(message["id"]).status == "processing"
        clock.advance(minutes=11)
    process_videos()
    row = _message(message["id"])
    assert (row.status, row.failure_reason) == ("failed", "processing_error")


def test_consent_withdrawn_during_the_check_wins(h, client, world, sample_videos, monkeypatch):
    path, content_type = sample_videos["mp4"]
    conversation = conversation_of(client, h("patient"))
    message = start_video(client, h("patient"), conversation["id"], path, content_type)
    upload_with_test_client(client, message["upload"], path)
    complete(client, h("patient"), message["id"])
    real_inspect = service.inspect_video

    def inspect_while_patient_withdraws(*args, **kwargs):
        info = real_inspect(*args, **kwargs)
        service.withdraw_video_consent(patient=world.patient)
        db.session.commit()
        return info

    monkeypatch.setattr(service, "inspect_video", inspect_while_patient_withdraws)
    process_videos()
    row = _message(message["id"])
    assert (row.status, row.failure_reason, row.media_state) == (
        "failed",
        "consent_withdrawn",
        "deleted",
    )
    reasons = db.session.execute(select(MediaDeletion.reason)).scalars().all()
    assert sorted(reasons) == ["consent_withdrawn", "orphan_thumbnail"]


def _uploaded_and_completed(client, headers, conversation_id, path, content_type) -> dict:
    message = start_video(client, headers, conversation_id, path, content_type)
    assert upload_with_test_client(client, message["upload"], path).status_code == 204
    assert complete(client, headers, message["id"]).status_code == 200
    return message


@pytest.mark.parametrize("when", ["after_thumbnail", "during_rejection"])
def test_erasure_during_the_check_leaves_nothing_and_the_run_goes_on(
    h, client, world, sample_videos, clock, monkeypatch, when
):
    from coaching.accounts.models import Account
    from coaching.privacy.service import erase_patient

    good, content_type = sample_videos["mp4"]
    path = good if when == "after_thumbnail" else sample_videos["junk"][0]
    conversation = conversation_of(client, h("patient"))
    erased = _uploaded_and_completed(client, h("patient"), conversation["id"], path, content_type)
    video_key = _message(erased["id"]).media_key
    clock.advance(seconds=1)  # completed later: checked after the erased patient's video
    other = conversation_of(client, h("other_patient"))
    kept = _uploaded_and_completed(client, h("other_patient"), other["id"], good, content_type)
    storage, real_inspect, thumbnails = get_storage(), service.inspect_video, []
    real_save = storage.save_file

    def erase():
        patient = db.session.get(Account, world.patient.id)
        erase_patient(patient=patient, requested_by=patient, destroy_medical_record=True)
        db.session.commit()

    def inspect_then_erase(*args, **kwargs):
        if not thumbnails and when == "during_rejection":
            thumbnails.append(None)
            erase()
        return real_inspect(*args, **kwargs)

    def save_then_erase(*, key, path, content_type):
        real_save(key=key, path=path, content_type=content_type)
        if not thumbnails:
            thumbnails.append(key)
            erase()

    monkeypatch.setattr(service, "inspect_video", inspect_then_erase)
    monkeypatch.setattr(storage, "save_file", save_then_erase)
    assert process_videos() == 2  # the erased patient's video did not stop the run
    assert db.session.get(Message, erased["id"]) is None
    assert _message(kept["id"]).status == "ready"
    queued = set(db.session.execute(select(MediaDeletion.key)).scalars())
    assert video_key in queued
    if when == "after_thumbnail":
        assert thumbnails[0] in queued
    service.purge_deleted_media(app_clock.now())
    assert storage.size_of(video_key) is None
    if when == "after_thumbnail":
        assert storage.size_of(thumbnails[0]) is None


def test_each_claim_is_leased_from_the_time_it_is_made(
    h, client, world, sample_videos, clock, monkeypatch
):
    path, content_type = sample_videos["mp4"]
    conversation = conversation_of(client, h("patient"))
    first, second = (
        _uploaded_and_completed(client, h("patient"), conversation["id"], path, content_type)
        for _ in range(2)
    )
    real_inspect, seen = service.inspect_video, []

    def slow_then_race(*args, **kwargs):
        info = real_inspect(*args, **kwargs)
        if not seen:
            clock.advance(minutes=11)  # a long check: longer than the lease
            seen.append(None)
        else:
            # Another scheduler process looks for work while the second video is checked.
            seen.append(service._claim_next_video(app_clock.now()))
        return info

    monkeypatch.setattr(service, "inspect_video", slow_then_race)
    started = app_clock.now()
    assert service.process_pending_videos(started) == 2
    assert seen == [None, None]  # the second video's lease was fresh: nobody else took it
    late = _message(second["id"])
    assert late.processing_attempts == 1
    # Sent when its check ended, not when the run began.
    assert late.sent_at == app_clock.now() == started + timedelta(minutes=11)
    assert _message(first["id"]).sent_at == late.sent_at
    assert _conversation(world.patient).last_message_at == late.sent_at


# --- expiry, retention, consent withdrawal, purge ------------------------------------------------


def test_uploads_never_completed_expire_after_a_day(h, client, world, sample_videos, clock):
    path, content_type = sample_videos["mp4"]
    conversation = conversation_of(client, h("patient"))
    uploaded = start_video(client, h("patient"), conversation["id"], path, content_type)
    upload_with_test_client(client, uploaded["upload"], path)  # arrived, never completed
    never = start_video(client, h("patient"), conversation["id"], path, content_type)
    clock.advance(hours=23, minutes=59)
    assert service.expire_stale_uploads(app_clock.now()) == 0
    clock.advance(minutes=1)
    assert service.expire_stale_uploads(app_clock.now()) == 2
    for message in (uploaded, never):
        row = _message(message["id"])
        assert (row.status, row.failure_reason, row.media_state) == (
            "failed",
            "upload_expired",
            "deleted",
        )
    key = _message(uploaded["id"]).media_key
    assert get_storage().size_of(key) is not None
    assert service.purge_deleted_media(app_clock.now()) == 2  # deleting a missing one is fine
    assert get_storage().size_of(key) is None
    late = complete(client, h("patient"), never["id"]).get_json()
    assert late["status"] == "failed"


def test_videos_expire_after_the_programme_ends_plus_the_retention(
    h, client, world, sample_videos, clock
):
    path, content_type = sample_videos["mp4"]
    conversation = conversation_of(client, h("patient"))
    message = send_video(client, h("patient"), conversation["id"], path, content_type)
    other = conversation_of(client, h("other_patient"))
    kept = send_video(client, h("other_patient"), other["id"], path, content_type)
    enrollment = db.session.execute(
        select(Enrollment).where(Enrollment.patient_id == world.patient.id)
    ).scalar_one()
    enrollment.status, enrollment.completed_at = "completed", app_clock.now()
    db.session.commit()
    clock.advance(days=89)
    assert service.apply_media_retention(app_clock.now()) == 0
    clock.advance(days=1)
    assert service.apply_media_retention(app_clock.now()) == 1
    row = _message(message["id"])
    assert (row.status, row.media_state) == ("ready", "expired")
    service.purge_deleted_media(app_clock.now())
    assert get_storage().size_of(row.media_key) is None
    assert get_storage().size_of(row.thumbnail_key) is None
    listed = client.get(
        f"{API}/conversations/{conversation['id']}/messages", headers=h("therapist")
    ).get_json()
    assert listed[0]["media"] == "expired"
    assert _message(kept["id"]).media_state == "stored"


def test_videos_of_a_patient_who_stopped_expire_after_the_planned_end_and_their_last_visit(
    h, client, world, sample_videos, clock
):
    from coaching.metrics import service as metrics

    path, content_type = sample_videos["mp4"]
    conversation = conversation_of(client, h("patient"))
    stopped = send_video(client, h("patient"), conversation["id"], path, content_type)
    other = conversation_of(client, h("other_patient"))
    coming_back = send_video(client, h("other_patient"), other["id"], path, content_type)
    # Nobody completes the programme; the second patient comes back on day 150.
    clock.advance(days=150)
    metrics.record_activity(patient_id=world.other_patient.id, kind="app_opened")
    db.session.commit()
    clock.advance(days=30)  # day 180: the planned end (day 91) plus 89 days
    assert service.apply_media_retention(app_clock.now()) == 0
    clock.advance(days=1)  # day 181
    assert service.apply_media_retention(app_clock.now()) == 1
    assert _message(stopped["id"]).media_state == "expired"
    assert _message(coming_back["id"]).media_state == "stored"
    # The therapist writes on day 181: the conversation is alive again until day 271.
    send_text(client, h("therapist"), other["id"], "Hoe gaat het nu?")
    clock.advance(days=59)  # day 240: 90 days after the visit, but the message is newer
    assert service.apply_media_retention(app_clock.now()) == 0
    clock.advance(days=31)  # day 271: 90 days after the message
    assert service.apply_media_retention(app_clock.now()) == 1
    assert _message(coming_back["id"]).media_state == "expired"


def test_withdrawing_video_consent_deletes_every_video_and_stops_new_ones(
    h, client, world, sample_videos
):
    path, content_type = sample_videos["mp4"]
    conversation = conversation_of(client, h("patient"))
    mine = send_video(client, h("patient"), conversation["id"], path, content_type)
    theirs = send_video(client, h("therapist"), conversation["id"], path, content_type)
    pending = start_video(client, h("patient"), conversation["id"], path, content_type)
    assert service.withdraw_video_consent(patient=world.patient) == 2
    db.session.commit()
    assert not service.is_video_allowed(world.patient.id)
    for message, state in ((mine, "deleted"), (theirs, "deleted"), (pending, "deleted")):
        assert _message(message["id"]).media_state == state
    assert _message(pending["id"]).failure_reason == "consent_withdrawn"
    keys = [_message(m["id"]).media_key for m in (mine, theirs)]
    service.purge_deleted_media(app_clock.now())
    assert all(get_storage().size_of(k) is None for k in keys)
    for headers in (h("patient"), h("therapist")):
        refused = client.post(
            f"{API}/conversations/{conversation['id']}/messages",
            json={"kind": "video", "content_type": content_type, "size_bytes": 10},
            headers=headers,
        )
        assert refused.status_code == 403 and "consent" in refused.get_json()["message"]
    send_text(client, h("patient"), conversation["id"], "Tekst mag nog")


def _key_of(message: dict) -> str:
    return _message(message["id"]).media_key


def _queued(key: str) -> int:
    return db.session.execute(
        select(func.count(MediaDeletion.id)).where(MediaDeletion.key == key)
    ).scalar_one()


@pytest.mark.parametrize("how", ["consent_withdrawn", "erased"])
def test_an_upload_url_handed_out_before_the_video_was_let_go_stores_nothing(
    h, client, world, sample_videos, how
):
    from coaching.privacy.service import erase_patient

    path, content_type = sample_videos["mp4"]
    conversation = conversation_of(client, h("patient"))
    message = start_video(client, h("patient"), conversation["id"], path, content_type)
    key = _key_of(message)
    if how == "erased":
        erase_patient(patient=world.patient, requested_by=world.patient)
        db.session.commit()
    else:
        withdrawn = client.delete(
            f"{API}/me/consent/video", json={"confirm": True}, headers=h("patient")
        )
        assert withdrawn.status_code == 200
    service.purge_deleted_media(app_clock.now())  # nothing stored yet: nothing to delete
    late = upload_with_test_client(client, message["upload"], path)  # the URL still works
    assert late.status_code == 409 and "no longer wanted" in late.get_json()["message"]
    assert get_storage().size_of(key) is None


def test_an_upload_after_its_time_passed_stores_nothing(h, client, world, sample_videos, clock):
    path, content_type = sample_videos["mp4"]
    conversation = conversation_of(client, h("patient"))
    message = start_video(client, h("patient"), conversation["id"], path, content_type)
    clock.advance(hours=23, minutes=55)
    renewed = client.post(f"{API}/messages/{message['id']}/upload", headers=h("patient"))
    assert renewed.status_code == 200, renewed.get_json()
    clock.advance(minutes=5)  # the upload's day is over; the renewed URL still lives
    late = upload_with_test_client(client, renewed.get_json()["upload"], path)
    assert late.status_code == 409
    assert get_storage().size_of(_key_of(message)) is None


def test_a_deletion_is_repeated_until_no_upload_url_can_work(
    h, client, world, sample_videos, clock
):
    path, content_type = sample_videos["mp4"]
    conversation = conversation_of(client, h("patient"))
    message = start_video(client, h("patient"), conversation["id"], path, content_type)
    key = _key_of(message)
    service.withdraw_video_consent(patient=world.patient)
    db.session.commit()
    assert service.purge_deleted_media(app_clock.now()) == 1  # nothing there yet
    assert _queued(key) == 1
    # A presigned POST to the store is still valid: the object appears after that purge.
    clock.advance(seconds=MAX_URL_TTL_SECONDS - 60)
    with get_storage().writer(key) as out:
        out.write(path.read_bytes())
    service.purge_deleted_media(app_clock.now())
    assert get_storage().size_of(key) is None  # caught before the window is over
    assert _queued(key) == 1
    clock.advance(seconds=60)  # every upload URL of the key has expired now
    service.purge_deleted_media(app_clock.now())
    assert _queued(key) == 0


def test_a_late_upload_to_s3_is_deleted(h, client, world, sample_videos, s3):
    path, content_type = sample_videos["mp4"]
    conversation = conversation_of(client, h("patient"))
    message = start_video(client, h("patient"), conversation["id"], path, content_type)
    assert message["upload"]["url"].startswith(s3.server.url)
    key = _key_of(message)
    service.withdraw_video_consent(patient=world.patient)
    db.session.commit()
    service.purge_deleted_media(app_clock.now())
    # The store cannot ask us: the presigned POST takes the bytes until it expires.
    late = upload_with_requests(message["upload"], path)
    assert late.status_code in (200, 204), late.text
    assert get_storage().size_of(key) == path.stat().st_size
    service.purge_deleted_media(app_clock.now())
    assert get_storage().size_of(key) is None


def test_a_failed_deletion_stays_queued(h, client, world, sample_videos, clock, monkeypatch):
    path, content_type = sample_videos["junk"]
    conversation = conversation_of(client, h("patient"))
    send_video(client, h("patient"), conversation["id"], path, content_type)
    storage = get_storage()

    def unreachable(key):
        raise OSError("store unreachable")

    monkeypatch.setattr(storage, "delete", unreachable)
    assert service.purge_deleted_media(app_clock.now()) == 0
    row = db.session.execute(select(MediaDeletion)).scalar_one()
    assert row.attempts == 1 and "unreachable" in row.last_error
    monkeypatch.undo()
    clock.advance(seconds=MAX_URL_TTL_SECONDS)  # no upload URL of the key works any more
    assert service.purge_deleted_media(app_clock.now()) == 1
    assert db.session.execute(select(func.count(MediaDeletion.id))).scalar_one() == 0
