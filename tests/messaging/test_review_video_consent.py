"""Accepting the consent again, or a new version of it, keeps what the patient said about video
coaching unless they say it again: API.md's body is `{version}`, and a patient who switched video
off (every stored video deleted) must not find it switched back on by the app's next acceptance."""

from __future__ import annotations

import pytest

from coaching.enrolment import service as enrolment
from tests.conftest import assert_error
from tests.messaging.flows import API, conversation_of

VIDEO = {"kind": "video", "content_type": "video/mp4", "size_bytes": 1000}


@pytest.fixture
def consent_dir(tmp_path, monkeypatch):
    """Consent documents the test writes (1.0 now; 2.0 when the test publishes it)."""
    monkeypatch.setattr(enrolment, "CONSENT_DIR", tmp_path)
    enrolment._consent_documents.cache_clear()
    _publish(tmp_path, "1.0")
    yield tmp_path
    enrolment._consent_documents.cache_clear()


def _publish(folder, version: str) -> None:
    for locale in ("nl", "en"):
        (folder / f"{version}.{locale}.md").write_text(f"{locale} text {version}", "utf-8")
    enrolment._consent_documents.cache_clear()


def _accept(client, headers, **body):
    response = client.post(
        f"{API}/me/consent",
        json={"version": enrolment.current_consent_version(), **body},
        headers=headers,
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def _video(client, headers) -> bool:
    return client.get(f"{API}/me/consent/video", headers=headers).get_json()["video"]


def _switch_video_off(client, headers) -> None:
    withdrawn = client.delete(f"{API}/me/consent/video", json={"confirm": True}, headers=headers)
    assert withdrawn.status_code == 200, withdrawn.get_json()


def test_accepting_again_keeps_video_switched_off(client, world, consent_dir):
    patient = world.h["patient"]
    _accept(client, patient)
    _switch_video_off(client, patient)
    assert _accept(client, patient)["video"] is False  # e.g. the app's retry, a second device
    assert _video(client, patient) is False
    conversation = conversation_of(client, patient)
    sent = client.post(
        f"{API}/conversations/{conversation['id']}/messages",
        json=VIDEO,
        headers=world.h["therapist"],
    )
    assert_error(sent, 403)
    # Said again, it changes.
    assert _accept(client, patient, video=True)["video"] is True
    assert _video(client, patient) is True


def test_a_new_version_keeps_what_the_patient_said_about_video(client, world, consent_dir):
    _accept(client, world.h["patient"])
    _accept(client, world.h["other_patient"])
    _switch_video_off(client, world.h["patient"])
    _publish(consent_dir, "2.0")
    assert_error(client.get(f"{API}/me/today", headers=world.h["patient"]), 403, contains="consent")

    assert _accept(client, world.h["patient"])["video"] is False
    assert _video(client, world.h["patient"]) is False
    assert _accept(client, world.h["other_patient"])["video"] is True


def test_a_first_acceptance_covers_video_unless_the_patient_says_no(client, make):
    yes, no = make.patient(consented=False), make.patient(consented=False)
    assert _accept(client, make.headers(yes))["video"] is True
    assert _accept(client, make.headers(no), video=False)["video"] is False


@pytest.mark.parametrize("video", ["no", "yes", 0, 1, 1.0, "false"])
def test_video_takes_json_true_or_false_only(client, make, video):
    # As every boolean of a request body (StrictBoolean): marshmallow read "no" and 0 as false.
    patient = make.patient(consented=False)
    response = client.post(
        f"{API}/me/consent",
        json={"version": enrolment.current_consent_version(), "video": video},
        headers=make.headers(patient),
    )
    assert_error(response, 422, "video")
    assert enrolment.current_acceptance(patient.id) is None
