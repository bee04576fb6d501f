"""Small steps of the video-coaching flow, shared by the messaging tests."""

from __future__ import annotations

from pathlib import Path

from coaching import clock
from coaching.messaging import service
from tests.media.fixtures import upload_with_test_client

API = "/api/v1"


def conversation_of(client, headers) -> dict:
    """Returns the caller's first conversation (a patient has exactly one)."""
    response = client.get(f"{API}/conversations", headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()[0]


def send_text(client, headers, conversation_id: str, body: str = "Hallo", **extra) -> dict:
    response = client.post(
        f"{API}/conversations/{conversation_id}/messages",
        json={"kind": "text", "body": body, **extra},
        headers=headers,
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def start_video(client, headers, conversation_id: str, path: Path, content_type: str, **extra):
    response = client.post(
        f"{API}/conversations/{conversation_id}/messages",
        json={
            "kind": "video",
            "content_type": content_type,
            "size_bytes": path.stat().st_size,
            **extra,
        },
        headers=headers,
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def complete(client, headers, message_id: str):
    return client.post(f"{API}/messages/{message_id}/complete", headers=headers)


def process_videos() -> int:
    """Run the scheduler's video check once, as `scheduler tick` would."""
    return service.process_pending_videos(clock.now())


def send_video(client, headers, conversation_id: str, path: Path, content_type: str, **extra):
    """Start, upload, complete and check a video; returns the message as the sender sees it."""
    message = start_video(client, headers, conversation_id, path, content_type, **extra)
    uploaded = upload_with_test_client(client, message["upload"], path)
    assert uploaded.status_code == 204, uploaded.get_data(as_text=True)
    done = complete(client, headers, message["id"])
    assert done.status_code == 200, done.get_json()
    process_videos()
    response = client.get(f"{API}/messages/{message['id']}", headers=headers)
    assert response.status_code == 200
    return response.get_json()
