"""Benchmark: upload a 500 MB video body through local storage to the running service and show
that the service's memory stays near its idle size.

    .venv/bin/python benchmarks/upload_memory.py [--megabytes 500] [--method post|put]
                                                 [--keep]

Starts the service as it runs in production (gunicorn, one sync worker, `COACHING_ENV=production`)
on 127.0.0.1 with a SQLite database and `MEDIA_STORAGE=local` in a temporary folder, creates a
practice, therapist and consenting patient through the services, then, as the patient's app:
starts a video message of the given size, sends the body to the returned upload URL — by default
the multipart POST the `upload` object describes, or a raw PUT — streamed from a generator so the
client holds only 1 MiB at a time, and completes the message (the service checks the stored size).

It prints the worker's resident memory when idle and its peak during the upload (Linux
`VmHWM`, reset just before the upload through `/proc/<pid>/clear_refs`, and cross-checked by
sampling `VmRSS` every 20 ms), the growth, and the throughput. It exits non-zero when the peak
grows by more than 64 MiB over idle (the upload is meant to be streamed to disk in 1 MiB chunks).
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

MIB = 1024 * 1024
ALLOWED_GROWTH = 64 * MIB
CHUNK = MIB


class StreamedBody:
    """A request body of known length produced on the fly: prefix, `size` bytes, suffix."""

    def __init__(self, prefix: bytes, size: int, suffix: bytes) -> None:
        block = os.urandom(CHUNK)  # incompressible, like video
        self._parts = [memoryview(prefix), size, memoryview(suffix)]
        self._block = memoryview(block)
        self._length = len(prefix) + size + len(suffix)
        self._sent = 0

    def __len__(self) -> int:
        return self._length

    def read(self, amount: int = -1) -> bytes:
        amount = CHUNK if amount is None or amount < 0 else min(amount, CHUNK)
        while self._parts:
            head = self._parts[0]
            if isinstance(head, int):
                if head == 0:
                    self._parts.pop(0)
                    continue
                take = min(amount, head)
                self._parts[0] = head - take
                self._sent += take
                return bytes(self._block[:take])
            if len(head) == 0:
                self._parts.pop(0)
                continue
            take = head[:amount]
            self._parts[0] = head[len(take) :]
            self._sent += len(take)
            return bytes(take)
        return b""


def multipart_body(
    fields: dict[str, str], size: int, content_type: str
) -> tuple[StreamedBody, str]:
    boundary = secrets.token_hex(16)
    prefix = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    )
    prefix += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="video"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()
    suffix = f"\r\n--{boundary}--\r\n".encode()
    return StreamedBody(prefix, size, suffix), f"multipart/form-data; boundary={boundary}"


def status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not found for {pid}")


def worker_pid(master: int, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.1)
    raise RuntimeError("gunicorn started no worker")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def seed(env: dict[str, str]) -> tuple[str, str]:
    """Create a practice, therapist and consenting patient; return (access token, conversation)."""
    os.environ.update(env)
    from coaching import create_app
    from coaching.accounts import service as accounts
    from coaching.enrolment import service as enrolment
    from coaching.extensions import db
    from coaching.messaging import service as messaging
    from coaching.practices import service as practices

    app = create_app()
    with app.app_context():
        practice = practices.create_practice(name="Benchmark", city="Utrecht")
        therapist = practices.create_therapist(
            practice=practice,
            email="therapist@bench.test",
            display_name="Therapist",
            password="benchmark-password",
        )
        invite = enrolment.create_invite(therapist=therapist, referral_source="gp", channel="email")
        patient = enrolment.register_patient(
            invite_code=invite.code,
            email="patient@bench.test",
            password="benchmark-password",
            display_name="Patient",
            locale="nl",
            timezone="Europe/Amsterdam",
        )
        enrolment.accept_consent(patient=patient, version=enrolment.current_consent_version())
        conversation = messaging.ensure_conversation(
            patient_id=patient.id, therapist_id=therapist.id
        )
        pair = accounts.start_login(patient)
        db.session.commit()
        return pair.access_token, conversation.id


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=int, default=500, help="body size in MB (10^6 bytes)")
    parser.add_argument("--method", choices=("post", "put"), default="post")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    size = args.megabytes * 1_000_000

    folder = Path(tempfile.mkdtemp(prefix="coaching-upload-bench-"))
    port = free_port()
    env = {
        "COACHING_ENV": "production",
        "SECRET_KEY": secrets.token_urlsafe(48),
        "DATABASE_URL": f"sqlite:///{folder / 'bench.db'}",
        "MEDIA_STORAGE": "local",
        "MEDIA_ROOT": str(folder / "media"),
        "SCHEDULER_IN_PROCESS": "false",
        "MAX_VIDEO_BYTES": str(max(size, 1024**3)),
    }
    child_env = {**os.environ, **env}
    bin_dir = Path(sys.executable).parent
    subprocess.run(
        [str(bin_dir / "flask"), "--app", "wsgi", "db", "upgrade"],
        cwd=ROOT,
        env=child_env,
        check=True,
        capture_output=True,
    )
    token, conversation_id = seed(env)
    server = subprocess.Popen(
        [
            str(bin_dir / "gunicorn"),
            "--workers",
            "1",
            "--bind",
            f"127.0.0.1:{port}",
            "--timeout",
            "600",
            "--log-level",
            "warning",
            "wsgi:app",
        ],
        cwd=ROOT,
        env=child_env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if requests.get(f"{base}/healthz", timeout=5).status_code == 200:
                    break
            except requests.RequestException:  # not listening yet, or the worker still booting
                time.sleep(0.2)
        else:
            raise RuntimeError("the service did not start")
        pid = worker_pid(server.pid)
        headers = {"Authorization": f"Bearer {token}"}
        # Warm up the worker (imports, first queries) before measuring its idle size.
        for _ in range(3):
            requests.get(f"{base}/api/v1/conversations", headers=headers, timeout=10)
        created = requests.post(
            f"{base}/api/v1/conversations/{conversation_id}/messages",
            json={"kind": "video", "content_type": "video/mp4", "size_bytes": size},
            headers=headers,
            timeout=30,
        )
        created.raise_for_status()
        message = created.json()
        upload = message["upload"]

        idle_kib = status_kib(pid, "VmRSS")
        try:
            Path(f"/proc/{pid}/clear_refs").write_text("5")  # reset the peak (VmHWM)
            hwm_reset = True
        except OSError:
            hwm_reset = False
        samples: list[int] = []
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                samples.append(status_kib(pid, "VmRSS"))
                time.sleep(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.perf_counter()
        if args.method == "post":
            body, content_type = multipart_body(upload["fields"], size, "video/mp4")
            response = requests.post(
                upload["url"], data=body, headers={"Content-Type": content_type}, timeout=600
            )
        else:
            body = StreamedBody(b"", size, b"")
            response = requests.put(
                upload["url"], data=body, headers={"Content-Type": "video/mp4"}, timeout=600
            )
        elapsed = time.perf_counter() - started
        done.set()
        sampler.join()
        if response.status_code != 204:
            raise RuntimeError(f"upload answered {response.status_code}: {response.text[:300]}")
        peak_kib = status_kib(pid, "VmHWM") if hwm_reset else max(samples)
        sampled_kib = max(samples) if samples else peak_kib
        completed = requests.post(
            f"{base}/api/v1/messages/{message['id']}/complete", headers=headers, timeout=30
        )
        stored = sum(p.stat().st_size for p in (folder / "media").rglob("*") if p.is_file())

        growth = (peak_kib - idle_kib) * 1024
        print(
            f"upload            {args.method.upper()} of {size / 1e6:.0f} MB through local storage"
        )
        print(f"throughput        {size / 1e6 / elapsed:.1f} MB/s ({elapsed:.1f} s)")
        print(f"service idle RSS  {idle_kib / 1024:.1f} MiB")
        print(
            f"service peak RSS  {peak_kib / 1024:.1f} MiB (sampled max {sampled_kib / 1024:.1f} MiB)"
        )
        print(f"growth            {growth / MIB:+.1f} MiB (allowed {ALLOWED_GROWTH / MIB:.0f} MiB)")
        print(f"stored            {stored} bytes; complete -> {completed.json().get('status')}")
        ok = growth <= ALLOWED_GROWTH and stored == size and completed.status_code == 200
        print("OK" if ok else "FAILED")
        return 0 if ok else 1
    finally:
        server.terminate()
        server.wait(timeout=30)
        if args.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
