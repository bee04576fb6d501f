"""Push senders behind one small interface, chosen by `PUSH_SENDER`:

- `log` (the embedded default) records each push it would send in the `push_log` table, in its
  own transaction at the moment of "sending", like a real transport would have it;
- `fcm` sends through firebase-admin (`messaging.send_each`, at most 500 messages per call).
  Firebase is initialised on first use and only for `PUSH_SENDER=fcm`, from the service-account
  file in `FIREBASE_CREDENTIALS`; never at import time.

Each message carries the notification's idempotency key as Android `tag`, APNs
`apns-collapse-id` and web-push `tag`, so a repeat after a crash replaces the first on the phone.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import time
import warnings
from dataclasses import dataclass, field
from datetime import UTC

from flask import current_app

from coaching import clock
from coaching.db import new_id

log = logging.getLogger(__name__)

FCM_BATCH = 500  # firebase-admin's limit for send_each
LEASE_DEFAULT_SECONDS = 120  # PUSH_LEASE_SECONDS unless configured (dispatch.py)
MAX_PAYLOAD_BYTES = 4096  # FCM's limit for a message's data (and notification) payload
APNS_COLLAPSE_ID_MAX = 64  # bytes


def collapse_id(key: str) -> str:
    """Returns the collapse identifier of a notification: its idempotency key, or a digest of it
    when the key is longer than the 64 bytes APNs accepts."""
    if len(key.encode()) <= APNS_COLLAPSE_ID_MAX:
        return key
    return "k" + hashlib.sha256(key.encode()).hexdigest()[:40]


@dataclass
class PushMessage:
    notification_id: str
    key: str
    device_id: str | None
    token: str
    platform: str | None
    title: str
    body: str
    data: dict = field(default_factory=dict)


@dataclass
class PushResult:
    """The outcome of one message.

    `kind`: `ok`; `unregistered` (the token is gone: deactivate the device); `transient` (try
    again later, not before `retry_after` seconds); `quota` (likewise, at least a minute);
    `permanent` (the message itself was refused: do not try again).
    """

    kind: str
    error: str | None = None
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.kind == "ok"


class PushSender:
    """Sends push messages; returns one result per message, in order."""

    name = "base"

    def send(self, messages: list[PushMessage]) -> list[PushResult]:
        raise NotImplementedError


class LogSender(PushSender):
    """Records what would be sent, in the `push_log` table and the log."""

    name = "log"

    def send(self, messages: list[PushMessage]) -> list[PushResult]:
        from coaching.extensions import db
        from coaching.notifications.models import PushLogEntry

        if not messages:
            return []
        now = clock.now()
        rows = [
            {
                "id": new_id(),
                "notification_id": m.notification_id,
                "idempotency_key": m.key,
                "device_id": m.device_id,
                "platform": m.platform,
                "title": m.title[:200],
                "body": m.body,
                "data": m.data,
                "sent_at": now,
            }
            for m in messages
        ]
        # Its own connection and transaction: a "send" stays sent whatever the caller's
        # transaction does next, as with a real push service.
        with db.engine.begin() as conn:
            conn.execute(PushLogEntry.__table__.insert(), rows)
        log.info("log sender: %d push messages recorded", len(messages))
        for m in messages:
            log.debug("push %s to device %s: %s", m.key, m.device_id, m.title)
        return [PushResult("ok") for _ in messages]


def _retry_after(exc) -> float | None:
    response = getattr(exc, "http_response", None)
    value = response.headers.get("Retry-After") if response is not None else None
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        # Neither seconds nor an HTTP date (a proxy's "1.5"): our own backoff decides. Raising
        # here would fail the whole batch, and its delivered messages would go out again.
        return None
    if parsed.tzinfo is None:  # "-0000": UTC, as HTTP dates always are
        parsed = parsed.replace(tzinfo=UTC)
    return max(0.0, parsed.timestamp() - time.time())


def _names_token_field(exc) -> bool:
    """Returns whether an INVALID_ARGUMENT answer is about the registration token."""
    response = getattr(exc, "http_response", None)
    if response is None:
        return "registration token" in str(exc).lower()
    try:
        error = response.json().get("error", {})
    except ValueError:
        return False
    for detail in error.get("details", []):
        for violation in detail.get("fieldViolations", []):
            if violation.get("field") == "message.token":
                return True
    return "registration token" in str(error.get("message", "")).lower()


def classify_fcm_error(exc) -> PushResult:
    """Returns the outcome of one firebase-admin error (see PushResult)."""
    from firebase_admin import exceptions, messaging

    text = f"{type(exc).__name__}: {exc}"[:500]
    if isinstance(exc, messaging.UnregisteredError | messaging.SenderIdMismatchError):
        return PushResult("unregistered", text)
    if isinstance(exc, exceptions.ResourceExhaustedError):  # QUOTA_EXCEEDED and plain 429
        return PushResult("quota", text, _retry_after(exc))
    if isinstance(exc, exceptions.InvalidArgumentError):
        return PushResult("unregistered" if _names_token_field(exc) else "permanent", text)
    return PushResult("transient", text, _retry_after(exc))


class FcmSender(PushSender):
    """Firebase Cloud Messaging through firebase-admin."""

    name = "fcm"

    def __init__(
        self,
        credentials_path: str,
        *,
        app_name: str = "coaching",
        http_timeout: float = LEASE_DEFAULT_SECONDS / 4,
    ) -> None:
        import firebase_admin
        from firebase_admin import credentials

        try:
            self.app = firebase_admin.get_app(app_name)
        except ValueError:
            # firebase-admin waits 120 s for an answer by default, as long as a dispatcher's
            # lease: a slow FCM would let another dispatcher claim the rows still being sent.
            self.app = firebase_admin.initialize_app(
                credentials.Certificate(credentials_path),
                options={"httpTimeout": http_timeout},
                name=app_name,
            )
        self._transport_retries_off()

    def _transport_retries_off(self) -> None:
        """Leave retrying to the queue (backoff with jitter, Retry-After kept across processes):
        firebase-admin's own retries would sleep through a Retry-After inside the dispatcher,
        holding its lease."""
        import requests
        from firebase_admin import messaging
        from urllib3.util.retry import Retry

        try:
            session = messaging._get_messaging_service(self.app)._client.session
        except AttributeError:  # a firebase-admin without these internals: keep its retries
            log.warning("firebase-admin internals changed: its own HTTP retries stay on")
            return
        retry = Retry(
            total=None,
            connect=1,  # nothing reached FCM yet: safe to try once more
            read=0,
            redirect=0,
            status=0,
            other=0,
            raise_on_status=False,
            respect_retry_after_header=False,
            allowed_methods=None,
        )
        adapter = requests.adapters.HTTPAdapter(
            pool_connections=10, pool_maxsize=100, max_retries=retry
        )
        for prefix in ("https://fcm.googleapis.com", "https://", "http://"):
            session.mount(prefix, adapter)

    def message(self, m: PushMessage):
        """Returns the firebase-admin message for one push."""

        tag = collapse_id(m.key)
        # The apps register FCM registration tokens; firebase-admin 7 marks `token` deprecated in
        # favour of installation ids but still sends it (it silences the same warning itself).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return self._message(m, tag)

    def _message(self, m: PushMessage, tag: str):
        from firebase_admin import messaging

        return messaging.Message(
            token=m.token,
            notification=messaging.Notification(title=m.title, body=m.body),
            data={str(k): str(v) for k, v in m.data.items()},
            android=messaging.AndroidConfig(
                priority="high", notification=messaging.AndroidNotification(tag=tag)
            ),
            apns=messaging.APNSConfig(headers={"apns-collapse-id": tag}),
            webpush=messaging.WebpushConfig(notification=messaging.WebpushNotification(tag=tag)),
        )

    def send(self, messages: list[PushMessage]) -> list[PushResult]:
        from firebase_admin import messaging

        results: list[PushResult | None] = [None] * len(messages)
        batch: list[tuple[int, object]] = []
        for i, m in enumerate(messages):
            size = len(json.dumps({"data": m.data, "title": m.title, "body": m.body}).encode())
            if size >= MAX_PAYLOAD_BYTES:
                results[i] = PushResult("permanent", f"payload of {size} bytes exceeds 4 KB")
            else:
                batch.append((i, self.message(m)))
        for start in range(0, len(batch), FCM_BATCH):
            chunk = batch[start : start + FCM_BATCH]
            try:
                response = messaging.send_each([msg for _, msg in chunk], app=self.app)
            except Exception as exc:  # this chunk only: the ones before it were delivered
                log.exception("firebase-admin failed for a chunk of %d messages", len(chunk))
                failed = PushResult("transient", f"{type(exc).__name__}: {exc}"[:500])
                for i, _ in chunk:
                    results[i] = failed
                continue
            for (i, _), answer in zip(chunk, response.responses, strict=True):
                results[i] = (
                    PushResult("ok") if answer.success else classify_fcm_error(answer.exception)
                )
        return [r for r in results if r is not None]


def get_sender() -> PushSender:
    """Returns the app's push sender, created on first use from `PUSH_SENDER`."""
    sender = current_app.extensions.get("push_sender")
    if sender is None:
        if current_app.config["PUSH_SENDER"] == "fcm":
            from coaching.notifications.dispatch import setting

            # A connection retry and the answer, three waits at most, end well within the lease.
            sender = FcmSender(
                current_app.config["FIREBASE_CREDENTIALS"],
                http_timeout=setting("PUSH_LEASE_SECONDS") / 4,
            )
        else:
            sender = LogSender()
        current_app.extensions["push_sender"] = sender
    return sender
