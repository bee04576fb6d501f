"""Where videos and thumbnails live: the `Storage` adapter and its two implementations.

`MEDIA_STORAGE=local` (default) keeps files under `MEDIA_ROOT`; uploads and downloads go through
signed, expiring URLs of the service itself (see `coaching/media/views.py`). `MEDIA_STORAGE=s3`
keeps them in a bucket: the app uploads straight to the store with a presigned POST whose policy
pins the exact length, the content type and the key, and plays them back through presigned GETs.

A presigned POST cannot be revoked: until it expires, its holder can write its key again (same
length, same type). So the bytes the video check read are sealed (`seal()`): on S3, copied, on
the condition that they are still those bytes (their ETag), to a new key that no upload URL
names, and played from there. Local storage writes a key once, so its objects are sealed already.
A presigned GET cannot carry If-Match itself: boto3 signs it as a header the player must send.

Keys are random (32 hex characters) and reveal nothing about who or what is in the file.
`get_storage()` builds the configured storage on first use and caches it on the app: nothing is
created at import time.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from flask import current_app, url_for
from itsdangerous import BadSignature, URLSafeSerializer

from coaching import clock
from coaching.errors import Forbidden, ServiceUnavailable

KEY_PATTERN = re.compile(r"^[0-9a-f]{32}$")
# Playback and upload URLs never live longer than this, whatever the configuration says.
MAX_URL_TTL_SECONDS = 900
UPLOAD_SALT = "coaching.media.upload"
DOWNLOAD_SALT = "coaching.media.download"


def new_key() -> str:
    """Returns a new random object key (128 bits, hex)."""
    return secrets.token_hex(16)


def url_ttl() -> timedelta:
    """Returns how long a signed upload or playback URL lives (at most 15 minutes)."""
    seconds = int(current_app.config.get("MEDIA_URL_TTL_SECONDS", 600))
    return timedelta(seconds=max(1, min(seconds, MAX_URL_TTL_SECONDS)))


def _url_expiry(not_after: datetime | None) -> datetime:
    """Returns when a playback URL made now expires: after its TTL, or at `not_after`."""
    expires_at = clock.now() + url_ttl()
    return min(expires_at, not_after) if not_after is not None else expires_at


@dataclass
class UploadTicket:
    """How the app uploads one object: the contract's `upload` object."""

    method: str
    url: str
    expires_at: datetime
    fields: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


class ObjectChanged(Exception):
    """The object is no longer the bytes that were read (it was uploaded again)."""


class Storage:
    """The operations the service needs from a media store."""

    name = "abstract"

    def upload_ticket(self, *, key: str, content_type: str, size: int) -> UploadTicket:
        """Returns a short-lived way for a client to upload exactly `size` bytes to `key`."""
        raise NotImplementedError

    def download_url(
        self, *, key: str, content_type: str, not_after: datetime | None = None
    ) -> tuple[str, datetime]:
        """Returns a short-lived URL to read an object, and when it expires (never after
        `not_after`, when the object itself stops being available)."""
        raise NotImplementedError

    def size_of(self, key: str) -> int | None:
        """Returns the stored object's size in bytes, or None when it does not exist."""
        raise NotImplementedError

    def save_file(self, *, key: str, path: Path, content_type: str) -> None:
        """Store a local file under a key (used for thumbnails the service makes)."""
        raise NotImplementedError

    def fetch(self, key: str) -> contextlib.AbstractContextManager[Path]:
        """Returns a context manager giving a local path with the object's bytes."""
        raise NotImplementedError

    def fetch_version(self, key: str) -> contextlib.AbstractContextManager[tuple[Path, str | None]]:
        """Returns a context manager giving a local path with the object's bytes and the ETag of
        exactly those bytes (None where the store keeps none)."""
        raise NotImplementedError

    def seal(self, *, key: str, etag: str | None, content_type: str) -> tuple[str, str | None]:
        """Returns the key and ETag under which the bytes read as `etag` stay, where no upload
        URL can replace them; raises ObjectChanged when the object is no longer those bytes."""
        raise NotImplementedError

    def delete(self, key: str) -> None:
        """Delete an object; deleting one that is already gone is not an error."""
        raise NotImplementedError


# --- signed URLs of the service itself -------------------------------------------------------


def _serializer(salt: str) -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt=salt)


def sign(payload: dict, *, salt: str, expires_at: datetime) -> str:
    """Returns a URL-safe token carrying a payload and its expiry (by the app's clock)."""
    return _serializer(salt).dumps({**payload, "e": int(expires_at.timestamp())})


def unsign(token: str, *, salt: str) -> dict:
    """Returns a token's payload; a forged, altered or expired token raises Forbidden (403)."""
    try:
        payload = _serializer(salt).loads(token)
    except BadSignature as exc:
        raise Forbidden("This link is not valid") from exc
    if not isinstance(payload, dict) or not KEY_PATTERN.match(str(payload.get("k", ""))):
        raise Forbidden("This link is not valid")
    if payload.get("e", 0) <= clock.now().timestamp():
        raise Forbidden("This link has expired")
    return payload


class LocalStorage(Storage):
    """Files under a folder, moved through the service's own signed URLs."""

    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def path(self, key: str) -> Path:
        """Returns the file of a key (two-character folders keep directories small)."""
        if not KEY_PATTERN.match(key):
            raise ValueError("not a media key")
        return self.root / key[:2] / key

    def upload_ticket(self, *, key: str, content_type: str, size: int) -> UploadTicket:
        expires_at = clock.now() + url_ttl()
        token = sign(
            {"k": key, "t": content_type, "n": size}, salt=UPLOAD_SALT, expires_at=expires_at
        )
        # The same URL also takes a PUT of the raw bytes; POST keeps one client path for both stores.
        return UploadTicket(
            method="POST",
            url=url_for("media.upload", token=token, _external=True),
            expires_at=expires_at,
            fields={"Content-Type": content_type},
        )

    def download_url(
        self, *, key: str, content_type: str, not_after: datetime | None = None
    ) -> tuple[str, datetime]:
        expires_at = _url_expiry(not_after)
        token = sign({"k": key, "t": content_type}, salt=DOWNLOAD_SALT, expires_at=expires_at)
        return url_for("media.download", token=token, _external=True), expires_at

    def size_of(self, key: str) -> int | None:
        try:
            return self.path(key).stat().st_size
        except FileNotFoundError:
            return None

    @contextlib.contextmanager
    def writer(self, key: str) -> Iterator:
        """Yield a binary file to write a new object into; it appears under its key only when
        the block ends without an error, and never replaces an object that already exists."""
        final = self.path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        partial = self.root / ".partial"
        partial.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=partial, prefix=key[:8])
        try:
            with os.fdopen(fd, "wb") as handle:
                yield handle
            # link() fails when the key exists: an upload URL writes its object once.
            os.link(tmp_name, final)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)

    def purge_partials(self, *, idle_since: datetime) -> int:
        """Delete the bytes of uploads not written to since `idle_since`; returns how many.

        A process killed mid-upload (a worker timeout, a deploy) never runs the writer's clean-up,
        and nothing else would ever find the file: it is named like no key.
        """
        removed = 0
        folder = self.root / ".partial"
        for path in folder.iterdir() if folder.is_dir() else ():
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < idle_since.timestamp():
                    path.unlink()
                    removed += 1
        return removed

    def save_file(self, *, key: str, path: Path, content_type: str) -> None:
        with self.writer(key) as out, open(path, "rb") as source:
            shutil.copyfileobj(source, out, 1024 * 1024)

    @contextlib.contextmanager
    def fetch(self, key: str) -> Iterator[Path]:
        path = self.path(key)
        if not path.exists():
            raise FileNotFoundError(key)
        yield path

    @contextlib.contextmanager
    def fetch_version(self, key: str) -> Iterator[tuple[Path, str | None]]:
        with self.fetch(key) as path:
            yield path, None

    def seal(self, *, key: str, etag: str | None, content_type: str) -> tuple[str, str | None]:
        # The writer never replaces an object: what was read stays under its key.
        return key, etag

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(key).unlink()


class S3Storage(Storage):
    """A bucket on S3 or an S3-compatible store, through boto3."""

    name = "s3"

    def __init__(
        self, *, bucket: str, endpoint_url: str | None, sse: str | None, region: str | None
    ) -> None:
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        self.sse = sse
        self.region = region
        self._client = None

    @property
    def client(self):
        """Returns the boto3 client, made on first use."""
        if self._client is None:
            import boto3
            from botocore.config import Config as BotoConfig

            options: dict = {"signature_version": "s3v4"}
            if self.endpoint_url:
                # S3-compatible stores on a plain host name are addressed by path.
                options["s3"] = {"addressing_style": "path"}
            # A session of our own: boto3's default session would keep credentials resolved
            # for another app (or before the environment changed) for the life of the process.
            self._client = boto3.session.Session().client(
                "s3",
                endpoint_url=self.endpoint_url,
                region_name=self.region,
                config=BotoConfig(**options),
            )
        return self._client

    @contextlib.contextmanager
    def _reaching_store(self) -> Iterator[None]:
        """Turn the store being unreachable (or refusing us) into 503 for the caller."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except (BotoCoreError, ClientError) as exc:
            raise ServiceUnavailable(
                "The media store cannot be reached; try again shortly",
                headers={"Retry-After": "30"},
            ) from exc

    def _sse_args(self) -> dict[str, str]:
        return {"ServerSideEncryption": self.sse} if self.sse else {}

    def upload_ticket(self, *, key: str, content_type: str, size: int) -> UploadTicket:
        ttl = url_ttl()
        fields = {"Content-Type": content_type}
        conditions: list = [
            {"Content-Type": content_type},
            # The store refuses any other length: a presigned PUT could not bound the size.
            ["content-length-range", size, size],
        ]
        if self.sse:
            fields["x-amz-server-side-encryption"] = self.sse
            conditions.append({"x-amz-server-side-encryption": self.sse})
        with self._reaching_store():
            post = self._presigned_post(key, fields, conditions, ttl)
        return UploadTicket(
            method="POST",
            url=post["url"],
            expires_at=clock.now() + ttl,
            fields=dict(post["fields"]),
        )

    def _presigned_post(self, key: str, fields: dict, conditions: list, ttl: timedelta) -> dict:
        # Signing needs credentials, which may come from the platform over the network.
        return self.client.generate_presigned_post(
            Bucket=self.bucket,
            Key=key,
            Fields=fields,
            Conditions=conditions,
            ExpiresIn=int(ttl.total_seconds()),
        )

    def download_url(
        self, *, key: str, content_type: str, not_after: datetime | None = None
    ) -> tuple[str, datetime]:
        now = clock.now()
        expires_at = _url_expiry(not_after)
        with self._reaching_store():
            url = self.client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": key, "ResponseContentType": content_type},
                ExpiresIn=max(1, int((expires_at - now).total_seconds())),
            )
        return url, expires_at

    def size_of(self, key: str) -> int | None:
        from botocore.exceptions import ClientError

        with self._reaching_store():
            try:
                head = self.client.head_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    return None
                raise
        return int(head["ContentLength"])

    def save_file(self, *, key: str, path: Path, content_type: str) -> None:
        self.client.upload_file(
            str(path),
            self.bucket,
            key,
            ExtraArgs={"ContentType": content_type, **self._sse_args()},
        )

    @contextlib.contextmanager
    def fetch(self, key: str) -> Iterator[Path]:
        # The video check needs a seekable local file; it runs in the scheduler process.
        with tempfile.TemporaryDirectory(prefix="coaching-media-") as folder:
            path = Path(folder) / key
            self.client.download_file(self.bucket, key, str(path))
            yield path

    @contextlib.contextmanager
    def fetch_version(self, key: str) -> Iterator[tuple[Path, str | None]]:
        # One GET: the ETag comes with the very bytes written to the file (a transfer in
        # ranged parts could mix two uploads of the key).
        with tempfile.TemporaryDirectory(prefix="coaching-media-") as folder:
            path = Path(folder) / key
            response = self.client.get_object(Bucket=self.bucket, Key=key)
            with response["Body"] as body, open(path, "wb") as out:
                shutil.copyfileobj(body, out, 1024 * 1024)
            yield path, response["ETag"]

    def seal(self, *, key: str, etag: str | None, content_type: str) -> tuple[str, str | None]:
        from botocore.exceptions import ClientError

        if etag is None:
            raise ObjectChanged(key)
        sealed = new_key()
        try:
            # The store copies only while the object is still the bytes that were read.
            result = self.client.copy_object(
                Bucket=self.bucket,
                Key=sealed,
                CopySource={"Bucket": self.bucket, "Key": key},
                CopySourceIfMatch=etag,
                MetadataDirective="REPLACE",
                ContentType=content_type,
                **self._sse_args(),
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in ("412", "PreconditionFailed", "404", "NoSuchKey"):
                raise ObjectChanged(key) from exc
            raise
        copied = result["CopyObjectResult"]["ETag"]
        # Without KMS, the ETag of an object uploaded in one part (as a POST is) is its MD5, and
        # so is its copy's: another ETag means other bytes, should the store not check the
        # condition itself (S3-compatible stores vary).
        if self.sse in (None, "AES256") and "-" not in etag and copied != etag:
            self.delete(sealed)
            raise ObjectChanged(key)
        return sealed, copied

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)


EXTENSION_KEY = "media_storage"


def _settings(config) -> tuple:
    return (
        config["MEDIA_STORAGE"],
        str(config["MEDIA_ROOT"]),
        config.get("S3_BUCKET"),
        config.get("S3_ENDPOINT_URL"),
        config.get("S3_SSE"),
        config.get("S3_REGION"),
    )


def get_storage() -> Storage:
    """Returns the app's configured storage, built on first use and cached on the app."""
    app = current_app._get_current_object()
    settings = _settings(app.config)
    cached = app.extensions.get(EXTENSION_KEY)
    if cached is not None and cached[0] == settings:
        return cached[1]
    kind, root, bucket, endpoint_url, sse, region = settings
    if kind == "s3":
        storage: Storage = S3Storage(
            bucket=bucket,
            endpoint_url=endpoint_url,
            sse=sse,
            region=region or os.environ.get("AWS_DEFAULT_REGION"),
        )
    else:
        storage = LocalStorage(Path(root))
    app.extensions[EXTENSION_KEY] = (settings, storage)
    return storage
