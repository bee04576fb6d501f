"""Recording uptake events and patient activity, and keeping the derived metric tables current.

The append-only `uptake_events` and `patient_activity` rows are the truth. Each write here also
updates, in the same transaction, the invite's milestone row (`funnel_milestones`, with each
step's time and duration) and the patient's active weeks (`patient_active_weeks`), so that
dashboards query small tables. `rebuild()` recomputes both from the raw rows with SQL and gives
exactly the same rows. The definitions are written down in docs/metrics.md.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, text

from coaching import clock
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
    if db.session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
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


def _aggregate_sql() -> str:
    """Returns the SELECT of, per invite, each step's earliest time (n<k>) and the length of its
    in-order chain (`l`, see `_chain_length_sql`).

    The times are aggregated as stored and truncated to epoch seconds afterwards, once per
    invite instead of once per event (truncation keeps the order, so min commutes with it;
    SQLite's fixed-width text sorts in time order). Only the earliest: a latest time per step
    (to tell at once whether any occurrence is at or after the previous step) cost as many
    FILTER evaluations again for every event, for the few invites that search their events.
    """
    aggregates = []
    for index, step in enumerate(FUNNEL_STEPS):
        where = f"FILTER (WHERE name = '{step}')"
        aggregates.append(f"{_epoch_sql(f'min(occurred_at) {where}')} AS n{index}")
    grouped = (
        "SELECT invite_id, " + ", ".join(aggregates) + " FROM uptake_events GROUP BY invite_id"
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


def _milestone_rebuild_sql(aggregated: str | None = None, ordered: bool = False) -> str:
    """Returns INSERT ... SELECT computing every milestone row from the raw uptake events
    (or from `aggregated`, a table already holding `_aggregate_sql()`'s rows).

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
        "INSERT INTO funnel_milestones (invite_id, patient_id, practice_id, therapist_id,"
        f" referral_source, channel, {columns}) "
        "WITH "
        + ", ".join(layers)
        + " SELECT "
        + ", ".join(
            _milestone_id(f"i.{c}") for c in ("id", "patient_id", "practice_id", "therapist_id")
        )
        + f", i.referral_source, i.channel, {times} FROM chain c JOIN invites i ON i.id = c.invite_id"
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


def rebuild(progress=None) -> dict[str, int]:
    """Recompute the milestone and active-week tables from the raw rows.

    Runs in the caller's transaction (the CLI commits once), so readers see the old rows until
    the new ones are complete. Every index (on PostgreSQL the primary key too) is dropped and
    built again afterwards: one sorted build is far cheaper than 100,000 inserts into each.
    Returns the rows per table.
    """
    session = db.session
    bind = session.connection()
    postgres = bind.dialect.name == "postgresql"
    table = FunnelMilestone.__table__

    def done() -> None:
        if progress is not None:
            progress.update(1)

    if postgres:
        # The chained layers make PostgreSQL's row estimates collapse; JIT compilation would
        # then cost more than the query itself. Memory lets the aggregate hash in one pass.
        session.execute(text("SET LOCAL jit = off"))
        session.execute(text("SET LOCAL work_mem = '256MB'"))
        session.execute(text("SET LOCAL maintenance_work_mem = '256MB'"))
        # Derived rows that a rebuild can always recompute: the commit need not wait for the
        # WAL flush (a crash right after it loses the rebuild, never consistency).
        session.execute(text("SET LOCAL synchronous_commit = off"))
        # TRUNCATE is transactional here; readers wait for the commit instead of seeing a gap
        # (and nobody sees the table without its key in between).
        session.execute(text("TRUNCATE funnel_milestones"))
        session.execute(text(f"ALTER TABLE {table.name} DROP CONSTRAINT {table.primary_key.name}"))
    indexes = list(table.indexes)
    for index in indexes:
        index.drop(bind)
    if not postgres:
        # After dropping the indexes: deleting 100,000 rows from 20 indexes took longer.
        session.execute(delete(FunnelMilestone))
    counts: dict[str, int] = {}
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
    counts["funnel_milestones"] = session.execute(text(milestones)).rowcount
    if postgres:
        session.execute(text(f"DROP TABLE {AGGREGATE}"))
    done()
    if postgres:
        columns = ", ".join(c.name for c in table.primary_key.columns)
        session.execute(
            text(
                f"ALTER TABLE {table.name} ADD CONSTRAINT {table.primary_key.name}"
                f" PRIMARY KEY ({columns})"
            )
        )
    for index in indexes:
        index.create(bind)
    done()
    session.execute(delete(PatientActiveWeek))
    counts["patient_active_weeks"] = session.execute(text(_active_weeks_rebuild_sql())).rowcount
    done()
    session.expire_all()
    return counts


def vacuum_rebuilt_tables() -> None:
    """PostgreSQL: VACUUM the tables a committed rebuild wrote (elsewhere nothing to do).

    A rebuild's rows are all new: until VACUUM marks their pages all-visible, every index-only
    scan of the dashboard visits each row's heap page as well (the funnel took three times as
    long) until autovacuum comes by. VACUUM cannot run inside a transaction, so this runs on
    its own autocommit connection after the rebuild's commit.
    """
    engine = db.engine
    if engine.dialect.name != "postgresql":
        return
    tables = f"{FunnelMilestone.__tablename__}, {PatientActiveWeek.__tablename__}"
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text(f"VACUUM {tables}"))
