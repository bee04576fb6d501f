"""Fixtures shared by the media and messaging tests: real small media files made with PyAV, the
app served over real HTTP on loopback, and an S3-protocol server on loopback.

Imported by `tests/media/conftest.py` and `tests/messaging/conftest.py`.
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
from werkzeug.serving import make_server

from coaching.media.samples import write_audio_only, write_video
from tests.media.s3server import ACCESS_KEY, REGION, SECRET_KEY, PolicyCheckingMotoServer


def _cut(source: Path, target: Path, fraction: float) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * fraction)])
    return target


@pytest.fixture(scope="session")
def sample_videos(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """Returns name → (path, declared content type) of real and broken media files."""
    folder = tmp_path_factory.mktemp("samples")
    files = {
        "mp4": (write_video(folder / "h264.mp4", content_type="video/mp4"), "video/mp4"),
        "mp4_audio": (
            write_video(folder / "h264-aac.mp4", content_type="video/mp4", with_audio=True),
            "video/mp4",
        ),
        "mov": (
            write_video(folder / "h264.mov", content_type="video/quicktime"),
            "video/quicktime",
        ),
        "webm_vp8": (write_video(folder / "vp8.webm", content_type="video/webm"), "video/webm"),
        "webm_vp9": (
            write_video(folder / "vp9.webm", content_type="video/webm", codec="libvpx-vp9"),
            "video/webm",
        ),
        "webm_live": (
            write_video(folder / "live.webm", content_type="video/webm", live=True),
            "video/webm",
        ),
        "long_mp4": (
            write_video(folder / "long.mp4", content_type="video/mp4", seconds=8, fps=5),
            "video/mp4",
        ),
        "audio_only": (write_audio_only(folder / "sound.mp4"), "video/mp4"),
    }
    faststart = write_video(folder / "faststart.mp4", content_type="video/mp4", faststart=True)
    files["truncated_mp4"] = (_cut(faststart, folder / "cut-faststart.mp4", 0.5), "video/mp4")
    files["truncated_mp4_no_index"] = (
        _cut(files["mp4"][0], folder / "cut-no-index.mp4", 0.5),
        "video/mp4",
    )
    files["truncated_webm"] = (_cut(files["webm_vp8"][0], folder / "cut.webm", 0.5), "video/webm")
    junk = folder / "junk.mp4"
    junk.write_bytes(bytes((i * 7919 + 13) % 251 for i in range(20000)))
    files["junk"] = (junk, "video/mp4")
    return files


@pytest.fixture
def live_server(app):
    """Returns the base URL of the app served by a real HTTP server on loopback."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join()


@pytest.fixture(scope="session")
def s3_server():
    server = PolicyCheckingMotoServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def s3(app, s3_server, monkeypatch):
    """Switch the app to MEDIA_STORAGE=s3 on a fresh bucket of the loopback store."""
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    bucket = f"coaching-media-{uuid.uuid4().hex[:10]}"
    client = boto3.client(
        "s3",
        endpoint_url=s3_server.url,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
    client.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    monkeypatch.setitem(app.config, "MEDIA_STORAGE", "s3")
    monkeypatch.setitem(app.config, "S3_BUCKET", bucket)
    monkeypatch.setitem(app.config, "S3_ENDPOINT_URL", s3_server.url)
    monkeypatch.setitem(app.config, "S3_REGION", REGION)
    monkeypatch.setitem(app.config, "S3_SSE", None)
    return SimpleNamespace(client=client, bucket=bucket, server=s3_server)


# --- helpers ----------------------------------------------------------------------------------


def upload_with_test_client(client, upload: dict, path: Path, *, data: bytes | None = None):
    """Send a file to an upload URL of local storage through Flask's test client."""
    content = path.read_bytes() if data is None else data
    target = urlsplit(upload["url"]).path
    if upload["method"] == "PUT":
        return client.put(target, data=content, headers=upload["headers"])
    import io

    form = dict(upload["fields"])
    form["file"] = (io.BytesIO(content), "video", form.get("Content-Type", "video/mp4"))
    return client.post(target, data=form, content_type="multipart/form-data")


def upload_with_requests(upload: dict, path: Path | None = None, *, data: bytes | None = None):
    """Send a file to an upload URL over real HTTP, as the app does (a plain HTTP client)."""
    import requests

    content = path.read_bytes() if data is None else data
    if upload["method"] == "PUT":
        return requests.put(upload["url"], data=content, headers=upload["headers"], timeout=30)
    content_type = upload["fields"].get("Content-Type", "application/octet-stream")
    return requests.post(
        upload["url"],
        data=upload["fields"],
        files={"file": ("video", content, content_type)},
        timeout=30,
    )
