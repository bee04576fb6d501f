"""Several dispatcher processes on one PostgreSQL database: each notification sent exactly once,
and a dispatcher killed with SIGKILL mid-batch loses nothing when another takes over.

Each process creates its own app with the same database URL (as `scheduler run` processes do) and
uses the log sender, whose `push_log` table is the transport's record of what went out.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select, text

from coaching.extensions import db
from coaching.notifications.models import Notification, PushLogEntry
from coaching.notifications.senders import LogSender
from coaching.notifications.service import insert_ignore, new_row
from coaching.notifications.timing import Prefs

LEASE = 120


@pytest.fixture(autouse=True)
def _postgres_only(is_postgres):
    if not is_postgres:
        pytest.skip(
            "needs PostgreSQL: several processes claiming with FOR UPDATE SKIP LOCKED "
            "(set COACHING_TEST_DATABASE_URL)"
        )


def _app(url: str, at: datetime):
    import logging

    from coaching import create_app
    from coaching.clock import FrozenClock

    logging.getLogger("coaching").setLevel(logging.WARNING)
    return create_app(
        {
            "ENV": "testing",
            "TESTING": True,
            "SECRET_KEY": "test-secret-key-that-is-long-enough-0123456789",
            "SQLALCHEMY_DATABASE_URI": url,
            "PUSH_BATCH_SIZE": 50,
            "PUSH_LEASE_SECONDS": LEASE,
        },
        clock=FrozenClock(at),
    )


def _dispatcher(url: str, at: datetime, results, sender_kind: str = "log") -> None:
    """A dispatcher process: its own app, its own connections, until nothing is due."""
    from coaching.notifications.dispatch import dispatch_due

    app = _app(url, at)
    with app.app_context():
        sender = SlowLogSender() if sender_kind == "slow" else LogSender()
        counts = dispatch_due(sender=sender)
        db.engine.dispose()
    if results is not None:
        results.put(counts)


class SlowLogSender(LogSender):
    """The log sender, one message at a time and slowly, so a kill lands mid-batch."""

    def send(self, messages):
        results = []
        for message in messages:
            results.extend(super().send([message]))
            time.sleep(0.004)
        return results


def _due_notifications(make, clock, count: int, recipients: int) -> None:
    patients = []
    for _ in range(recipients):
        patient = make.patient()
        from coaching.notifications.service import register_device

        register_device(account=patient, token=f"token-{patient.id}", platform="android")
        patients.append(patient)
    db.session.commit()
    now = clock.now()
    prefs = Prefs(quiet_start=None, quiet_end=None)
    rows = [
        new_row(
            recipient_id=patients[i % recipients].id,
            category="message",
            key=f"message:load:{i}",
            title={"nl": "Nieuw bericht", "en": "New message"},
            body={"nl": "Er is een bericht.", "en": "There is a message."},
            data={"link": "/messages"},
            scheduled_for=now,
            prefs=prefs,
            now=now,
        )
        for i in range(count)
    ]
    for start in range(0, count, 1000):
        insert_ignore(rows[start : start + 1000])
    db.session.commit()


def _sends_per_key() -> dict[str, int]:
    db.session.rollback()
    return dict(
        db.session.execute(
            select(PushLogEntry.idempotency_key, func.count()).group_by(
                PushLogEntry.idempotency_key
            )
        ).all()
    )


def _statuses() -> dict[str, int]:
    return dict(
        db.session.execute(
            select(Notification.status, func.count()).group_by(Notification.status)
        ).all()
    )


def test_four_dispatcher_processes_send_each_notification_exactly_once(app, make, clock):
    total = 5000
    _due_notifications(make, clock, total, recipients=10)
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    processes = [
        ctx.Process(target=_dispatcher, args=(url, clock.now(), results)) for _ in range(4)
    ]
    for process in processes:
        process.start()
    counts = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    sends = _sends_per_key()
    assert len(sends) == total
    assert set(sends.values()) == {1}
    assert _statuses() == {"sent": total}
    assert sum(c.get("claimed", 0) for c in counts) == total
    assert sum(c.get("sent", 0) for c in counts) == total
    assert sum(1 for c in counts if c.get("sent")) >= 2  # the work was shared


def test_a_dispatcher_killed_mid_batch_leaves_nothing_unsent_or_doubled(app, make, clock):
    total = 2000
    _due_notifications(make, clock, total, recipients=10)
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    ctx = multiprocessing.get_context("spawn")
    victim = ctx.Process(target=_dispatcher, args=(url, clock.now(), None, "slow"))
    victim.start()
    deadline = time.monotonic() + 60
    with db.engine.connect() as conn:
        while time.monotonic() < deadline:
            sent = conn.execute(text("SELECT count(*) FROM push_log")).scalar_one()
            conn.rollback()
            if sent >= 320:
                break
            time.sleep(0.01)
    os.kill(victim.pid, signal.SIGKILL)
    victim.join(timeout=10)
    assert victim.exitcode == -signal.SIGKILL

    db.session.rollback()
    in_flight = set(
        db.session.execute(
            select(Notification.idempotency_key).where(
                Notification.status == "scheduled", Notification.claim_token.is_not(None)
            )
        ).scalars()
    )
    assert 0 < len(in_flight) <= 50  # killed holding one claimed, half-sent batch
    sent_before = _sends_per_key()
    assert 0 < len(sent_before) < total

    # Another dispatcher, started within the lease, leaves the killed one's rows alone ...
    _dispatcher(url, clock.now() + timedelta(seconds=5), None)
    db.session.rollback()
    leased = db.session.execute(
        select(func.count())
        .select_from(Notification)
        .where(Notification.idempotency_key.in_(in_flight), Notification.status == "scheduled")
    ).scalar_one()
    assert leased == len(in_flight)
    # ... and takes them over once the lease has run out.
    _dispatcher(url, clock.now() + timedelta(seconds=LEASE + 1), None)

    sends = _sends_per_key()
    assert len(sends) == total  # nothing unsent
    assert _statuses() == {"sent": total}
    doubled = {key for key, n in sends.items() if n > 1}
    assert max(sends.values()) <= 2
    # The only repeats are pushes of the killed batch that went out before the kill: the
    # transport's own repeat, harmless on the phone (same collapse id).
    assert doubled <= in_flight
    assert doubled == {key for key in in_flight if sent_before.get(key)}
