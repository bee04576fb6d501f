"""Dispatch on any database: leases, retries with backoff, senders that fail, missing devices."""

from __future__ import annotations

from datetime import timedelta

import pytest

from coaching.extensions import db
from coaching.notifications import service
from coaching.notifications.dispatch import (
    backoff_seconds,
    claim_batch,
    dispatch_due,
    process_batch,
)
from coaching.notifications.senders import LogSender, PushResult, PushSender, collapse_id


def _enqueue(patient, key="message:k1", **kw):
    row = service.enqueue(
        recipient_id=patient.id,
        category=kw.pop("category", "message"),
        key=key,
        title={"nl": "Nieuw bericht", "en": "New message"},
        body={"nl": "Er is een bericht.", "en": "There is a message."},
        data={"link": "/messages"},
        **kw,
    )
    db.session.commit()
    return row


class FailingSender(PushSender):
    name = "failing"

    def __init__(self):
        self.calls = 0

    def send(self, messages):
        self.calls += 1
        raise ConnectionError("push service unreachable")


class ScriptedSender(PushSender):
    name = "scripted"

    def __init__(self, *results):
        self.results = list(results)
        self.sent = []

    def send(self, messages):
        self.sent.extend(messages)
        return [self.results.pop(0) for _ in messages]


def test_enqueue_is_idempotent_by_key(make):
    patient = make.patient()
    first = _enqueue(patient)
    again = _enqueue(patient)
    assert first.id == again.id


def test_enqueue_refuses_unknown_categories_and_large_or_odd_data(make):
    patient = make.patient()
    with pytest.raises(ValueError, match="category"):
        _enqueue(patient, key="x1", category="marketing")
    with pytest.raises(ValueError, match="bytes"):
        service.enqueue(
            recipient_id=patient.id,
            category="message",
            key="x2",
            title={"nl": "t", "en": "t"},
            body={"nl": "b", "en": "b"},
            data={"link": "/" + "x" * 5000},
        )
    with pytest.raises(ValueError, match="strings"):
        service.enqueue(
            recipient_id=patient.id,
            category="message",
            key="x3",
            title={"nl": "t", "en": "t"},
            body={"nl": "b", "en": "b"},
            data={"pain_score": 7},
        )


def test_sent_in_the_recipients_language_with_the_deep_link_only(make, h):
    patient = make.patient(locale="en")
    h.device(patient)
    _enqueue(patient)
    assert dispatch_due() == {"claimed": 1, "sent": 1}
    (push,) = h.pushes()
    assert push.title == "New message"
    assert push.data == {"link": "/messages"}
    row = h.rows()[0]
    assert row.status == "sent" and row.sent_at == h.clock.now() and row.attempts == 1


def test_no_device_records_skipped(make, h):
    patient = make.patient()
    _enqueue(patient)
    dispatch_due()
    row = h.rows()[0]
    assert (row.status, row.last_error) == ("skipped", "no active device")


def test_each_active_device_gets_the_push(make, h):
    patient = make.patient()
    h.device(patient, token="phone")
    h.device(patient, token="tablet", platform="ios")
    old = h.device(patient, token="old-phone")
    service.deactivate_devices({old.id: "unregistered"})
    db.session.commit()
    _enqueue(patient)
    dispatch_due()
    assert sorted(p.platform for p in h.pushes()) == ["android", "ios"]


def test_a_claimed_row_left_unfinished_is_retried_after_the_lease(make, h, app):
    patient = make.patient()
    h.device(patient)
    _enqueue(patient)
    claimed = claim_batch()  # ... and then the process dies: nothing is recorded
    assert len(claimed) == 1
    assert dispatch_due() == {}  # still leased
    h.clock.advance(seconds=119)
    assert dispatch_due() == {}
    h.clock.advance(seconds=2)
    assert dispatch_due() == {"claimed": 1, "sent": 1}
    row = h.rows()[0]
    assert (row.status, row.attempts) == ("sent", 2)


def test_a_result_is_recorded_only_under_the_current_lease(make, h):
    patient = make.patient()
    h.device(patient)
    _enqueue(patient)
    slow = claim_batch()
    h.clock.advance(seconds=200)  # the first dispatcher overran its lease
    fast = claim_batch()
    assert [r.id for r in fast] == [r.id for r in slow]
    process_batch(fast, ScriptedSender(PushResult("transient", "UNAVAILABLE")))
    retry_at = h.rows()[0].due_at
    process_batch(slow, LogSender())  # its late "sent" must not overwrite the newer state
    row = h.rows()[0]
    assert (row.status, row.due_at) == ("scheduled", retry_at)


def test_a_sender_that_raises_loses_nothing_and_gives_up_after_the_limit(make, h, app):
    patient = make.patient()
    h.device(patient)
    _enqueue(patient)
    sender = FailingSender()
    delays = []
    for _ in range(6):
        dispatch_due(sender=sender)
        row = h.rows()[0]
        if row.status != "scheduled":
            break
        assert "unreachable" in row.last_error
        delays.append(row.due_at - h.clock.now())
        h.clock.set(row.due_at)
    row = h.rows()[0]
    assert row.status == "failed"
    assert "gave up after 6 attempts" in row.last_error
    assert sender.calls == 6
    # Exponential with jitter: each wait within [d/2, d] for d = 30 s * 2^(n-1).
    for n, delay in enumerate(delays, start=1):
        ceiling = 30 * 2 ** (n - 1)
        assert ceiling / 2 <= delay.total_seconds() <= ceiling


def test_permanent_errors_fail_without_retry_and_dead_tokens_deactivate(make, h):
    patient = make.patient()
    other = make.patient()
    h.device(patient)
    dead = h.device(other)
    _enqueue(patient, key="k-permanent")
    _enqueue(other, key="k-dead")
    dispatch_due(
        sender=ScriptedSender(
            PushResult("permanent", "INVALID_ARGUMENT"), PushResult("unregistered", "UNREGISTERED")
        )
    )
    rows = {r.idempotency_key: r for r in h.rows()}
    assert rows["k-permanent"].status == "failed"
    assert rows["k-dead"].status == "skipped"
    db.session.refresh(dead)
    assert dead.is_active is False and "UNREGISTERED" in dead.deactivation_reason


def test_retry_after_and_quota_set_the_next_try(make, h):
    patient = make.patient()
    h.device(patient)
    _enqueue(patient, key="k-retry-after")
    dispatch_due(sender=ScriptedSender(PushResult("transient", "UNAVAILABLE", retry_after=600)))
    row = h.rows()[0]
    assert row.due_at - h.clock.now() >= timedelta(seconds=600)
    h.clock.set(row.due_at)
    dispatch_due(sender=ScriptedSender(PushResult("quota", "QUOTA_EXCEEDED")))
    row = h.rows()[0]
    assert row.due_at - h.clock.now() >= timedelta(seconds=60)
    assert row.status == "scheduled"


def test_backoff_grows_exponentially_with_jitter_and_a_ceiling(app):
    samples = [backoff_seconds(3) for _ in range(200)]
    assert min(samples) >= 60 and max(samples) <= 120
    assert len(set(samples)) > 100  # jittered
    assert backoff_seconds(30) <= 3600
    assert backoff_seconds(1, quota=True) >= 60
    assert backoff_seconds(1, retry_after=900) >= 900


def test_collapse_id_is_the_key_or_a_digest_that_fits_apns():
    assert collapse_id("practice:abc:2026-03-02") == "practice:abc:2026-03-02"
    long_key = "questionnaire:" + "p" * 36 + ":eq5d5l:month12:2"
    assert len(collapse_id(long_key)) <= 64
    assert collapse_id(long_key) == collapse_id(long_key)


def test_devices_unseen_for_sixty_days_are_pruned(make, h):
    from coaching.notifications.jobs import prune_devices

    patient = make.patient()
    stale = h.device(patient, token="stale").id
    h.clock.advance(days=30)
    fresh = h.device(patient, token="fresh").id
    h.clock.advance(days=31)
    assert prune_devices(h.clock.now())["devices"] == 1
    db.session.expire_all()
    from coaching.notifications.models import Device

    assert db.session.get(Device, stale) is None
    assert db.session.get(Device, fresh) is not None
