"""The Storage adapter: keys, signed URLs, local files, and S3 through boto3 against the
S3-protocol server on loopback."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from pathlib import Path

import pytest
import requests

from coaching.errors import Forbidden, ServiceUnavailable
from coaching.media import storage as media_storage
from coaching.media.storage import (
    DOWNLOAD_SALT,
    UPLOAD_SALT,
    LocalStorage,
    ObjectChanged,
    S3Storage,
    get_storage,
    new_key,
    sign,
    unsign,
    url_ttl,
)
from tests.media.fixtures import upload_with_requests


def test_keys_are_random_and_reveal_nothing():
    keys = {new_key() for _ in range(1000)}
    assert len(keys) == 1000
    assert all(len(k) == 32 and set(k) <= set("0123456789abcdef") for k in keys)


def test_signed_tokens_carry_their_payload_until_they_expire(clock):
    token = sign(
        {"k": "a" * 32, "t": "video/mp4"},
        salt=UPLOAD_SALT,
        expires_at=clock.now() + timedelta(minutes=5),
    )
    assert unsign(token, salt=UPLOAD_SALT)["t"] == "video/mp4"
    with pytest.raises(Forbidden, match="not valid"):
        unsign(token, salt=DOWNLOAD_SALT)  # an upload URL is no download URL
    with pytest.raises(Forbidden, match="not valid"):
        unsign(token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1], salt=UPLOAD_SALT)
    clock.advance(minutes=5)
    with pytest.raises(Forbidden, match="expired"):
        unsign(token, salt=UPLOAD_SALT)


def test_a_token_naming_no_media_key_is_refused(clock):
    token = sign(
        {"k": "../../etc/passwd"}, salt=DOWNLOAD_SALT, expires_at=clock.now() + timedelta(minutes=1)
    )
    with pytest.raises(Forbidden):
        unsign(token, salt=DOWNLOAD_SALT)


def test_urls_live_at_most_fifteen_minutes(app, monkeypatch):
    assert url_ttl() == timedelta(minutes=10)
    monkeypatch.setitem(app.config, "MEDIA_URL_TTL_SECONDS", 7200)
    assert url_ttl() == timedelta(minutes=15)


def test_get_storage_is_built_on_first_use_and_cached_on_the_app(app, monkeypatch):
    app.extensions.pop(media_storage.EXTENSION_KEY, None)
    storage = get_storage()
    assert isinstance(storage, LocalStorage)
    assert storage.root == Path(app.config["MEDIA_ROOT"]).resolve()
    assert get_storage() is storage
    assert app.extensions[media_storage.EXTENSION_KEY][1] is storage
    monkeypatch.setitem(app.config, "MEDIA_STORAGE", "s3")
    monkeypatch.setitem(app.config, "S3_BUCKET", "some-bucket")
    s3 = get_storage()
    assert isinstance(s3, S3Storage) and s3.bucket == "some-bucket"
    assert s3._client is None  # no boto3 client until the store is used


def test_local_objects_are_written_once_and_only_when_complete(app, tmp_path):
    storage = LocalStorage(tmp_path)
    key = new_key()
    with pytest.raises(RuntimeError), storage.writer(key) as out:
        out.write(b"half")
        raise RuntimeError("connection lost")
    assert storage.size_of(key) is None
    assert list((tmp_path / ".partial").iterdir()) == []
    with storage.writer(key) as out:
        out.write(b"whole")
    assert storage.size_of(key) == 5
    assert storage.path(key) == tmp_path.resolve() / key[:2] / key
    with pytest.raises(FileExistsError), storage.writer(key) as out:
        out.write(b"other")
    assert storage.path(key).read_bytes() == b"whole"
    with storage.fetch(key) as path:
        assert path.read_bytes() == b"whole"
    storage.delete(key)
    storage.delete(key)  # already gone: no error
    assert storage.size_of(key) is None
    with pytest.raises(ValueError):
        storage.path("../secrets")


# --- S3 through boto3 against the loopback store --------------------------------------------


def _policy(fields: dict) -> dict:
    return json.loads(base64.b64decode(fields["policy"]))


def test_presigned_post_pins_exact_length_type_and_key(app, s3):
    storage = get_storage()
    assert isinstance(storage, S3Storage)
    key = new_key()
    with app.test_request_context():
        ticket = storage.upload_ticket(key=key, content_type="video/webm", size=1234)
    assert ticket.method == "POST"
    assert ticket.url.startswith(s3.server.url)
    assert ticket.fields["key"] == key
    assert ticket.fields["Content-Type"] == "video/webm"
    assert ticket.fields["x-amz-algorithm"] == "AWS4-HMAC-SHA256"
    conditions = _policy(ticket.fields)["conditions"]
    assert ["content-length-range", 1234, 1234] in conditions
    assert {"Content-Type": "video/webm"} in conditions
    assert {"key": key} in conditions
    assert {"bucket": s3.bucket} in conditions


def test_presigned_post_upload_head_and_presigned_get(app, s3, sample_videos):
    path, content_type = sample_videos["mp4"]
    storage = get_storage()
    key = new_key()
    ticket = storage.upload_ticket(key=key, content_type=content_type, size=path.stat().st_size)
    response = upload_with_requests(
        {"method": ticket.method, "url": ticket.url, "fields": ticket.fields, "headers": {}}, path
    )
    assert response.status_code == 204, response.text
    assert storage.size_of(key) == path.stat().st_size  # the HEAD check
    url, expires_at = storage.download_url(key=key, content_type=content_type)
    assert "X-Amz-Signature=" in url and "X-Amz-Expires=600" in url
    got = requests.get(url, timeout=10)
    assert got.status_code == 200
    assert got.content == path.read_bytes()
    assert got.headers["Content-Type"] == content_type
    part = requests.get(url, headers={"Range": "bytes=10-19"}, timeout=10)
    assert part.status_code == 206 and part.content == path.read_bytes()[10:20]


@pytest.mark.parametrize(("delta", "code"), [(+10, "EntityTooLarge"), (-10, "EntityTooSmall")])
def test_the_store_refuses_a_wrong_length(app, s3, delta, code):
    storage = get_storage()
    key = new_key()
    ticket = storage.upload_ticket(key=key, content_type="video/mp4", size=1000)
    response = upload_with_requests(
        {"method": "POST", "url": ticket.url, "fields": ticket.fields, "headers": {}},
        data=b"x" * (1000 + delta),
    )
    assert response.status_code == 400
    assert f"<Code>{code}</Code>" in response.text
    assert storage.size_of(key) is None


def test_the_store_refuses_another_type_or_key_than_signed(app, s3):
    storage = get_storage()
    key = new_key()
    ticket = storage.upload_ticket(key=key, content_type="video/mp4", size=10)
    for change in ({"Content-Type": "text/html"}, {"key": new_key()}):
        fields = {**ticket.fields, **change}
        response = upload_with_requests(
            {"method": "POST", "url": ticket.url, "fields": fields, "headers": {}}, data=b"x" * 10
        )
        assert response.status_code == 403, response.text
    assert storage.size_of(key) is None


def test_server_side_encryption_is_part_of_the_policy(app, s3, monkeypatch):
    monkeypatch.setitem(app.config, "S3_SSE", "AES256")
    storage = get_storage()
    assert storage.sse == "AES256"
    key = new_key()
    ticket = storage.upload_ticket(key=key, content_type="video/mp4", size=10)
    assert ticket.fields["x-amz-server-side-encryption"] == "AES256"
    assert {"x-amz-server-side-encryption": "AES256"} in _policy(ticket.fields)["conditions"]
    response = upload_with_requests(
        {"method": "POST", "url": ticket.url, "fields": ticket.fields, "headers": {}},
        data=b"x" * 10,
    )
    assert response.status_code == 204, response.text
    stripped = {k: v for k, v in ticket.fields.items() if k != "x-amz-server-side-encryption"}
    refused = upload_with_requests(
        {"method": "POST", "url": ticket.url, "fields": stripped, "headers": {}}, data=b"x" * 10
    )
    assert refused.status_code == 403


def test_s3_save_fetch_and_delete(app, s3, tmp_path):
    storage = get_storage()
    key = new_key()
    source = tmp_path / "thumb.jpg"
    source.write_bytes(b"\xff\xd8jpeg")
    storage.save_file(key=key, path=source, content_type="image/jpeg")
    head = s3.client.head_object(Bucket=s3.bucket, Key=key)
    assert head["ContentType"] == "image/jpeg"
    with storage.fetch(key) as path:
        assert path.read_bytes() == b"\xff\xd8jpeg"
    storage.delete(key)
    assert storage.size_of(key) is None


def test_an_unreachable_store_answers_503(app, s3, monkeypatch):
    import socket

    with socket.socket() as sock:  # a port on loopback where nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setitem(app.config, "S3_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    storage = get_storage()
    with pytest.raises(ServiceUnavailable, match="store"):
        storage.size_of(new_key())


def test_s3_seal_keeps_the_bytes_read_under_a_key_no_upload_url_names(app, s3, sample_videos):
    path, content_type = sample_videos["mp4"]
    storage = get_storage()
    key = new_key()
    ticket = storage.upload_ticket(key=key, content_type=content_type, size=path.stat().st_size)
    form = {"method": ticket.method, "url": ticket.url, "fields": ticket.fields, "headers": {}}
    assert upload_with_requests(form, path).status_code == 204
    with storage.fetch_version(key) as (fetched, etag):
        assert fetched.read_bytes() == path.read_bytes()
    assert etag == s3.client.head_object(Bucket=s3.bucket, Key=key)["ETag"]
    sealed, sealed_etag = storage.seal(key=key, etag=etag, content_type=content_type)
    assert sealed != key and sealed_etag == etag
    other = bytes(reversed(path.read_bytes()))
    assert upload_with_requests(form, data=other).status_code == 204
    got = requests.get(storage.download_url(key=sealed, content_type=content_type)[0], timeout=10)
    assert got.status_code == 200 and got.content == path.read_bytes()
    assert got.headers["Content-Type"] == content_type


def test_s3_seal_refuses_an_object_replaced_since_it_was_read(app, s3):
    storage = get_storage()
    key = new_key()
    s3.client.put_object(Bucket=s3.bucket, Key=key, Body=b"checked bytes")
    with storage.fetch_version(key) as (_, etag):
        s3.client.put_object(Bucket=s3.bucket, Key=key, Body=b"other bytes!!")
    before = {o["Key"] for o in s3.client.list_objects_v2(Bucket=s3.bucket).get("Contents", [])}
    with pytest.raises(ObjectChanged):
        storage.seal(key=key, etag=etag, content_type="video/mp4")
    after = {o["Key"] for o in s3.client.list_objects_v2(Bucket=s3.bucket).get("Contents", [])}
    assert after == before == {key}  # no copy left behind


def test_local_seal_keeps_the_key_written_once(app, tmp_path):
    storage = LocalStorage(tmp_path)
    key = new_key()
    with storage.writer(key) as out:
        out.write(b"video")
    with storage.fetch_version(key) as (path, etag):
        assert path.read_bytes() == b"video" and etag is None
    assert storage.seal(key=key, etag=None, content_type="video/mp4") == (key, None)
