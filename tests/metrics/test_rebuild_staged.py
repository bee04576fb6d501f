"""`metrics rebuild` on PostgreSQL builds the new milestone table on two helper connections
beside the live one and then puts it in its place: the rows, the key and the index names come
out as before, an event written meanwhile waits and is kept, a failing helper only costs time,
and the rebuild keeps to its own transaction where that is asked for or needed (where a failure
rolls back its index drops too)."""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import Index, inspect, text
from sqlalchemy.exc import DBAPIError, OperationalError

from coaching.enrolment.models import Invite
from coaching.extensions import db
from coaching.metrics import service
from coaching.metrics.models import FunnelMilestone
from tests.conftest import START
from tests.metrics.test_funnel_property import _snapshot

postgres_only = pytest.mark.skipif(
    not os.environ.get("COACHING_TEST_DATABASE_URL", "").startswith("postgresql"),
    reason="the rebuild uses helper connections on PostgreSQL only",
)


@pytest.fixture
def invites(make, clock):
    """Committed invites with steps reached (one occurrence before the previous step), and the
    invites table analysed, so that the rebuild cuts them in two halves."""
    therapist = make.therapist()
    made = []
    for n in range(8):
        clock.set(START - timedelta(days=5) + timedelta(hours=n))
        invite = make.invite(therapist)
        at = clock.now()
        for step, hours in (("invite_opened", 1), ("registered", 3 + n), ("consented", 2 * n)):
            service.record_event(invite=invite, name=step, occurred_at=at + timedelta(hours=hours))
        made.append(invite)
    clock.set(START)
    db.session.commit()
    if db.engine.dialect.name == "postgresql":
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("ANALYZE invites"))
    return made


def _table_oid() -> int:
    return db.session.execute(text("SELECT to_regclass('funnel_milestones')::oid")).scalar()


def _schema() -> tuple:
    """The milestone table as the database has it: columns, key, and indexes with definitions."""
    found = inspect(db.engine)
    columns = [
        (c["name"], str(c["type"]), c["nullable"])
        for c in found.get_columns(FunnelMilestone.__tablename__)
    ]
    key = found.get_pk_constraint(FunnelMilestone.__tablename__)
    indexes = db.session.execute(
        text(
            "SELECT indexname, regexp_replace(indexdef, '^.* USING ', '') FROM pg_indexes"
            " WHERE tablename = 'funnel_milestones' ORDER BY indexname"
        )
    ).all()
    return columns, (key["name"], key["constrained_columns"]), indexes


def _fills(monkeypatch) -> list[tuple[str, int]]:
    """Records which thread computed how many rows."""
    calls = []
    fill = service._fill_staged

    def recorded(connection, statements, cut):
        rows = fill(connection, statements, cut)
        calls.append((threading.current_thread().name, rows))
        return rows

    monkeypatch.setattr(service, "_fill_staged", recorded)
    return calls


@postgres_only
def test_the_rebuild_builds_a_new_table_on_two_connections_with_the_same_rows_and_names(
    app, invites, monkeypatch
):
    expected = _snapshot()  # the rows kept up to date event by event
    # The derived rows are lost or wrong; the rebuild brings them back from the raw events.
    db.session.execute(
        text("DELETE FROM funnel_milestones WHERE invite_id = :id"), {"id": invites[0].id}
    )
    db.session.execute(text("UPDATE funnel_milestones SET registered_ts = 0"))
    db.session.commit()
    before_oid, before_schema = _table_oid(), _schema()
    db.session.rollback()
    calls = _fills(monkeypatch)

    result = app.test_cli_runner().invoke(args=["metrics", "rebuild"])

    assert result.exit_code == 0, result.output
    assert "8 funnel_milestones" in result.output and "4/4" in result.output
    db.session.expire_all()
    assert _snapshot() == expected
    assert len(expected[0]) == 8
    # A new table took the old one's place, with the same columns, key and indexes (by name).
    assert _table_oid() != before_oid
    assert _schema() == before_schema
    assert (
        db.session.execute(text("SELECT to_regclass('funnel_milestones_rebuild')")).scalar() is None
    )
    # Each half of the invites on its own connection, one of them in the helper thread.
    assert sorted(name.startswith("metrics-rebuild") for name, _ in calls) == [False, True]
    assert all(rows > 0 for _, rows in calls) and sum(rows for _, rows in calls) == 8
    # The new table has planner statistics at once (the funnel splits its scans by them).
    analysed = db.session.execute(
        text("SELECT attname FROM pg_stats WHERE tablename = 'funnel_milestones'")
    ).scalars()
    assert {"invited_ts", "practice_id", "therapist_id"} <= set(analysed)


@postgres_only
def test_the_new_table_keeps_the_live_tables_owner_and_grants(app, invites):
    def privileges():
        return db.session.execute(
            text(
                "SELECT pg_get_userbyid(c.relowner), a.grantee, a.privilege_type, a.is_grantable"
                " FROM pg_class c, aclexplode(c.relacl) a"
                " WHERE c.oid = to_regclass('funnel_milestones') ORDER BY 2, 3"
            )
        ).all()

    oid = _table_oid()
    # A reporting role may read the table (PUBLIC here: roles are the cluster's, not the test's).
    db.session.execute(text("GRANT SELECT ON funnel_milestones TO PUBLIC"))
    db.session.commit()
    before = privileges()
    assert (0, "SELECT") in {(grantee, privilege) for _, grantee, privilege, _ in before}

    service.rebuild()
    db.session.commit()

    assert _table_oid() != oid
    assert privileges() == before


@postgres_only
def test_the_new_table_keeps_an_owner_other_than_the_rebuilds_role(app, invites):
    role = f"coaching_rebuild_owner_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"

    def owner() -> str:
        return db.session.execute(
            text(
                "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'funnel_milestones'"
            )
        ).scalar()

    db.session.execute(text(f"DROP ROLE IF EXISTS {role}"))
    db.session.execute(text(f"CREATE ROLE {role}"))
    db.session.execute(text(f"ALTER TABLE funnel_milestones OWNER TO {role}"))
    db.session.commit()
    try:
        service.rebuild()  # (as the tests' superuser, who may drop another role's table)
        db.session.commit()
        assert owner() == role
    finally:
        db.session.rollback()
        db.session.execute(text("ALTER TABLE funnel_milestones OWNER TO current_user"))
        db.session.execute(text(f"DROP ROLE {role}"))
        db.session.commit()


@postgres_only
def test_an_event_written_during_the_rebuild_waits_for_it_and_is_kept(app, invites, monkeypatch):
    invite_id = invites[5].id  # (registered at 8 h, consented at 10 h: it reaches baseline)
    written = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            with app.app_context():
                invite = db.session.get(Invite, invite_id)
                service.record_event(
                    invite=invite, name="baseline_completed", occurred_at=START - timedelta(days=1)
                )
                db.session.commit()
                written.set()
        except BaseException as error:  # (reported by the test below)
            errors.append(error)

    thread = threading.Thread(target=writer)
    fill = service._fill_staged

    def fill_while_an_event_waits(connection, statements, cut):
        if not thread.is_alive() and threading.current_thread() is threading.main_thread():
            thread.start()
            _wait_for_a_lock_wait(connection)
        return fill(connection, statements, cut)

    monkeypatch.setattr(service, "_fill_staged", fill_while_an_event_waits)

    counts = service.rebuild()
    assert not written.is_set()  # the writer waits for the rebuild's commit
    db.session.commit()
    thread.join(timeout=60)

    assert not thread.is_alive() and not errors and written.is_set()
    assert counts["funnel_milestones"] == 8
    db.session.expire_all()
    row = db.session.get(FunnelMilestone, invite_id)
    assert row.baseline_completed_ts is not None  # updated in the new table after the commit
    kept = _snapshot()
    service.rebuild()
    assert _snapshot() == kept


def _wait_for_a_lock_wait(connection) -> None:
    """Returns once another backend waits for a lock (here the writer, for its milestone row, which
    the rebuild's lock on the table holds back); fails after 30 s."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        waiting = connection.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND datname = current_database()"
            )
        ).scalar()
        if waiting:
            return
        time.sleep(0.01)
    raise AssertionError("no other backend ever waited for a lock")


@postgres_only
def test_two_rebuilds_at_once_take_turns(app, invites):
    expected = _snapshot()
    db.session.rollback()
    errors: list[BaseException] = []
    started = threading.Barrier(2)

    def rebuild() -> None:
        try:
            with app.app_context():
                started.wait(timeout=30)
                service.rebuild()
                db.session.commit()
        except BaseException as error:  # (reported by the test below)
            errors.append(error)

    threads = [threading.Thread(target=rebuild) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert not any(t.is_alive() for t in threads) and not errors
    db.session.expire_all()
    assert _snapshot() == expected
    assert _schema_names() == sorted(
        [FunnelMilestone.__table__.primary_key.name]
        + [index.name for index in FunnelMilestone.__table__.indexes]
    )


def _schema_names() -> list[str]:
    """The key and index names on the milestone table and on any table beside it."""
    return sorted(
        db.session.execute(
            text("SELECT indexname FROM pg_indexes WHERE tablename LIKE 'funnel_milestones%'")
        ).scalars()
    )


@postgres_only
def test_a_failing_helper_connection_costs_only_time(app, invites, monkeypatch, caplog):
    expected = _snapshot()
    oid = _table_oid()
    db.session.rollback()
    fill = service._fill_staged

    def failing(connection, statements, cut):
        if threading.current_thread().name.startswith("metrics-rebuild"):
            raise RuntimeError("helper connection lost")
        return fill(connection, statements, cut)

    monkeypatch.setattr(service, "_fill_staged", failing)

    with caplog.at_level(logging.WARNING, logger="coaching.metrics.service"):
        result = app.test_cli_runner().invoke(args=["metrics", "rebuild"])

    assert result.exit_code == 0, result.output
    assert "4/4" in result.output  # every stage reported once
    assert "helper connections failed" in caplog.text and "helper connection lost" in caplog.text
    db.session.expire_all()
    assert _snapshot() == expected
    assert _table_oid() == oid  # rebuilt in place, in the command's transaction
    assert (
        db.session.execute(text("SELECT to_regclass('funnel_milestones_rebuild')")).scalar() is None
    )


@postgres_only
def test_a_table_left_by_a_crashed_rebuild_is_replaced(app, invites):
    expected = _snapshot()
    db.session.rollback()
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("CREATE TABLE funnel_milestones_rebuild (half_done int)"))

    service.rebuild()
    db.session.commit()

    db.session.expire_all()
    assert _snapshot() == expected
    assert (
        db.session.execute(text("SELECT to_regclass('funnel_milestones_rebuild')")).scalar() is None
    )


@postgres_only
def test_the_rebuild_keeps_to_its_transaction_when_asked_or_when_it_has_written(
    app, invites, monkeypatch
):
    expected = _snapshot()
    oid = _table_oid()
    db.session.rollback()
    monkeypatch.setitem(app.config, "METRICS_REBUILD_CONNECTIONS", 1)
    service.rebuild()
    assert _snapshot() == expected and _table_oid() == oid
    db.session.rollback()

    monkeypatch.setitem(app.config, "METRICS_REBUILD_CONNECTIONS", 2)
    service.record_event(invite=invites[2], name="baseline_completed", occurred_at=START)
    expected = _snapshot()  # with the event this transaction wrote (helpers could not see it)
    service.rebuild()
    assert _snapshot() == expected and _table_oid() == oid
    db.session.rollback()


def test_sqlite_rebuilds_in_its_transaction(app, invites):
    if db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite only")
    expected = _snapshot()
    assert not service._staged_rebuild_possible()
    service.rebuild()
    assert _snapshot() == expected


def test_a_failing_rebuild_leaves_the_table_and_its_indexes(app, invites, monkeypatch):
    """The rebuild in one transaction drops the indexes first; on either database those drops
    are part of the transaction, so a failure after them (here the insert) rolls back to the
    old rows with every index."""
    monkeypatch.setitem(app.config, "METRICS_REBUILD_CONNECTIONS", 1)
    expected = _snapshot()
    indexes = {index.name for index in FunnelMilestone.__table__.indexes}

    def present() -> set[str]:
        found = inspect(db.engine).get_indexes(FunnelMilestone.__tablename__)
        return {index["name"] for index in found}

    assert present() == indexes
    monkeypatch.setattr(
        service, "_milestone_rebuild_sql", lambda *a, **k: "SELECT no_such_column FROM invites"
    )
    with pytest.raises(DBAPIError):
        service.rebuild()
    db.session.rollback()
    assert present() == indexes
    assert _snapshot() == expected


def test_sqlite_builds_the_indexes_with_a_second_sorter_thread_and_puts_the_settings_back(
    app, invites, monkeypatch
):
    if db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite only")
    connection = db.session.connection()

    def settings() -> tuple[int, int]:
        return (
            connection.exec_driver_sql("PRAGMA threads").scalar(),
            connection.exec_driver_sql("PRAGMA cache_size").scalar(),
        )

    before = settings()
    seen = []
    create = Index.create

    def recording_create(index, bind, **kw):
        seen.append(settings())
        return create(index, bind, **kw)

    monkeypatch.setattr(Index, "create", recording_create)
    expected = _snapshot()
    service.rebuild()
    assert seen and set(seen) == {(2, -1000)}
    assert settings() == before
    assert _snapshot() == expected

    # A build that fails puts them back as well, and the rows and indexes stay as they were.
    def failing_create(index, bind, **kw):
        raise OperationalError("CREATE INDEX", {}, Exception("disk I/O error"))

    monkeypatch.setattr(Index, "create", failing_create)
    with pytest.raises(OperationalError):
        service.rebuild()
    assert settings() == before
    db.session.rollback()
    assert _snapshot() == expected
