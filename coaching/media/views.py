"""The signed upload and download URLs of local storage (`MEDIA_STORAGE=local`).

The URL itself is the permission: a token signed with the app's secret that names the object,
its content type, the exact size (uploads) and the expiry. Uploads are streamed to disk in chunks
and cut off as soon as they pass the declared size, so the process never holds the video in
memory; downloads honour HTTP Range so that phones can seek.
"""

from __future__ import annotations

from flask import Blueprint, current_app, request, send_file
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData
from werkzeug.wsgi import get_input_stream

from coaching.errors import AppError, Conflict, NotFound, PayloadTooLarge
from coaching.extensions import db
from coaching.media import service as media
from coaching.media.storage import (
    DOWNLOAD_SALT,
    UPLOAD_SALT,
    LocalStorage,
    get_storage,
    unsign,
)

blp = Blueprint("media", __name__, url_prefix="/media")

CHUNK = 1024 * 1024
# Room for the form fields and part headers of a multipart upload around the file itself.
FORM_OVERHEAD = 64 * 1024
FIELD_LIMIT = 4096
NOT_WANTED = "This upload is no longer wanted: the video was deleted or its time to upload passed"


class BadUpload(AppError):
    code = 400
    default_message = "Malformed upload"


def _require_wanted(key: str) -> None:
    wanted = media.is_upload_wanted(key)
    # No transaction stays open while the bytes stream in (a gigabyte on a phone's network).
    db.session.commit()
    if not wanted:
        raise Conflict(NOT_WANTED)


def _local() -> LocalStorage:
    storage = get_storage()
    if not isinstance(storage, LocalStorage):
        raise NotFound("Not found")
    return storage


class _SizedWriter:
    """Counts bytes on their way to disk and stops at the first byte past the declared size."""

    def __init__(self, handle, size: int) -> None:
        self.handle = handle
        self.size = size
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)
        if self.written > self.size:
            raise PayloadTooLarge("The upload is larger than the size declared for it")
        self.handle.write(data)

    def finish(self) -> None:
        if self.written != self.size:
            raise BadUpload(
                f"The upload has {self.written} bytes but {self.size} were declared for it"
            )


def _body_stream(limit: int):
    try:
        # One byte of room: a chunked body must be able to show it is longer than declared
        # (the writer refuses that byte) without werkzeug refusing a body of exactly `limit`.
        return get_input_stream(request.environ, max_content_length=limit + 1)
    except RequestEntityTooLarge as exc:
        raise PayloadTooLarge("The upload is larger than the size declared for it") from exc


def _receive_raw(writer: _SizedWriter) -> None:
    stream = _body_stream(writer.size)
    while chunk := stream.read(CHUNK):
        writer.write(chunk)


def _receive_form(writer: _SizedWriter, boundary: str, content_type: str) -> None:
    """Parse a multipart form while it streams in: small fields in memory, the file to disk."""
    stream = _body_stream(writer.size + FORM_OVERHEAD)
    decoder = MultipartDecoder(boundary.encode("latin-1"))
    part: str | None = None  # "field:<name>", "file", "skip"
    value = bytearray()
    seen_file = False
    while True:
        try:
            event = decoder.next_event()
        except (ValueError, RequestEntityTooLarge) as exc:
            raise BadUpload("The upload form could not be read") from exc
        if isinstance(event, NeedData):
            chunk = stream.read(CHUNK)
            decoder.receive_data(chunk or None)
            # The decoder hands file data on as it comes; only a malformed form piles up here.
            if len(decoder.buffer) > 2 * CHUNK + FORM_OVERHEAD:
                raise BadUpload("The upload form could not be read")
            continue
        if isinstance(event, Epilogue):
            break
        if isinstance(event, File):
            if event.name == "file" and not seen_file:
                part, seen_file = "file", True
            else:
                part = "skip"
        elif isinstance(event, Field):
            # As on S3, fields after the file are ignored.
            part = "skip" if seen_file else f"field:{event.name}"
            value.clear()
        elif isinstance(event, Data):
            if part == "file":
                writer.write(event.data)
            elif part and part.startswith("field:"):
                value += event.data
                if len(value) > FIELD_LIMIT:
                    raise BadUpload("A form field is too long")
                if (
                    not event.more_data
                    and part == "field:Content-Type"
                    and value.decode("utf-8", "replace") != content_type
                ):
                    raise BadUpload("Content-Type does not match the upload URL")
    if not seen_file:
        raise BadUpload("The form has no part named file")


@blp.route("/upload/<token>", methods=["POST", "PUT"])
def upload(token: str):
    """Receive an upload: a multipart form (POST, as on S3) or the raw bytes (PUT)."""
    payload = unsign(token, salt=UPLOAD_SALT)
    storage = _local()
    key, content_type, size = payload["k"], payload["t"], int(payload["n"])
    if storage.size_of(key) is not None:
        raise Conflict("This upload has already been received")
    # The URL outlives what it was for: consent withdrawn, the patient erased, the upload's time
    # over. Whatever let it go queued its deletion, perhaps before these bytes could be deleted.
    _require_wanted(key)
    mimetype, options = parse_options_header(request.headers.get("Content-Type", ""))
    try:
        with storage.writer(key) as handle:
            writer = _SizedWriter(handle, size)
            if request.method == "POST":
                if mimetype != "multipart/form-data" or not options.get("boundary"):
                    raise BadUpload("POST needs a multipart/form-data body")
                _receive_form(writer, options["boundary"], content_type)
            else:
                if mimetype and mimetype != content_type:
                    raise BadUpload("Content-Type does not match the upload URL")
                _receive_raw(writer)
            writer.finish()
    except FileExistsError as exc:
        # Two uploads raced for one URL: the first one to finish keeps the object.
        raise Conflict("This upload has already been received") from exc
    if not media.is_upload_wanted(key):
        # Let go while the bytes came in: its deletion may have run before they were stored.
        storage.delete(key)
        raise Conflict(NOT_WANTED)
    current_app.logger.info("media upload stored: %s bytes", size)
    return "", 204


@blp.route("/download/<token>", methods=["GET"])
def download(token: str):
    """Serve an object, with Range requests (206) so that players can seek."""
    payload = unsign(token, salt=DOWNLOAD_SALT)
    storage = _local()
    path = storage.path(payload["k"])
    if not path.exists():
        raise NotFound("This media is no longer available")
    response = send_file(path, mimetype=payload["t"], conditional=True, etag=True, max_age=0)
    response.headers["Cache-Control"] = "private, no-store"
    return response
