"""Fixtures of the privacy tests: a patient with data in every domain, made through the API."""

from __future__ import annotations

import io
import json
import zipfile
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest

from coaching import clock
from coaching.extensions import db
from tests.media.fixtures import (  # noqa: F401
    s3,
    s3_server,
    sample_videos,
    upload_with_requests,
    upload_with_test_client,
)
from tests.messaging.flows import complete, conversation_of, process_videos, send_text, start_video

API = "/api/v1"
NRS = {"back_pain": 6, "leg_pain": 3}


def submit(client, headers, key="nrs", answers=None):
    response = client.post(
        f"{API}/me/questionnaires/{key}/responses",
        json={"answers": answers or NRS},
        headers=headers,
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def register_device(client, headers, token="device-token-1"):
    response = client.post(
        f"{API}/me/devices", json={"token": token, "platform": "android"}, headers=headers
    )
    assert response.status_code in (200, 201), response.get_json()
    return response.get_json()["id"]


def send_video(client, headers, conversation_id, path, content_type) -> dict:
    """Start, upload (to local storage or the loopback S3), complete and check a video."""
    message = start_video(client, headers, conversation_id, path, content_type)
    upload = message["upload"]
    if urlsplit(upload["url"]).path.startswith("/media/"):
        uploaded = upload_with_test_client(client, upload, path)
    else:
        uploaded = upload_with_requests(upload, path)
    assert uploaded.status_code in (200, 204), uploaded
    assert complete(client, headers, message["id"]).status_code == 200
    process_videos()
    return message


@pytest.fixture
def content(app):
    """The programme in modules/, loaded (ask for it before `world`: patients enrol in it)."""
    from coaching.content import service

    report, _ = service.load_from_disk(app.config["MODULES_DIR"])
    assert report.ok
    db.session.commit()


def first_lesson(client, headers) -> dict:
    programme = client.get(f"{API}/me/programme", headers=headers).get_json()
    lesson_id = programme["modules"][0]["lessons"][0]["id"]
    return client.get(f"{API}/lessons/{lesson_id}", headers=headers).get_json()


@pytest.fixture
def rich(client, world, sample_videos):  # noqa: F811
    """The world's patient with a video each way, a text, a questionnaire, a device, a
    notification and a therapist's look at their outcomes; the other patient with a text."""
    from coaching.notifications import service as notifications

    h = world.h
    path, content_type = sample_videos["mp4"]
    conversation = conversation_of(client, h["patient"])
    patient_video = send_video(client, h["patient"], conversation["id"], path, content_type)
    therapist_video = send_video(client, h["therapist"], conversation["id"], path, content_type)
    text = send_text(client, h["patient"], conversation["id"], body="Mijn rug doet pijn")
    other_conversation = conversation_of(client, h["other_patient"])
    send_text(client, h["other_patient"], other_conversation["id"], body="Geheim van een ander")
    device_id = register_device(client, h["patient"])
    notifications.enqueue(
        recipient_id=world.patient.id,
        category="practice",
        key=f"practice:{world.patient.id}:test",
        title={"nl": "Oefenen", "en": "Practise"},
        body={"nl": "Even oefenen?", "en": "Practise a bit?"},
        data={"link": "/today"},
        scheduled_for=clock.now(),
    )
    db.session.commit()
    return SimpleNamespace(
        conversation=conversation,
        patient_video=patient_video,
        therapist_video=therapist_video,
        text=text,
        device_id=device_id,
        video_bytes=path.read_bytes(),
    )


def download(client, url: str) -> bytes:
    """Fetch a local-storage URL through the test client (or a presigned S3 URL over HTTP)."""
    parts = urlsplit(url)
    if parts.path.startswith("/media/"):
        with client.get(parts.path) as response:
            assert response.status_code == 200, response.get_data(as_text=True)
            return response.get_data()
    import requests

    response = requests.get(url, timeout=30)
    assert response.status_code == 200, response.text
    return response.content


def read_zip(data: bytes) -> tuple[dict, dict[str, bytes]]:
    """Returns (data.json, {name: bytes of every other member})."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = archive.namelist()
        document = json.loads(archive.read("data.json"))
        files = {name: archive.read(name) for name in names if name != "data.json"}
    return document, files
