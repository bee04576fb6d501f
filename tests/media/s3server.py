"""An S3-protocol server on loopback for the integration tests: moto's ThreadedMotoServer, plus
the check of browser-POST policies that real S3 makes and moto does not.

moto (5.x) stores whatever a presigned POST sends: it neither verifies the policy's signature
nor its conditions (`content-length-range`, exact fields, expiry). Real S3 refuses such uploads,
and our upload limit depends on that refusal, so the test server wraps moto's WSGI app with
that check, written from AWS's documentation of POST policies (SigV4): the signature over the
base64 policy, the expiry, every condition, and no form field outside the conditions.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
from datetime import UTC, datetime
from xml.sax.saxutils import escape

from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.formparser import parse_form_data
from werkzeug.serving import make_server

ACCESS_KEY = "AKIATESTINGKEY000001"
SECRET_KEY = "testing-secret-key-for-the-loopback-store"
REGION = "eu-west-1"
# Fields a policy need not list (AWS: "except x-amz-signature, file, policy, x-ignore-*").
UNLISTED = {"policy", "x-amz-signature", "file"}


class PolicyRefused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signature_v4(secret: str, date: str, region: str, policy_b64: str) -> str:
    """Returns the SigV4 signature S3 expects on a POST policy."""
    key = _hmac(("AWS4" + secret).encode(), date)
    key = _hmac(key, region)
    key = _hmac(key, "s3")
    key = _hmac(key, "aws4_request")
    return hmac.new(key, policy_b64.encode(), hashlib.sha256).hexdigest()


def check_post(form: dict[str, str], file_size: int, bucket: str) -> None:
    """Raise PolicyRefused when S3 would refuse this POST upload."""
    policy_b64 = form.get("policy")
    if not policy_b64:
        raise PolicyRefused(403, "AccessDenied", "Missing policy")
    credential = form.get("x-amz-credential", "")
    parts = credential.split("/")
    if form.get("x-amz-algorithm") != "AWS4-HMAC-SHA256" or len(parts) != 5:
        raise PolicyRefused(403, "AccessDenied", "Only SigV4 POST policies are accepted")
    access_key, date, region = parts[0], parts[1], parts[2]
    expected = signature_v4(SECRET_KEY, date, region, policy_b64)
    if access_key != ACCESS_KEY or not hmac.compare_digest(
        expected, form.get("x-amz-signature", "")
    ):
        raise PolicyRefused(403, "SignatureDoesNotMatch", "The signature does not match")
    policy = json.loads(base64.b64decode(policy_b64))
    expiration = datetime.fromisoformat(policy["expiration"].replace("Z", "+00:00"))
    if expiration <= datetime.now(UTC):
        raise PolicyRefused(403, "AccessDenied", "Invalid according to Policy: Policy expired.")
    values = {**{k.lower(): v for k, v in form.items()}, "bucket": bucket}
    listed = set()
    for condition in policy["conditions"]:
        if isinstance(condition, dict):
            ((name, value),) = condition.items()
            listed.add(name.lower())
            if values.get(name.lower()) != value:
                raise PolicyRefused(
                    403,
                    "AccessDenied",
                    f"Invalid according to Policy: Policy Condition failed: {name}",
                )
        elif condition[0] == "content-length-range":
            low, high = int(condition[1]), int(condition[2])
            if file_size > high:
                raise PolicyRefused(
                    400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size"
                )
            if file_size < low:
                raise PolicyRefused(
                    400, "EntityTooSmall", "Your proposed upload is smaller than the minimum"
                )
        else:
            operator, name, value = condition
            name = name.lstrip("$").lower()
            listed.add(name)
            actual = values.get(name, "")
            ok = actual == value if operator == "eq" else actual.startswith(value)
            if not ok:
                raise PolicyRefused(
                    403,
                    "AccessDenied",
                    f"Invalid according to Policy: Policy Condition failed: {name}",
                )
    extra = {
        name
        for name in (k.lower() for k in form)
        if name not in listed and name not in UNLISTED and not name.startswith("x-ignore-")
    }
    if extra:
        raise PolicyRefused(
            403, "AccessDenied", f"Invalid according to Policy: Extra input fields: {sorted(extra)}"
        )


class PostPolicyCheck:
    """WSGI middleware: refuse browser-POST uploads that break their signed policy."""

    def __init__(self, app) -> None:
        self.app = app
        self.refused: list[str] = []

    def __call__(self, environ, start_response):
        content_type = environ.get("CONTENT_TYPE", "")
        if environ["REQUEST_METHOD"] == "POST" and content_type.startswith("multipart/form-data"):
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length)
            probe = dict(environ, **{"wsgi.input": io.BytesIO(body)})
            _, form, files = parse_form_data(probe)
            upload = files.get("file")
            size = len(upload.read()) if upload is not None else 0
            for part in files.values():
                part.close()
            bucket = environ["PATH_INFO"].strip("/").split("/")[0]
            try:
                check_post(dict(form.items()), size, bucket)
            except PolicyRefused as refused:
                self.refused.append(refused.code)
                xml = (
                    f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{refused.code}</Code>"
                    f"<Message>{escape(refused.message)}</Message></Error>"
                ).encode()
                start_response(
                    f"{refused.status} {'Bad Request' if refused.status == 400 else 'Forbidden'}",
                    [("Content-Type", "application/xml"), ("Content-Length", str(len(xml)))],
                )
                return [xml]
            environ["wsgi.input"] = io.BytesIO(body)
        return self.app(environ, start_response)


class PolicyCheckingMotoServer(ThreadedMotoServer):
    """moto's threaded server on loopback, behind the POST policy check."""

    def __init__(self) -> None:
        super().__init__(ip_address="127.0.0.1", port=0, verbose=False)
        self.policy_check: PostPolicyCheck | None = None

    def _server_entry(self) -> None:
        self.policy_check = PostPolicyCheck(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(
            self._ip_address,
            self._port,
            self.policy_check,
            True,
            request_handler=MotoRequestHandler,
        )
        self._server_ready_event.set()
        self._server.serve_forever()

    @property
    def url(self) -> str:
        host, port = self.get_host_and_port()
        return f"http://{host}:{port}"
