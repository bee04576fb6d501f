"""Load benchmark: the service under gunicorn on PostgreSQL, driven by 200 simulated patients doing
the app's daily routine, against a minimal Flask JSON endpoint under the same gunicorn settings.

    .venv/bin/pip install -e '.[bench]'     # Locust
    .venv/bin/python benchmarks/load.py [--url postgresql://postgres@127.0.0.1:5432/bench_load]
        [--users 200] [--duration 120] [--spawn-rate 50] [--workers N] [--threads 4] [--wait 0]

The database is created if missing and rebuilt from the migrations (never point this at data you
keep); the content is synced and the patients are registered, consented and signed in through the
services. Then Locust (headless) runs `PatientUser` (benchmarks/load_locustfile.py) against
`gunicorn wsgi:app`, and `PingUser` against `gunicorn benchmarks.minimal_app:app`, each for
`--duration` seconds, and the script prints requests per second, p50/p95/p99 latency and errors
for both, and the service's share of the baseline. `--wait` is each user's think time between two
routines (0: every user asks again as soon as it has its answer, i.e. the throughput ceiling).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.pgdb import ensure_database  # noqa: E402

BIN = Path(sys.executable).parent
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/bench_load"
SECRET = "load-benchmark-secret-key-that-is-long-enough-0123456789"
PASSWORD = "load-benchmark-password"


def _env(url: str, media: str) -> dict:
    return {
        **os.environ,
        "DATABASE_URL": url,
        "SECRET_KEY": SECRET,
        "COACHING_ENV": "production",
        "MEDIA_ROOT": media,
        "SCHEDULER_IN_PROCESS": "false",
        "ACCESS_TOKEN_TTL_SECONDS": "7200",
        "PYTHONPATH": str(ROOT),
    }


def prepare(url: str, users: int, media: str) -> list[str]:
    """Rebuild the database, sync the content, and return an access token per patient."""
    import logging

    from flask_migrate import upgrade
    from sqlalchemy import text

    from coaching import create_app
    from coaching.extensions import db

    ensure_database(url)
    logging.disable(logging.INFO)
    # Cheap hashes while seeding: nobody signs in with a password during the run.
    app = create_app(
        {
            "ENV": "testing",
            "SQLALCHEMY_DATABASE_URI": url,
            "SECRET_KEY": SECRET,
            "MEDIA_ROOT": media,
            "ARGON2_MEMORY_KIB": 1024,
            "ARGON2_TIME_COST": 1,
            "SCHEDULER_IN_PROCESS": "false",
            "ACCESS_TOKEN_TTL": __import__("datetime").timedelta(hours=2),
        }
    )
    with app.app_context():
        with db.engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        upgrade()
    subprocess.run(
        [str(BIN / "flask"), "--app", "wsgi", "modules", "sync"],
        cwd=ROOT,
        env=_env(url, media),
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    from coaching.accounts import service as accounts
    from coaching.enrolment import service as enrolment
    from coaching.practices import service as practices

    tokens = []
    with app.app_context():
        practice = practices.create_practice(name="Fysio Belasting", city="Utrecht")
        therapists = [
            practices.create_therapist(
                practice=practice,
                email=f"therapist{i}@load.test",
                display_name=f"Therapeut {i}",
                password=PASSWORD,
            )
            for i in range(max(1, users // 25))
        ]
        for i in range(users):
            invite = enrolment.create_invite(
                therapist=therapists[i % len(therapists)],
                referral_source="gp",
                channel="email",
                expires_in_days=None,
            )
            patient = enrolment.register_patient(
                invite_code=invite.code,
                email=f"patient{i}@load.test",
                password=PASSWORD,
                display_name=f"Patiënt {i}",
                locale="nl",
                timezone="Europe/Amsterdam",
            )
            enrolment.accept_consent(patient=patient, version=enrolment.current_consent_version())
            tokens.append(accounts.start_login(patient).access_token)
            db.session.commit()
        db.engine.dispose()
    logging.disable(logging.NOTSET)
    return tokens


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _serve(target: str, env: dict, workers: int, threads: int):
    port = _free_port()
    process = subprocess.Popen(
        [
            str(BIN / "gunicorn"),
            "--workers",
            str(workers),
            "--worker-class",
            "gthread",
            "--threads",
            str(threads),
            "--bind",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
            target,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    probe = "/healthz" if target.startswith("wsgi") else "/ping"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base + probe, timeout=2) as answer:
                if answer.status == 200:
                    return process, base
        except OSError:
            time.sleep(0.3)
    process.kill()
    raise RuntimeError(f"gunicorn {target} did not come up")


def _stop(process) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def run_locust(user_class: str, host: str, args, env: dict, folder: str) -> dict:
    """Run Locust headless and return the aggregated figures of its CSV statistics."""
    prefix = str(Path(folder) / user_class)
    subprocess.run(
        [
            str(BIN / "locust"),
            "-f",
            str(ROOT / "benchmarks" / "load_locustfile.py"),
            "--headless",
            "--users",
            str(args.users),
            "--spawn-rate",
            str(args.spawn_rate),
            "--run-time",
            f"{args.duration}s",
            "--host",
            host,
            "--csv",
            prefix,
            "--only-summary",
            "--loglevel",
            "WARNING",
            user_class,
        ],
        cwd=ROOT,
        env=env,
        check=False,
        stdout=subprocess.DEVNULL,
    )
    with open(prefix + "_stats.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    total = next(r for r in rows if r["Name"] == "Aggregated")
    return {
        "requests": int(total["Request Count"]),
        "errors": int(total["Failure Count"]),
        "rps": float(total["Requests/s"]),
        "p50": float(total["50%"]),
        "p95": float(total["95%"]),
        "p99": float(total["99%"]),
        "per_endpoint": {
            r["Name"]: (int(r["Request Count"]), int(r["Failure Count"]), float(r["50%"]))
            for r in rows
            if r["Name"] != "Aggregated"
        },
    }


def _line(name: str, figures: dict) -> str:
    return (
        f"{name:<22} {figures['rps']:>9.1f} {figures['p50']:>8.0f} {figures['p95']:>8.0f} "
        f"{figures['p99']:>8.0f} {figures['requests']:>10} {figures['errors']:>8} "
        f"{figures['load']:>6.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--duration", type=int, default=120, help="seconds per run")
    parser.add_argument("--spawn-rate", type=float, default=50)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--wait", type=float, default=0.0, help="think time between routines (s)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="coaching-load-") as folder:
        media = str(Path(folder) / "media")
        started = time.monotonic()
        tokens = prepare(args.url, args.users, media)
        tokens_file = Path(folder) / "tokens.json"
        tokens_file.write_text(json.dumps(tokens))
        print(f"prepared {len(tokens)} patients in {time.monotonic() - started:.0f} s")
        env = {
            **_env(args.url, media),
            "LOAD_TOKENS": str(tokens_file),
            "LOAD_WAIT": str(args.wait),
        }

        results = {}
        for name, target, user_class in (
            ("service (routine)", "wsgi:app", "PatientUser"),
            ("minimal Flask /ping", "benchmarks.minimal_app:app", "PingUser"),
        ):
            process, base = _serve(target, env, args.workers, args.threads)
            try:
                results[name] = run_locust(user_class, base, args, env, folder)
                results[name]["load"] = os.getloadavg()[0]
            finally:
                _stop(process)

    print(
        f"\ngunicorn: {args.workers} workers x {args.threads} threads (gthread); "
        f"{args.users} users, think time {args.wait} s, {args.duration} s per run; "
        f"{os.cpu_count()} CPUs shared by PostgreSQL, gunicorn and Locust (load: the machine's "
        "1-minute load average at the end of each run)\n"
    )
    print(
        f"{'':<22} {'req/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'requests':>10} {'errors':>8}"
    )
    for name, figures in results.items():
        print(_line(name, figures))
    service, baseline = results["service (routine)"], results["minimal Flask /ping"]
    print(
        f"\nservice / minimal Flask: {service['rps'] / baseline['rps']:.2f} of the requests per "
        f"second; p50 x{service['p50'] / max(baseline['p50'], 1):.1f}, "
        f"p95 x{service['p95'] / max(baseline['p95'], 1):.1f}, "
        f"p99 x{service['p99'] / max(baseline['p99'], 1):.1f}"
    )
    print("\nper endpoint of the routine (requests, errors, p50 ms):")
    for endpoint, (count, errors, p50) in sorted(service["per_endpoint"].items()):
        print(f"  {endpoint:<42} {count:>8} {errors:>6} {p50:>7.0f}")


if __name__ == "__main__":
    main()
