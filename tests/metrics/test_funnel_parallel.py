"""The funnel's scans split over two connections (PostgreSQL, large scopes): when it happens,
that the answer is the same, and that a failing second connection costs nothing but time."""

from __future__ import annotations

import logging
import os
from datetime import timedelta

import pytest
from sqlalchemy import text

from coaching.extensions import db
from coaching.metrics import funnel, service
from tests.conftest import START

postgres_only = pytest.mark.skipif(
    not os.environ.get("COACHING_TEST_DATABASE_URL", "").startswith("postgresql"),
    reason="the split runs on PostgreSQL only (SQLite keeps one connection)",
)


@pytest.fixture
def invites(make, clock):
    """Committed invites of two practices made in the three days before now, with steps
    reached at different times."""
    therapists = [make.therapist(make.practice()) for _ in range(2)] * 3
    made = []
    for n, therapist in enumerate(therapists):
        clock.set(START - timedelta(days=3) + timedelta(hours=n))
        invite = make.invite(therapist, channel=("email", "sms")[n % 2])
        for step, hours in (("invite_opened", 2), ("registered", 5 + n), ("consented", 30 * n)):
            if hours <= 60:
                service.record_event(
                    invite=invite, name=step, occurred_at=clock.now() + timedelta(hours=hours)
                )
        made.append(invite)
    clock.set(START)
    db.session.commit()
    return made


@pytest.fixture
def parallel_from(app):
    """Sets METRICS_PARALLEL_MIN_ROWS (restored afterwards) and forgets cached statistics."""
    before = app.config["METRICS_PARALLEL_MIN_ROWS"]

    def set_minimum(rows: int) -> None:
        app.config["METRICS_PARALLEL_MIN_ROWS"] = rows
        funnel._statistics.clear()

    yield set_minimum
    app.config["METRICS_PARALLEL_MIN_ROWS"] = before
    funnel._statistics.clear()


def _analyse() -> None:
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE funnel_milestones"))


def test_sqlite_and_small_tables_keep_one_connection(app, invites, parallel_from):
    parallel_from(40000)
    assert funnel._split_plan(funnel.Scope()) is None  # SQLite, or a table of 6 rows
    parallel_from(-1)
    assert funnel._split_plan(funnel.Scope()) is None


@postgres_only
def test_split_plan_when_worth_it_and_safe(app, invites, parallel_from):
    _analyse()
    parallel_from(0)
    plan = funnel._split_plan(funnel.Scope())
    assert plan is not None and plan.parallel and plan.helper is not None
    # The planner's statistics of these rows: the cut points lie among them.
    times = sorted(service.epoch_seconds(i.created_at) for i in invites)
    assert times[0] <= plan.middle_ts(None, None) <= times[-1]
    assert plan.middle_value("practice_id") in {str(i.practice_id) for i in invites}
    db.session.rollback()
    # Filters the duration indexes do not serve, and a transaction that has written (the second
    # connection would not see its rows), keep one connection.
    assert funnel._split_plan(funnel.Scope(channel="sms")) is None
    db.session.rollback()
    service.record_event(invite=invites[0], name="registered", occurred_at=START, once=False)
    assert funnel._split_plan(funnel.Scope()) is None
    db.session.rollback()
    # A scope estimated below the minimum: a third of the rows by date, half by practice.
    parallel_from(5)
    assert funnel._split_plan(funnel.Scope(practice_id=invites[0].practice_id)) is None
    assert funnel._split_plan(funnel.Scope()) is not None


@postgres_only
@pytest.mark.parametrize("breakdown", [None, "practice", "therapist", "channel"])
def test_two_connections_give_the_same_funnel(
    client, world, invites, parallel_from, monkeypatch, breakdown
):
    _analyse()
    query = "/api/v1/metrics/funnel?window_days=2" + (
        f"&breakdown={breakdown}" if breakdown else ""
    )
    parallel_from(-1)
    alone = client.get(query, headers=world.h["owner"])
    assert alone.status_code == 200
    helped = []
    run = funnel._Split.run_elsewhere
    monkeypatch.setattr(
        funnel._Split,
        "run_elsewhere",
        lambda self, sql, params: helped.append(sql) or run(self, sql, params),
    )
    parallel_from(0)
    split = client.get(query, headers=world.h["owner"])
    assert split.status_code == 200
    assert split.get_json() == alone.get_json()
    assert helped, "nothing ran on the second connection"
    assert alone.get_json()["steps"][1]["count"] >= len(invites)  # every invite was opened


@postgres_only
def test_a_failing_second_connection_runs_its_half_here(
    client, world, invites, parallel_from, monkeypatch, caplog
):
    _analyse()
    parallel_from(-1)
    alone = client.get("/api/v1/metrics/funnel?breakdown=practice", headers=world.h["owner"])

    def broken(self, sql, params):
        raise ConnectionError("helper connection lost")

    monkeypatch.setattr(funnel._Split, "run_elsewhere", broken)
    parallel_from(0)
    with caplog.at_level(logging.WARNING, logger="coaching.metrics.funnel"):
        split = client.get("/api/v1/metrics/funnel?breakdown=practice", headers=world.h["owner"])
    assert split.status_code == 200
    assert split.get_json() == alone.get_json()
    assert "the helper connection failed" in caplog.text
