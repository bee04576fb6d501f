"""Benchmark: plan and dispatch 100,000 daily practice reminders on PostgreSQL with the log
sender, with 1 and with 4 dispatcher processes; prints notifications per second for each.

    .venv/bin/python benchmarks/reminders.py [--url postgresql://postgres@127.0.0.1:5432/bench_reminders]
                                             [--patients 100000] [--batch-size 100]

The database is created if missing and rebuilt from the migrations (never point this at data
you keep). Patients, enrolments and one device each are bulk-inserted; then the planner runs as
one scheduler tick would an hour before their daily time, and the dispatchers (separate
processes, each with its own app, as `scheduler run` processes are) send everything due.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.pgdb import ensure_database  # noqa: E402

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/bench_reminders"
# A winter Tuesday: 19:00 in Amsterdam is 18:00 UTC.
PLAN_AT = datetime(2026, 1, 13, 17, 10, tzinfo=UTC)
SEND_AT = datetime(2026, 1, 13, 18, 0, tzinfo=UTC)
CONFIG = {
    "ENV": "testing",
    "TESTING": True,
    "SECRET_KEY": "benchmark-secret-key-that-is-long-enough-0123456789",
    "PUSH_SENDER": "log",
}


def _app(url: str, at: datetime, **config):
    import logging

    from coaching import create_app
    from coaching.clock import FrozenClock

    logging.getLogger("coaching").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    return create_app({**CONFIG, "SQLALCHEMY_DATABASE_URI": url, **config}, clock=FrozenClock(at))


def _rebuild_and_seed(url: str, patients: int) -> None:
    from flask_migrate import upgrade
    from sqlalchemy import text

    from coaching.accounts.models import Account
    from coaching.enrolment.models import Enrollment
    from coaching.extensions import db
    from coaching.notifications.models import Device
    from coaching.practices.models import Practice

    app = _app(url, PLAN_AT)
    with app.app_context():
        with db.engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        upgrade()
        now = PLAN_AT - timedelta(days=30)
        practice_id, therapist_id = str(uuid.uuid4()), str(uuid.uuid4())
        with db.engine.begin() as conn:
            conn.execute(
                Practice.__table__.insert(),
                [{"id": practice_id, "name": "Benchmark", "city": "Utrecht", "created_at": now}],
            )
            conn.execute(
                Account.__table__.insert(),
                [_account(therapist_id, "therapist", practice_id, None, now)],
            )
        for start in range(0, patients, 10_000):
            ids = [str(uuid.uuid4()) for _ in range(min(10_000, patients - start))]
            with db.engine.begin() as conn:
                conn.execute(
                    Account.__table__.insert(),
                    [_account(i, "patient", practice_id, therapist_id, now) for i in ids],
                )
                conn.execute(
                    Enrollment.__table__.insert(),
                    [
                        {
                            "id": str(uuid.uuid4()),
                            "patient_id": i,
                            "therapist_id": therapist_id,
                            "practice_id": practice_id,
                            "programme_slug": "benchmark",
                            "status": "active",
                            "started_on": date(2025, 12, 14),
                            "enrolled_at": now,
                            # Active yesterday: the practice reminder is today's only one.
                            "last_active_at": PLAN_AT - timedelta(days=1),
                        }
                        for i in ids
                    ],
                )
                conn.execute(
                    Device.__table__.insert(),
                    [
                        {
                            "id": str(uuid.uuid4()),
                            "account_id": i,
                            "token": f"bench-{i}",
                            "platform": "android",
                            "is_active": True,
                            "created_at": now,
                            "last_seen_at": now,
                        }
                        for i in ids
                    ],
                )
        db.engine.dispose()


def _account(account_id, role, practice_id, therapist_id, now) -> dict:
    return {
        "id": account_id,
        "email": f"{account_id}@bench.test",
        "password_hash": "-",
        "role": role,
        "display_name": "Benchmark",
        "locale": "nl",
        "timezone": "Europe/Amsterdam",
        "practice_id": practice_id,
        "therapist_id": therapist_id,
        "is_active": True,
        "created_at": now,
    }


def _analyze(url: str) -> None:
    """Refresh the planner statistics, as autovacuum would after a bulk load."""
    from sqlalchemy import text

    from coaching.extensions import db

    app = _app(url, SEND_AT)
    with app.app_context():
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
        db.engine.dispose()


def _plan(url: str) -> tuple[int, float]:
    from coaching.extensions import db
    from coaching.notifications import rules

    app = _app(url, PLAN_AT)
    with app.app_context():
        started = time.perf_counter()
        counts = rules.plan_daily(PLAN_AT)
        elapsed = time.perf_counter() - started
        db.engine.dispose()
    return counts.get("practice", 0), elapsed


def _dispatcher(url: str, batch_size: int, ready, go, results) -> None:
    from coaching.extensions import db
    from coaching.notifications.dispatch import dispatch_due
    from coaching.notifications.senders import LogSender

    app = _app(url, SEND_AT, PUSH_BATCH_SIZE=batch_size)
    with app.app_context():
        db.session.execute(db.text("SELECT 1"))  # connect before the clock starts
        db.session.commit()
        ready.release()
        go.wait()
        counts = dispatch_due(sender=LogSender())
        db.engine.dispose()
    results.put(counts)


def _dispatch(url: str, processes: int, batch_size: int) -> tuple[int, float]:
    ctx = multiprocessing.get_context("spawn")
    ready, go, results = ctx.Semaphore(0), ctx.Event(), ctx.Queue()
    workers = [
        ctx.Process(target=_dispatcher, args=(url, batch_size, ready, go, results))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    for _ in workers:
        ready.acquire()
    started = time.perf_counter()
    go.set()
    counts = [results.get() for _ in workers]
    elapsed = time.perf_counter() - started
    for worker in workers:
        worker.join()
    return sum(c.get("sent", 0) for c in counts), elapsed


def _reset_queue(url: str) -> None:
    from sqlalchemy import text

    from coaching.extensions import db

    app = _app(url, SEND_AT)
    with app.app_context():
        with db.engine.begin() as conn:
            conn.execute(
                text(
                    "UPDATE notifications SET status = 'scheduled', attempts = 0, sent_at = NULL,"
                    " last_error = NULL, claim_token = NULL, due_at = scheduled_for"
                )
            )
            conn.execute(text("TRUNCATE push_log"))
        db.engine.dispose()
    _analyze(url)


def _count_log(url: str) -> tuple[int, int]:
    from sqlalchemy import text

    from coaching.extensions import db

    app = _app(url, SEND_AT)
    with app.app_context():
        with db.engine.connect() as conn:
            total, distinct = conn.execute(
                text("SELECT count(*), count(DISTINCT idempotency_key) FROM push_log")
            ).one()
        db.engine.dispose()
    return total, distinct


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=100)
    args = parser.parse_args()
    if not args.url.startswith("postgresql"):
        parser.error("the benchmark runs on PostgreSQL")

    ensure_database(args.url)
    started = time.perf_counter()
    _rebuild_and_seed(args.url, args.patients)
    _analyze(args.url)
    print(f"seeded {args.patients:,} patients in {time.perf_counter() - started:.1f}s")

    planned, elapsed = _plan(args.url)
    print(f"plan:       {planned:,} reminders in {elapsed:.1f}s = {planned / elapsed:,.0f}/s")
    _analyze(args.url)
    for processes in (1, 4):
        if processes > 1:
            _reset_queue(args.url)
        sent, elapsed = _dispatch(args.url, processes, args.batch_size)
        total, distinct = _count_log(args.url)
        label = f"dispatch x{processes}:"
        print(
            f"{label:<12}{sent:,} sent in {elapsed:.1f}s = {sent / elapsed:,.0f} notifications/s"
            f" (log sender records {total:,}, {distinct:,} distinct)"
        )


if __name__ == "__main__":
    main()
