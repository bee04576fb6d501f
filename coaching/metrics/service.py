"""Recording uptake events and patient activity, and keeping the derived metric tables current.

The append-only `uptake_events` and `patient_activity` rows are the truth. Each write here also
updates, in the same transaction, the invite's milestone row (`funnel_milestones`, with each
step's time and duration) and the patient's active weeks (`patient_active_weeks`), so that
dashboards query small tables. `rebuild()` recomputes both from the raw rows with SQL and gives
exactly the same rows. The definitions are written down in docs/metrics.md.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from functools import cache

from flask import current_app
from sqlalchemy import Index, MetaData, create_engine, delete, select, text
from sqlalchemy.pool import NullPool
from sqlalchemy.schema import CreateIndex

from coaching import clock
from coaching.db import dialect_insert
from coaching.extensions import db
from coaching.metrics.models import (
    DURATION_COLUMNS,
    FUNNEL_STEPS,
    OFFSET_COLUMNS,
    STEP_COLUMNS,
    FunnelMilestone,
    PatientActiveWeek,
    PatientActivity,
    UptakeEvent,
)

log = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# `active_week_4` is activity in days 21–27 after enrolment (the fourth week since enrolled_at).
WEEK_4_START = timedelta(days=21)
WEEK_4_END = timedelta(days=28)


def epoch_seconds(at: datetime) -> int:
    """Returns a time as whole UTC epoch seconds (truncated, never rounded up)."""
    return (at - EPOCH) // timedelta(seconds=1)


def chain_times(occurrences: dict[str, Iterable[int]]) -> list[int | None]:
    """Returns each funnel step's time: its earliest occurrence at or after the previous step's.

    `occurrences` maps a step name to the epoch seconds at which it was recorded (any order,
    repeats allowed). A step that is never reached leaves it and every later step None.
    """
    times: list[int | None] = []
    previous: int | None = None
    for index, step in enumerate(FUNNEL_STEPS):
        if index > 0 and previous is None:
            times.append(None)
            continue
        found = [t for t in occurrences.get(step, ()) if previous is None or t >= previous]
        previous = min(found) if found else None
        times.append(previous)
    return times


def _lock_milestone(invite_id: str) -> FunnelMilestone | None:
    # FOR UPDATE on PostgreSQL: concurrent events of one invite queue here, and the events read
    # afterwards (a new snapshot under READ COMMITTED) include the other transaction's event.
    return db.session.execute(
        select(FunnelMilestone)
        .where(FunnelMilestone.invite_id == invite_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()


def refresh_milestone(invite) -> FunnelMilestone:
    """Returns the invite's milestone row, recomputed from all of its uptake events."""
    row = _lock_milestone(invite.id)
    occurrences: dict[str, list[int]] = defaultdict(list)
    for name, occurred_at in db.session.execute(
        select(UptakeEvent.name, UptakeEvent.occurred_at).where(UptakeEvent.invite_id == invite.id)
    ):
        occurrences[name].append(epoch_seconds(occurred_at))
    times = chain_times(occurrences)
    attributes = {
        "patient_id": invite.patient_id,
        "practice_id": invite.practice_id,
        "therapist_id": invite.therapist_id,
        "referral_source": invite.referral_source,
        "channel": invite.channel,
    }
    values = (
        dict(zip(STEP_COLUMNS, times, strict=True))
        | dict(zip(OFFSET_COLUMNS, _offsets(times), strict=True))
        | dict(zip(DURATION_COLUMNS, _durations(times), strict=True))
        | attributes
    )
    if row is None:
        row = FunnelMilestone(invite_id=invite.id, **values)
        db.session.add(row)
    else:
        for key, value in values.items():
            if getattr(row, key) != value:
                setattr(row, key, value)
    db.session.flush()
    return row


def shift_invite_events(invite, shift: timedelta) -> None:
    """Moves every uptake event of an invite back by `shift` and recomputes its milestone row
    (demo data staged in the past; see enrolment's `move_enrolment_back`)."""
    for event in db.session.execute(
        select(UptakeEvent).where(UptakeEvent.invite_id == invite.id)
    ).scalars():
        event.occurred_at -= shift
        event.recorded_at -= shift
    db.session.flush()
    refresh_milestone(invite)


def _offsets(times: list[int | None]) -> list[int | None]:
    """Returns each step's time after `invited` as seconds since the invite (None: not reached)."""
    return [None if t is None else t - times[0] for t in times[1:]]


def _durations(times: list[int | None]) -> list[int | None]:
    """Returns how long each step after `invited` took: seconds since the previous step."""
    return [None if t is None else t - p for p, t in zip(times[:-1], times[1:], strict=True)]


def record_event(
    *, invite, name: str, occurred_at: datetime | None = None, patient_id=None, once: bool = True
) -> UptakeEvent | None:
    """Append an uptake event for an invite with its breakdown attributes, and update the
    invite's milestone row in the same transaction.

    Returns the new event, or None when `once` and the invite already has this step.
    """
    if name not in FUNNEL_STEPS:
        raise ValueError(f"unknown uptake step {name!r}")
    if once:
        # The invite's milestone row is locked first (PostgreSQL): two requests recording the
        # same step at once (an invite link opened twice) queue here, and the second then sees
        # the first's event instead of storing a second one.
        _lock_milestone(invite.id)
        exists = db.session.execute(
            select(UptakeEvent.id).where(
                UptakeEvent.invite_id == invite.id, UptakeEvent.name == name
            )
        ).first()
        if exists:
            return None
    now = clock.now()
    event = UptakeEvent(
        invite_id=invite.id,
        name=name,
        occurred_at=occurred_at or now,
        recorded_at=now,
        practice_id=invite.practice_id,
        therapist_id=invite.therapist_id,
        referral_source=invite.referral_source,
        channel=invite.channel,
        patient_id=patient_id or invite.patient_id,
    )
    db.session.add(event)
    db.session.flush()
    refresh_milestone(invite)
    return event


def _invite_of_patient(patient_id: str):
    from coaching.enrolment.models import Enrollment, Invite

    return db.session.execute(
        select(Invite)
        .join(Enrollment, Enrollment.invite_id == Invite.id)
        .where(Enrollment.patient_id == patient_id)
    ).scalar_one_or_none()


def record_patient_event(*, patient_id: str, name: str, occurred_at: datetime | None = None):
    """Append an uptake event for the invite a patient registered with (if any).

    Returns the new event or None (no invite, or the step was already recorded).
    """
    invite = _invite_of_patient(patient_id)
    if invite is None:
        return None
    return record_event(invite=invite, name=name, occurred_at=occurred_at, patient_id=patient_id)


def _upsert_ignore(model, values: dict) -> None:
    db.session.execute(dialect_insert(model).values(**values).on_conflict_do_nothing())


def week_since_enrolment(enrolled_at: datetime, at: datetime) -> int | None:
    """Returns the week since enrolment of a moment (1 = days 0–6), or None before enrolment.

    Both times are truncated to whole seconds first, as everywhere in the metrics.
    """
    seconds = epoch_seconds(at) - epoch_seconds(enrolled_at)
    if seconds < 0:
        return None
    return seconds // 604800 + 1


def record_activity(
    *, patient_id: str, kind: str, occurred_at: datetime | None = None
) -> PatientActivity:
    """Record that a patient did something, and keep their enrolment's last activity, their
    active weeks and the `active_week_4` step current.

    Returns the activity row.
    """
    from coaching.enrolment.models import Enrollment, Invite

    at = occurred_at or clock.now()
    row = PatientActivity(patient_id=patient_id, kind=kind, occurred_at=at)
    db.session.add(row)
    enrollment = db.session.execute(
        select(Enrollment).where(Enrollment.patient_id == patient_id)
    ).scalar_one_or_none()
    if enrollment is not None:
        if enrollment.last_active_at is None or enrollment.last_active_at < at:
            enrollment.last_active_at = at
        week = week_since_enrolment(enrollment.enrolled_at, at)
        if week is not None:
            _upsert_ignore(PatientActiveWeek, {"patient_id": patient_id, "week": week})
        if enrollment.invite_id is not None and week == 4:
            invite = db.session.get(Invite, enrollment.invite_id)
            if invite is not None and _week_4_occurrence_needed(invite.id, epoch_seconds(at)):
                record_event(
                    invite=invite,
                    name="active_week_4",
                    occurred_at=at,
                    patient_id=patient_id,
                    once=False,
                )
    db.session.flush()
    return row


def _week_4_occurrence_needed(invite_id: str, at: int) -> bool:
    """Returns whether an activity in week 4 may ever be the `active_week_4` step's time.

    Every week-4 activity is an occurrence of the step, but recording all of them would append
    an event per app start. One is redundant when an occurrence e <= it already exists with
    e >= the previous step's time: chain times only move earlier as events are added, so e
    stays eligible and is never later than this one. So the funnel is exact with far fewer rows.
    """
    row = _lock_milestone(invite_id)
    earlier = db.session.execute(
        select(UptakeEvent.occurred_at).where(
            UptakeEvent.invite_id == invite_id, UptakeEvent.name == "active_week_4"
        )
    ).scalars()
    recorded = [epoch_seconds(t) for t in earlier]
    if at in recorded:
        return False
    previous = row.first_video_exchanged_ts if row is not None else None
    if previous is None:
        return True
    return not any(previous <= e <= at for e in recorded)


# --- rebuild -----------------------------------------------------------------------------------


def _epoch_sql(column: str) -> str:
    if db.session.get_bind().dialect.name == "postgresql":
        return f"floor(date_part('epoch', {column}))::bigint"
    # SQLite keeps naive UTC text "YYYY-MM-DD HH:MM:SS.ffffff". strftime would round the fraction
    # to milliseconds (09:00:00.9995 becomes 09:00:01), so the fraction is cut off first.
    # unixepoch() (SQLite 3.38+) gives the same integer about twice as fast.
    if sqlite3.sqlite_version_info >= (3, 38, 0):
        return f"unixepoch(substr({column}, 1, 19))"
    return f"CAST(strftime('%s', substr({column}, 1, 19)) AS INTEGER)"


def _aggregate_sql(where: str = "") -> str:
    """Returns the SELECT of, per invite, each step's earliest time (n<k>) and the length of its
    in-order chain (`l`, see `_chain_length_sql`), of the events matching `where` (SQL) if given.

    The times are aggregated as stored and truncated to epoch seconds afterwards, once per
    invite instead of once per event (truncation keeps the order, so min commutes with it;
    SQLite's fixed-width text sorts in time order). Only the earliest: a latest time per step
    (to tell at once whether any occurrence is at or after the previous step) cost as many
    FILTER evaluations again for every event, for the few invites that search their events.
    """
    aggregates = []
    for index, step in enumerate(FUNNEL_STEPS):
        only = f"FILTER (WHERE name = '{step}')"
        aggregates.append(f"{_epoch_sql(f'min(occurred_at) {only}')} AS n{index}")
    grouped = (
        "SELECT invite_id, "
        + ", ".join(aggregates)
        + " FROM uptake_events"
        + (f" WHERE {where}" if where else "")
        + " GROUP BY invite_id"
    )
    # The grouped rows come out of a sub-select, so the chain length reads each aggregate's
    # value instead of computing it again.
    return f"SELECT a.*, {_chain_length_sql()} AS l FROM ({grouped}) AS a"


def _chain_length_sql() -> str:
    """Returns SQL of an invite's chain length from its n columns, negative when "dirty".

    `l` = L >= 0: each step's earliest occurrence is at or after the previous step's for the
    steps 0..L-1, and step L has no occurrence. The chain is then n0..n(L-1). `l` = -L: step
    L's earliest occurrence is before step L-1's, so the chain must search that invite's
    events from step L on (a later occurrence may be at or after it). One CASE of about two
    comparisons per step, evaluated once per invite.
    """
    last = len(FUNNEL_STEPS) - 1
    ladder = ["WHEN n0 IS NULL THEN 0"]
    for k in range(1, last + 1):
        ladder.append(f"WHEN n{k} IS NULL THEN {k}")
        ladder.append(f"WHEN n{k} < n{k - 1} THEN {-k}")
    return "CASE " + " ".join(ladder) + f" ELSE {last + 1} END"


def _milestone_rebuild_sql(
    aggregated: str | None = None,
    ordered: bool = False,
    target: str = "funnel_milestones",
    invites: str = "",
) -> str:
    """Returns INSERT INTO `target` ... SELECT computing every milestone row from the raw uptake
    events (or from `aggregated`, a table already holding `_aggregate_sql()`'s rows), of the
    invites matching `invites` (SQL on `i`, the invites table) if given.

    One pass aggregates, per invite and step, the earliest occurrence (n). Where each step's
    earliest occurrence is not before the previous step's (nearly every invite), the chain is
    just those earliest times up to the first missing step (`l` >= 0). Only the other invites
    ("dirty", `l` < 0: an occurrence before the previous step) go through the chain step by
    step, each step searching that invite's events again.
    """
    epoch = _epoch_sql("occurred_at")
    last = len(FUNNEL_STEPS) - 1
    clean_times = ", ".join(
        ["n0 AS t0"] + [f"CASE WHEN l > {k} THEN n{k} END AS t{k}" for k in range(1, last + 1)]
    )
    agg = (
        f"agg AS NOT MATERIALIZED (SELECT * FROM {aggregated})"
        if aggregated
        else f"agg AS MATERIALIZED ({_aggregate_sql()})"
    )
    layers = [
        agg,
        "c0 AS MATERIALIZED (SELECT agg.*, n0 AS t0 FROM agg WHERE l < 0)",
    ]
    for index in range(1, last + 1):
        prev = f"t{index - 1}"
        lookup = (
            f"(SELECT min({epoch}) FROM uptake_events u WHERE u.invite_id = c{index - 1}.invite_id"
            f" AND u.name = '{FUNNEL_STEPS[index]}' AND {_epoch_sql('u.occurred_at')} >= {prev})"
        )
        layers.append(
            f"c{index} AS MATERIALIZED (SELECT c{index - 1}.*, CASE"
            f" WHEN {prev} IS NULL OR n{index} IS NULL THEN NULL"
            f" WHEN n{index} >= {prev} THEN n{index} ELSE {lookup} END AS t{index}"
            f" FROM c{index - 1})"
        )
    t_list = ", ".join(f"t{i}" for i in range(last + 1))
    layers.append(
        f"chain AS (SELECT invite_id, {clean_times} FROM agg WHERE l >= 0"
        f" UNION ALL SELECT invite_id, {t_list} FROM c{last})"
    )
    columns = ", ".join(STEP_COLUMNS + OFFSET_COLUMNS + DURATION_COLUMNS)
    times = ", ".join(
        [f"c.t{i}" for i in range(last + 1)]
        + [f"c.t{i} - c.t0" for i in range(1, last + 1)]
        + [f"c.t{i} - c.t{i - 1}" for i in range(1, last + 1)]
    )
    return (
        f"INSERT INTO {target} (invite_id, patient_id, practice_id, therapist_id,"
        f" referral_source, channel, {columns}) "
        "WITH "
        + ", ".join(layers)
        + " SELECT "
        + ", ".join(
            _milestone_id(f"i.{c}") for c in ("id", "patient_id", "practice_id", "therapist_id")
        )
        + f", i.referral_source, i.channel, {times} FROM chain c JOIN invites i ON i.id = c.invite_id"
        + (f" WHERE {invites}" if invites else "")
        + (" ORDER BY i.id" if ordered else "")
    )


def _milestone_id(column: str) -> str:
    """Returns SQL for a text id as the milestone table stores it (uuid on PostgreSQL)."""
    if db.session.get_bind().dialect.name == "postgresql":
        return f"CAST({column} AS uuid)"
    return column


def _active_weeks_rebuild_sql() -> str:
    """Returns INSERT ... SELECT of every patient's active weeks from the raw activity rows."""
    seconds = f"({_epoch_sql('a.occurred_at')} - {_epoch_sql('e.enrolled_at')})"
    return (
        "INSERT INTO patient_active_weeks (patient_id, week) "
        f"SELECT DISTINCT a.patient_id, {seconds} / 604800 + 1 FROM patient_activity a"
        f" JOIN enrollments e ON e.patient_id = a.patient_id WHERE {seconds} >= 0"
    )


REBUILD_STAGES = ("milestones", "indexes", "active weeks", "vacuum")
# A temporary table of the rebuild (PostgreSQL), per session and dropped before the commit.
AGGREGATE = "metrics_rebuild_aggregate"
# PostgreSQL, on two connections: the new milestone table, built beside the live one and then
# put in its place (with its key and indexes renamed to the live ones' names).
STAGING = "funnel_milestones_rebuild"
# The statistics target of the first ANALYZE of a milestone table built beside the old one.
REBUILD_STATISTICS_TARGET = 30
# The rebuild's settings on PostgreSQL. The chained layers make the row estimates collapse; JIT
# compilation would then cost more than the query itself. The derived rows can always be
# recomputed, so no commit waits for the WAL flush (a crash right after one loses the rebuild,
# never consistency).
_REBUILD_SETTINGS = (
    ("jit", "off"),
    ("work_mem", "256MB"),
    ("maintenance_work_mem", "256MB"),
    ("synchronous_commit", "off"),
)
# The helper connections' own: one core each, so no parallel workers; and the one pass over the
# events grouped in the order of the (invite_id, name, occurred_at) index, read alone, instead of
# a hash table of wide groups (which took half again as long).
_HELPER_SETTINGS = (
    *_REBUILD_SETTINGS,
    ("enable_hashagg", "off"),
    ("max_parallel_workers_per_gather", "0"),
    ("max_parallel_maintenance_workers", "0"),
)


def rebuild(progress=None) -> dict[str, int]:
    """Recompute the milestone and active-week tables from the raw rows.

    Runs in the caller's transaction (the CLI commits once): readers see the old rows until the
    new ones are complete. On PostgreSQL, in a transaction that has written nothing yet and with
    METRICS_REBUILD_CONNECTIONS = 2, the new milestone table is computed and indexed on two
    connections at once and then takes the old one's place (`_rebuild_milestones_staged`);
    otherwise in this transaction alone (`_rebuild_milestones_here`). Returns the rows per table.
    """
    session = db.session

    def done() -> None:
        if progress is not None:
            progress.update(1)

    if _staged_rebuild_possible():
        stages = _Stages(done)
        milestones = _rebuild_milestones_staged(stages)
        if milestones is None:  # the helpers failed: report only the stages not reported yet
            milestones = _rebuild_milestones_here(stages.rest)
    else:
        milestones = _rebuild_milestones_here(done)
    counts = {"funnel_milestones": milestones}
    session.execute(delete(PatientActiveWeek))
    counts["patient_active_weeks"] = session.execute(text(_active_weeks_rebuild_sql())).rowcount
    done()
    session.expire_all()
    return counts


class _Stages:
    """Counts the stages reported, so that a rebuild started over reports only the others."""

    def __init__(self, done) -> None:
        self.done, self.reported = done, 0

    def __call__(self) -> None:
        self.reported += 1
        self.done()

    def rest(self) -> None:
        if self.reported:
            self.reported -= 1
        else:
            self.done()


def _set_rebuild_settings() -> None:
    settings = ", ".join(
        f"set_config('{name}', '{value}', true)" for name, value in _REBUILD_SETTINGS
    )
    db.session.execute(text(f"SELECT {settings}"))


def _rebuild_milestones_here(done) -> int:
    """Rebuilds the milestone table in this transaction: every index (on PostgreSQL the primary
    key too) is dropped and built again afterwards, since one sorted build is far cheaper than
    100,000 inserts into each."""
    session = db.session
    bind = session.connection()
    postgres = bind.dialect.name == "postgresql"
    table = FunnelMilestone.__table__
    if postgres:
        _set_rebuild_settings()
        # TRUNCATE is transactional here; readers wait for the commit instead of seeing a gap
        # (and nobody sees the table without its key in between).
        session.execute(text("TRUNCATE funnel_milestones"))
        session.execute(text(f"ALTER TABLE {table.name} DROP CONSTRAINT {table.primary_key.name}"))
    else:
        _begin_sqlite_transaction(bind)
    indexes = list(table.indexes)
    for index in indexes:
        index.drop(bind)
    if not postgres:
        # After dropping the indexes: deleting 100,000 rows from 20 indexes took longer.
        session.execute(delete(FunnelMilestone))
    if postgres:
        # INSERT ... SELECT never runs in parallel; CREATE TABLE AS may, so the one pass over
        # every raw event is aggregated into a temporary table first (dropped again below).
        # Grouped in the order of the (invite_id, name, occurred_at) index, read alone: no hash
        # table of 100,000 wide groups (which took half again as long).
        session.execute(text("SET LOCAL enable_hashagg = off"))
        session.execute(text(f"CREATE TEMPORARY TABLE {AGGREGATE} AS {_aggregate_sql()}"))
        session.execute(text("SET LOCAL enable_hashagg = on"))
        # No ANALYZE of it: the plan (two scans of it, a hash join with the invites) is the same
        # from its size alone, and sampling it cost a fifth of the milestone insert.
        milestones = _milestone_rebuild_sql(AGGREGATE)
    else:
        milestones = _milestone_rebuild_sql(ordered=True)
    rows = session.execute(text(milestones)).rowcount
    if postgres:
        session.execute(text(f"DROP TABLE {AGGREGATE}"))
    done()
    if postgres:
        session.execute(text(_primary_key_sql(table.name, table.primary_key.name)))
        for index in indexes:
            index.create(bind)
    else:
        with _sqlite_sorter_threads(bind):
            for index in indexes:
                index.create(bind)
    done()
    return rows


# SQLite's index builds sort on this connection's thread alone unless the sorter may use helper
# threads; it hands them sorted runs of about its memory limit (the page cache's size), so a
# smaller cache gives the second core runs to sort. Building the 20 indexes of 100,000 rows took
# 660 ms so instead of 745 ms (benchmarks/funnel.py's data, medians of five).
_SQLITE_SORTER_THREADS = 2
_SQLITE_SORTER_CACHE_KIB = 1000


@contextmanager
def _sqlite_sorter_threads(bind):
    """Lets SQLite's sorter use a second thread while the block runs (both settings are the
    connection's own, not the transaction's: they are put back afterwards)."""
    threads = bind.exec_driver_sql("PRAGMA threads").scalar()
    cache_size = bind.exec_driver_sql("PRAGMA cache_size").scalar()
    bind.exec_driver_sql(f"PRAGMA threads = {_SQLITE_SORTER_THREADS}")
    bind.exec_driver_sql(f"PRAGMA cache_size = {-_SQLITE_SORTER_CACHE_KIB}")
    try:
        yield
    finally:
        bind.exec_driver_sql(f"PRAGMA threads = {int(threads)}")
        bind.exec_driver_sql(f"PRAGMA cache_size = {int(cache_size)}")


def _begin_sqlite_transaction(bind) -> None:
    """Opens SQLite's transaction before the rebuild's first DROP INDEX. Python's sqlite3 module
    begins one implicitly only before an INSERT, UPDATE or DELETE, so the drops would otherwise
    each commit at once: a rebuild failing afterwards would leave the table without its indexes
    (and readers would see it so in between)."""
    if not bind.connection.dbapi_connection.in_transaction:
        bind.exec_driver_sql("BEGIN")


def _primary_key_sql(table: str, name: str) -> str:
    columns = ", ".join(c.name for c in FunnelMilestone.__table__.primary_key.columns)
    return f"ALTER TABLE {table} ADD CONSTRAINT {name} PRIMARY KEY ({columns})"


# --- PostgreSQL: the rebuild on two connections ------------------------------------------------
# In one transaction the rebuild is one core's work: about 0.8 s computing 100,000 rows from
# 1,000,000 events and 1 s building their 21 indexes and key (benchmarks/funnel.py). Another
# connection cannot see rows this transaction has not committed, so the new table is built
# beside the live one by two helper connections, in their own transactions (each computes the
# rows of half of the invites, then each builds indexes until none is left), and this
# transaction then drops the live table and renames the new one in its place. Its EXCLUSIVE
# lock on the milestone table, taken before the helpers start, keeps the result exact, as the
# TRUNCATE's lock does for the rebuild in one transaction: an event writer adds its event and
# then updates the invite's milestone row from all of the invite's events, so one whose event
# the helpers may not have seen waits for that row until this transaction has committed, and
# then updates the row in the new table (it holds nothing the rebuild needs meanwhile). Any other
# writer of the table, a second rebuild included, waits too; readers go on reading the old rows.


def _staged_rebuild_possible() -> bool:
    """True on PostgreSQL, with METRICS_REBUILD_CONNECTIONS = 2, in a transaction that has
    written nothing (the helper connections could not see what it wrote)."""
    if db.session.get_bind().dialect.name != "postgresql":
        return False
    if current_app.config.get("METRICS_REBUILD_CONNECTIONS", 2) < 2:
        return False
    return bool(db.session.execute(text("SELECT txid_current_if_assigned() IS NULL")).scalar())


def _helper_engine():
    options = " ".join(f"-c {name}={value}" for name, value in _HELPER_SETTINGS)
    # A rebuild is rare: its connections are opened for it and closed afterwards.
    return create_engine(
        db.engine.url,
        poolclass=NullPool,
        isolation_level="AUTOCOMMIT",
        connect_args={"options": options},
    )


@cache
def _staged_statements(dialect) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Returns the DDL building the staging table's key and indexes, the largest first, and the
    DDL giving them the live table's names once it has taken the live table's place (computed
    once: copying the table's metadata and compiling took 6-140 ms)."""
    table = FunnelMilestone.__table__
    staged = table.to_metadata(MetaData(), name=STAGING)
    key = f"{STAGING}_pkey"
    build = [_primary_key_sql(STAGING, key)]
    rename = [f"ALTER TABLE {table.name} RENAME CONSTRAINT {key} TO {table.primary_key.name}"]
    # The covering indexes of the counts (on `[group,] invited_ts, offsets`) hold every row and
    # up to ten columns; the duration indexes only the rows that reached their step. (Made anew
    # on the copy's columns: the copy's own indexes are named after the staging table.)
    indexes = sorted(table.indexes, key=lambda i: (not i.name.endswith("_invited_ts"), i.name))
    for number, index in enumerate(indexes):
        built = Index(
            f"{STAGING}_ix{number}",
            *(staged.c[column.name] for column in index.columns),
            unique=index.unique,
            **index.dialect_kwargs,
        )
        build.append(str(CreateIndex(built).compile(dialect=dialect)))
        rename.append(f"ALTER INDEX {built.name} RENAME TO {index.name}")
    return tuple(build), tuple(rename)


def _privileges_sql(live: str, staged: str) -> list[str]:
    """Returns the statements giving `staged` the owner and the table privileges that `live` has
    (the new table is the helpers' role's, with no grants: a reporting role granted SELECT on
    the live table would lose it)."""
    mine, owner = db.session.execute(
        text(
            "SELECT pg_get_userbyid(relowner) = current_user,"
            " quote_ident(pg_get_userbyid(relowner)) FROM pg_class WHERE oid = to_regclass(:table)"
        ),
        {"table": live},
    ).one()
    statements = [] if mine else [f"ALTER TABLE {staged} OWNER TO {owner}"]
    grants = db.session.execute(
        text(
            "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee))"
            " END, a.privilege_type, a.is_grantable FROM pg_class c, aclexplode(c.relacl) a"
            " WHERE c.oid = to_regclass(:table) AND a.grantee <> c.relowner"
        ),
        {"table": live},
    ).all()
    for grantee, privilege, grantable in grants:
        option = " WITH GRANT OPTION" if grantable else ""
        statements.append(f"GRANT {privilege} ON TABLE {staged} TO {grantee}{option}")
    return statements


def _invite_cut() -> str | None:
    """Returns the invite id with about half of the invites below it (None: no invites)."""
    return db.session.execute(
        text(
            "SELECT id FROM invites ORDER BY id OFFSET"
            " CAST(greatest(coalesce((SELECT reltuples FROM pg_class"
            " WHERE oid = to_regclass('invites')), 0), 0) / 2 AS bigint) LIMIT 1"
        )
    ).scalar()


def _fill_sql(cut: str | None, below: bool) -> list[str]:
    """Returns the statements computing the milestone rows of the invites below `cut` (or the
    others; all of them without a cut) into STAGING. The aggregate goes into a temporary table
    first: as a materialized CTE of the INSERT it took a fifth longer."""
    side = "<" if below else ">="
    events = "" if cut is None else f"invite_id {side} :cut"
    invites = "" if cut is None else f"i.id {side} :cut"
    return [
        f"CREATE TEMPORARY TABLE {AGGREGATE} AS {_aggregate_sql(events)}",
        _milestone_rebuild_sql(AGGREGATE, target=STAGING, invites=invites),
        f"DROP TABLE {AGGREGATE}",
    ]


def _fill_staged(connection, statements: list[str], cut: str | None) -> int:
    """Runs `_fill_sql`'s statements; returns the rows inserted."""
    params = {} if cut is None else {"cut": cut}
    create, insert, drop = (text(sql) for sql in statements)
    connection.execute(create, params)
    rows = connection.execute(insert, params).rowcount
    connection.execute(drop)
    return rows


def _build_staged(connection, statements: list[str], failed: threading.Event) -> None:
    """Runs the next statement from `statements` until none is left (or the other side failed)."""
    while not failed.is_set():
        try:
            sql = statements.pop()
        except IndexError:
            return
        try:
            connection.execute(text(sql))
        except BaseException:
            failed.set()
            raise


def _rebuild_milestones_staged(done) -> int | None:
    """Rebuilds the milestone table on two helper connections (see above) and puts it in the
    live one's place; returns its rows, or None when the helpers failed (logged)."""
    session = db.session
    table = FunnelMilestone.__table__
    _set_rebuild_settings()
    session.execute(text(f"LOCK TABLE {table.name} IN EXCLUSIVE MODE"))
    cut = _invite_cut()
    build, rename = _staged_statements(db.session.get_bind().dialect)
    statements = list(reversed(build))  # popped from the end: the largest first
    failed = threading.Event()
    engine = _helper_engine()
    try:
        with (
            engine.connect() as mine,
            engine.connect() as other,
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="metrics-rebuild") as helper,
        ):
            mine.execute(text(f"DROP TABLE IF EXISTS {STAGING}"))
            # Column types, NOT NULLs, defaults, checks, comments and storage as the live table
            # has them (its own indexes come later, sorted).
            mine.execute(
                text(f"CREATE TABLE {STAGING} (LIKE {table.name} INCLUDING ALL EXCLUDING INDEXES)")
            )
            if cut is None:
                rows = _fill_staged(mine, _fill_sql(None, True), None)
            else:
                half = helper.submit(_fill_staged, other, _fill_sql(cut, False), cut)
                try:
                    rows = _fill_staged(mine, _fill_sql(cut, True), cut)
                finally:
                    rows_other = half.result()  # (waits for it, and raises what it raised)
                rows += rows_other
            done()
            half = helper.submit(_build_staged, other, statements, failed)
            try:
                _build_staged(mine, statements, failed)
            finally:
                half.result()
    except BaseException as error:
        # The staging table was committed: drop it again (a run that could not is cleaned up
        # by the next one's DROP TABLE IF EXISTS).
        with suppress(Exception), engine.connect() as connection:
            connection.execute(text(f"DROP TABLE IF EXISTS {STAGING}"))
        if not isinstance(error, Exception):
            raise
        # Only the helpers' statements failed (nothing of this transaction did): the rebuild
        # runs again in this transaction alone.
        log.warning(
            "metrics rebuild: the helper connections failed; rebuilding on one", exc_info=True
        )
        return None
    finally:
        engine.dispose()
    for sql in _privileges_sql(table.name, STAGING):
        session.execute(text(sql))
    session.execute(text(f"DROP TABLE {table.name}"))
    session.execute(text(f"ALTER TABLE {STAGING} RENAME TO {table.name}"))
    for sql in rename:
        session.execute(text(sql))
    done()
    return rows


def vacuum_rebuilt_tables() -> None:
    """PostgreSQL: VACUUM the tables a committed rebuild wrote (elsewhere nothing to do).

    A rebuild's rows are all new: until VACUUM marks their pages all-visible, every index-only
    scan of the dashboard visits each row's heap page as well (the funnel took three times as
    long) until autovacuum comes by. VACUUM cannot run inside a transaction, so this runs on
    its own autocommit connection after the rebuild's commit.

    A milestone table built beside the old one (`_rebuild_milestones_staged`) has no planner
    statistics yet, and autovacuum may be off or a minute away: the funnel plans without them
    (it took about a fifth longer) and cannot split its scans. A table without statistics is
    therefore analysed here, from a sample of 9,000 rows (statistics target 30: 0.06 s, where the
    default 30,000 rows took 0.4 s); autovacuum's later analyses use the configured target. A
    table rebuilt in place keeps its statistics, which still describe the same kind of rows.
    """
    engine = db.engine
    if engine.dialect.name != "postgresql":
        return
    milestones = FunnelMilestone.__tablename__
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text(f"VACUUM {milestones}, {PatientActiveWeek.__tablename__}"))
        analysed = connection.execute(
            text(
                "SELECT EXISTS (SELECT FROM pg_stats WHERE schemaname = current_schema()"
                " AND tablename = :table)"
            ),
            {"table": milestones},
        ).scalar()
        if not analysed:
            connection.execute(text(f"SET default_statistics_target = {REBUILD_STATISTICS_TARGET}"))
            connection.execute(text(f"ANALYZE {milestones}"))
            connection.execute(text("RESET default_statistics_target"))
