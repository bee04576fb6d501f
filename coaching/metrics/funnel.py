"""The uptake funnel and its drop-offs, computed in the database from the milestone tables.

Counts come from one scan of a covering index of `funnel_milestones` (one row per invite);
medians walk the milestone table's per-step duration indexes to the middle entry instead of
sorting, all of them from one statement (on PostgreSQL a LATERAL walk per median whose text does
not grow with the number of groups). Definitions: docs/metrics.md.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from threading import Lock
from time import monotonic as time_monotonic
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import (
    String,
    cast,
    create_engine,
    func,
    or_,
    select,
    text,
)

from coaching import clock
from coaching.accounts.models import Account
from coaching.errors import NotFound, ValidationFailed
from coaching.extensions import db
from coaching.metrics.models import (
    DURATION_COLUMNS,
    FUNNEL_STEPS,
    OFFSET_COLUMNS,
    STEP_COLUMNS,
    FunnelMilestone,
)
from coaching.metrics.service import epoch_seconds
from coaching.practices.models import Practice

# Dates in filters (invite creation, enrolment cohorts) are calendar dates of the programme,
# which runs in the Netherlands.
PROGRAMME_TIMEZONE = ZoneInfo("Europe/Amsterdam")
BREAKDOWNS = ("practice", "therapist", "referral_source", "channel")
BREAKDOWN_COLUMNS = {
    "practice": "practice_id",
    "therapist": "therapist_id",
    "referral_source": "referral_source",
    "channel": "channel",
}
DAY = 86400
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scope:
    """Which invites (or patients) a metric covers: the caller's filters, already authorised."""

    date_from: date | None = None
    date_to: date | None = None
    practice_id: str | None = None
    therapist_id: str | None = None
    referral_source: str | None = None
    channel: str | None = None
    window_days: int = 120


def day_start_ts(day: date) -> int:
    """Returns the epoch seconds at which a programme calendar day begins."""
    return epoch_seconds(datetime.combine(day, time(0), tzinfo=PROGRAMME_TIMEZONE))


def resolve_scope(caller: Account, **filters) -> Scope:
    """Returns the filters as a Scope the caller may see, or raises ValidationFailed/NotFound.

    Owners see every practice; therapists only their own invites and patients, so naming another
    practice or therapist is answered as if it did not exist.
    """
    scope = Scope(**{k: v for k, v in filters.items() if v is not None})
    if scope.date_from and scope.date_to and scope.date_from > scope.date_to:
        raise ValidationFailed.field("from", "must not be after 'to'")
    if caller.role == "therapist":
        if scope.practice_id not in (None, caller.practice_id):
            raise NotFound("Practice not found")
        if scope.therapist_id not in (None, caller.id):
            raise NotFound("Therapist not found")
        return replace(scope, therapist_id=caller.id)
    if scope.practice_id is not None and db.session.get(Practice, scope.practice_id) is None:
        raise NotFound("Practice not found")
    if scope.therapist_id is not None:
        therapist = db.session.get(Account, scope.therapist_id)
        if therapist is None or therapist.role != "therapist":
            raise NotFound("Therapist not found")
    return scope


def _conditions(columns, scope: Scope) -> list:
    conds = []
    if scope.date_from is not None:
        conds.append(columns.invited_ts >= day_start_ts(scope.date_from))
    if scope.date_to is not None:
        conds.append(columns.invited_ts < day_start_ts(scope.date_to + timedelta(days=1)))
    if scope.date_from is None and scope.date_to is None:
        conds.append(columns.invited_ts.is_not(None))
    for name in ("practice_id", "therapist_id", "referral_source", "channel"):
        value = getattr(scope, name)
        if value is not None:
            conds.append(columns[name] == value)
    return conds


def _no_jit() -> None:
    if db.session.get_bind().dialect.name != "postgresql":
        return
    db.session.execute(text("SET LOCAL jit = off"))


# Row estimates along these filters are poor and JIT then costs more than the query. The counts
# read the narrow covering indexes (all pages visible after a vacuum), not the wide rows: the
# offsets sit after the text columns, and decoding every row up to them took three times as
# long. With the default random_page_cost the planner prefers the rows. Parallel workers cost
# more to start (3-5 ms) than they save on these scans; a large funnel splits them over two
# connections instead (`_Split`).
_SETTINGS = (("jit", "off"), ("random_page_cost", "1.1"), ("max_parallel_workers_per_gather", "0"))


# --- two connections -----------------------------------------------------------------------------
# On PostgreSQL each index entry a scan reads costs about 80 ns in the executor (a bare count
# over the 100,000 entries of a covering index takes 8-14 ms on 2 cores), so over 100,000
# invites the funnel's counts take about 15 ms and its median walks about 13 ms, on one core.
# PostgreSQL's own parallel query starts a worker process per query (3-5 ms, no gain measured at
# this size). A funnel over many rows (METRICS_PARALLEL_MIN_ROWS) therefore runs half of each
# scan on a second, already open connection in a helper thread (psycopg waits on the socket
# without the GIL) while the request's connection runs the other half, and adds the halves up
# (benchmarks/funnel.py, 100,000 invites on 2 cores: 28-44 -> 23-32 ms, per practice 58-80 ->
# 33-50 ms). The halves are cut where the planner's statistics say half of the rows lie; the
# medians' walks are shared out by their known lengths.
_HELPERS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="funnel-sql")
# The planner's statistics the splits are chosen by change only when the table is analysed;
# reading them (the pg_stats view) took 3 ms, so each process keeps them a few minutes.
_STATISTICS_TTL = 300.0
_statistics: dict[str, tuple[float, _Statistics]] = {}

Run = Callable[[str, dict], list]  # runs SQL text with bound values, returns the rows


@dataclass(frozen=True)
class _Statistics:
    """The milestone table's planner statistics a split is chosen by.

    `invited_ts`: that column's histogram bounds (each bucket holds about as many rows).
    `values`: per id column, its most common values with their share of rows.
    """

    invited_ts: list[int] = field(default_factory=list)
    values: dict[str, list[tuple[str, float]]] = field(default_factory=dict)

    def share_between(self, low: int | None, high: int | None) -> float:
        """About which share of the rows have `low <= invited_ts < high` (1.0 if unknown)."""
        if len(self.invited_ts) < 2:
            return 1.0
        inside = sum(
            1 for b in self.invited_ts if (low is None or b >= low) and (high is None or b < high)
        )
        return inside / len(self.invited_ts)

    def share_of(self, column: str, value: str) -> float:
        common = dict(self.values.get(column, []))
        return common.get(value, 1.0 / max(len(common), 1))


@dataclass
class _Split:
    """How one funnel splits its scans in two (see `_split_plan`).

    `parallel`: the halves run on two connections at once, the second on `helper` (else one
    after the other on the request's connection, as tests can ask for)."""

    statistics: _Statistics
    helper: object = None  # an Engine, see _helper_engine
    parallel: bool = True

    def middle_ts(self, low: int | None, high: int | None) -> int | None:
        """An invite time about halving the rows in [low, high), or None."""
        inside = [
            b
            for b in self.statistics.invited_ts
            if (low is None or b >= low) and (high is None or b < high)
        ]
        return inside[len(inside) // 2] if len(inside) >= 4 else None

    def middle_value(self, column: str) -> str | None:
        """A value of `column` with about half of its common values' rows below it, or None."""
        common = sorted(self.statistics.values.get(column, []))
        if len(common) < 2:
            return None
        half, seen = sum(share for _value, share in common) / 2, 0.0
        for index, (_value, share) in enumerate(common[:-1]):
            seen += share
            if seen >= half:
                return common[index + 1][0]
        return common[-1][0]

    def run_elsewhere(self, sql: str, params: dict) -> list:
        """Runs one statement on a helper connection (from a helper thread)."""
        with self.helper.connect() as connection:
            return connection.execute(text(sql), params).all()


# Per database URL, a small pool of its own for the helper halves: autocommit (each statement
# reads what is committed, like the request's READ COMMITTED statements), read only, and the
# funnel's settings fixed when each connection is made. Taking one from it then costs no round
# trip; from the app's pool it cost three (the pre-ping, BEGIN, the settings), about 3 ms on
# the critical path. A connection that died is dropped by the pool when it fails; that half
# then runs on the request's connection.
_helper_engines: dict[str, object] = {}
_helper_lock = Lock()


def _helper_engine():
    url = db.engine.url
    key = url.render_as_string(hide_password=False)
    with _helper_lock:
        engine = _helper_engines.get(key)
        if engine is None:
            options = " ".join(
                f"-c {name}={value}"
                for name, value in (*_SETTINGS, ("default_transaction_read_only", "on"))
            )
            engine = create_engine(
                url,
                pool_size=1,  # one funnel at a time per worker process, as a rule
                max_overflow=3,
                isolation_level="AUTOCOMMIT",
                connect_args={"options": options},
            )
            _helper_engines[key] = engine
        return engine


def _split_plan(scope: Scope) -> _Split | None:
    """Applies the funnel's settings to the transaction (PostgreSQL) and returns how to split
    the scope's funnel scans, or None to run each as one statement.

    Splits on PostgreSQL, for a scope the duration indexes serve (all invites, a practice, a
    date range) of about METRICS_PARALLEL_MIN_ROWS rows or more, and only in a transaction that
    has written nothing (another connection would not see its rows). The settings, that check
    and the table's size are one round trip."""
    if not _postgres():
        return None
    settings = ", ".join(f"set_config('{name}', '{value}', true)" for name, value in _SETTINGS)
    *_set, clean, rows = db.session.execute(
        text(
            f"SELECT {settings}, txid_current_if_assigned() IS NULL,"
            " (SELECT reltuples FROM pg_class WHERE oid = to_regclass(:table))"
        ),
        {"table": MILESTONES},
    ).one()
    minimum = current_app.config.get("METRICS_PARALLEL_MIN_ROWS", 40000)
    if not _walkable(scope, None) or minimum < 0 or not clean or (rows or 0) < minimum:
        return None
    statistics = _planner_statistics()
    if scope.date_from is not None or scope.date_to is not None:
        low = day_start_ts(scope.date_from) if scope.date_from else None
        high = day_start_ts(scope.date_to + timedelta(days=1)) if scope.date_to else None
        rows *= statistics.share_between(low, high)
    if scope.practice_id is not None:
        rows *= statistics.share_of("practice_id", scope.practice_id)
    return _Split(statistics, _helper_engine()) if rows >= minimum else None


def _planner_statistics() -> _Statistics:
    key = str(db.engine.url)
    now = time_monotonic()
    cached = _statistics.get(key)
    if cached is not None and now - cached[0] < _STATISTICS_TTL:
        return cached[1]
    rows = db.session.execute(
        text(
            "SELECT attname, CAST(histogram_bounds AS text), CAST(most_common_vals AS text),"
            " most_common_freqs FROM pg_stats WHERE schemaname = current_schema()"
            " AND tablename = :table AND attname IN ('invited_ts', "
            + ", ".join(f"'{column}'" for column in _INDEXED_GROUPS)
            + ")"
        ),
        {"table": MILESTONES},
    ).all()
    bounds, values = [], {}
    for column, histogram, common, shares in rows:
        if column == "invited_ts" and histogram:
            bounds = [int(b) for b in histogram.strip("{}").split(",")]
        elif column in _INDEXED_GROUPS and common and shares:
            values[column] = list(zip(common.strip("{}").split(","), shares, strict=True))
    found = _Statistics(bounds, values)
    _statistics[key] = (now, found)
    return found


def _session_run(sql: str, params: dict) -> list:
    return db.session.execute(text(sql), params).all()


def _halves(first: Callable[[Run], object], second: Callable[[Run], object], split: _Split):
    """Returns (first(run), second(run)): with `split.parallel`, `second` on the helper
    connection in a helper thread while `first` runs on the request's; else one after the
    other on the request's. The tasks only run SQL built beforehand (no app context there).
    A failure on the helper connection (pool exhausted, say) runs `second` here instead."""
    if not split.parallel:
        return first(_session_run), second(_session_run)
    future = _HELPERS.submit(second, split.run_elsewhere)
    try:
        done = first(_session_run)
    finally:
        try:
            other = future.result()
        except Exception:
            log.warning("funnel: the helper connection failed; its half runs here", exc_info=True)
            split.parallel = False
            other = None
    if other is None:
        other = second(_session_run)
    return done, other


# The funnel's statements are SQL text built from the column constants above, with every value
# bound: building the equivalent Core constructs (up to 170 sub-selects for a breakdown's
# medians) and their cache keys took a quarter of the funnel's time on PostgreSQL (18 of 75 ms)
# and two fifths on SQLite, more than some of the statements themselves.
MILESTONES = FunnelMilestone.__tablename__


def _scope_sql(scope: Scope, *, need_invite: bool = True) -> tuple[list[str], dict]:
    """Returns the scope's conditions on funnel_milestones as SQL with their bound values.

    `need_invite`: without date filters, units are still only rows with an invite time (rows
    that reached a step always have one, so walks of the duration indexes leave it out)."""
    clauses, params = [], {}
    if scope.date_from is not None:
        clauses.append("invited_ts >= :date_from_ts")
        params["date_from_ts"] = day_start_ts(scope.date_from)
    if scope.date_to is not None:
        clauses.append("invited_ts < :date_to_ts")
        params["date_to_ts"] = day_start_ts(scope.date_to + timedelta(days=1))
    if scope.date_from is None and scope.date_to is None and need_invite:
        clauses.append("invited_ts IS NOT NULL")
    for name in ("practice_id", "therapist_id", "referral_source", "channel"):
        value = getattr(scope, name)
        if value is not None:
            clauses.append(f"{name} = {_bound(name, name)}")
            params[name] = value
    return clauses, params


# The milestone table's id columns, uuid on PostgreSQL (see models.MILESTONE_ID).
ID_COLUMNS = ("invite_id", "patient_id", "practice_id", "therapist_id")


def _bound(name: str, column: str) -> str:
    """Returns the bound value `:name` as SQL comparable with `column`."""
    if column in ID_COLUMNS and _postgres():
        return f"CAST(:{name} AS uuid)"
    return f":{name}"


def _array(name: str, column: str) -> str:
    """Returns the bound list `:name` as an SQL array of `column`'s type."""
    kind = "uuid" if column in ID_COLUMNS else "varchar"
    return f"CAST(:{name} AS {kind}[])"


def _text(column: str) -> str:
    """Returns SQL reading `column` as text (the API's ids are strings; a uuid is not)."""
    return f"CAST({column} AS varchar)" if _postgres() else column


def _where(clauses: list[str]) -> str:
    return " WHERE " + " AND ".join(clauses) if clauses else ""


def _postgres() -> bool:
    return db.session.get_bind().dialect.name == "postgresql"


def _reached_counts(
    scope: Scope, group_column: str | None, split: _Split | None = None
) -> tuple[dict, dict]:
    """Returns {group: [units reaching each step within the window]} (group None: all), over
    all units and over those whose window is still open.

    The units whose window has closed and those whose window is open are counted apart (the
    open ones are one range of the covering `invited_ts` index) and added up, so that every
    row goes through the FILTER aggregates once (except per practice or therapist on
    PostgreSQL, see below).
    """
    # `<step>_s <= w` is `<step>_ts <= invited_ts + w`: int4 against a constant, from the
    # narrow covering indexes.
    aggregates = ", ".join(
        ["count(*)"] + [f"count(*) FILTER (WHERE {col} <= :w)" for col in OFFSET_COLUMNS]
    )
    clauses, params = _scope_sql(scope)
    params["w"] = scope.window_days * DAY
    params["open_after"] = epoch_seconds(clock.now()) - params["w"]
    closed = _where([*clauses, "invited_ts <= :open_after"])
    window_open = _where([*clauses, "invited_ts > :open_after"])

    def read(sql: str, run: Run = _session_run, values: dict | None = None) -> dict:
        found = {}
        for row in run(sql, params if values is None else values):
            row = list(row)
            found[row.pop(0)] = row
        return found

    if not group_column:
        closed_sql = f"SELECT 0, {aggregates} FROM {MILESTONES}{closed}"
        open_sql = f"SELECT 1, {aggregates} FROM {MILESTONES}{window_open}"
        middle = (
            split.middle_ts(params.get("date_from_ts"), params.get("date_to_ts")) if split else None
        )
        if middle is None:
            parts = read(f"{closed_sql} UNION ALL {open_sql}")
        else:
            # The closed units up to the middle time on one connection; the rest and the open
            # units on the other.
            params["split_ts"] = middle
            lower = _where([*clauses, "invited_ts <= :open_after", "invited_ts <= :split_ts"])
            upper = _where([*clauses, "invited_ts <= :open_after", "invited_ts > :split_ts"])
            first, second = _halves(
                lambda run: read(f"SELECT 0, {aggregates} FROM {MILESTONES}{lower}", run),
                lambda run: read(
                    f"SELECT 2, {aggregates} FROM {MILESTONES}{upper} UNION ALL {open_sql}", run
                ),
                split,
            )
            parts = {0: _added(first[0], second[2]), 1: second[1]}
        open_groups = {None: parts[1]}
        return {None: _added(parts[0], parts[1])}, open_groups
    if group_column in _INDEXED_GROUPS and _postgres():
        # Per group, the open units are one range of the (group, invited_ts, ...) covering index:
        # one index-only range per group (of every group the whole count found) instead of
        # reading each entry of the index a second time.
        grouped = (
            f"SELECT {_text(group_column)}, {aggregates} FROM {MILESTONES}{{where}}"
            f" GROUP BY {group_column}"
        )
        where = _where([*clauses, "invited_ts > :open_after", f"{group_column} = g.g"])
        ranges = (
            f"SELECT {_text('g.g')}, part.* FROM unnest({_array('groups', group_column)}) AS g(g)"
            f" CROSS JOIN LATERAL (SELECT {aggregates} FROM {MILESTONES}{where}) AS part"
        )

        def counted(extra: list[str]) -> Callable[[Run], tuple[dict, dict]]:
            sql = grouped.format(where=_where([*clauses, *extra]))

            def task(run: Run) -> tuple[dict, dict]:
                groups = read(sql, run)
                if not groups:
                    return {}, {}
                return groups, read(ranges, run, {**params, "groups": list(groups)})

            return task

        middle = split.middle_value(group_column) if split else None
        if middle is None:
            return counted([])(_session_run)
        # The groups below the middle value on one connection, the others on the other.
        params["split_value"] = middle
        bound = _bound("split_value", group_column)
        (groups, open_groups), (more, more_open) = _halves(
            counted([f"{group_column} < {bound}"]), counted([f"{group_column} >= {bound}"]), split
        )
        return groups | more, open_groups | more_open
    closed_groups, open_groups = (
        read(
            f"SELECT {_text(group_column)}, {aggregates} FROM {MILESTONES}{where}"
            f" GROUP BY {group_column}"
        )
        for where in (closed, window_open)
    )
    zero = [0] * len(FUNNEL_STEPS)
    groups = {
        group: _added(closed_groups.get(group, zero), open_groups.get(group, zero))
        for group in closed_groups.keys() | open_groups.keys()
    }
    return groups, open_groups


def _added(a: list[int], b: list[int]) -> list[int]:
    return [x + y for x, y in zip(a, b, strict=True)]


# Breakdowns with a covering (column, invited_ts, step times...) index on funnel_milestones.
_INDEXED_GROUPS = ("practice_id", "therapist_id")


def _medians(
    scope: Scope, parts: list[tuple[str | None, list]], split: _Split | None = None
) -> dict:
    """Returns {(group_column, group, step): median seconds from the previous step}.

    `parts` lists (group_column, wanted) with `wanted` the (group, step, units reaching it); the
    overall medians have group_column None. Each median over all invites or one practice's is
    read by walking that step's duration index past half of the matching entries
    (LIMIT/OFFSET). Scopes and groups those indexes do not lead with (a therapist, a referral
    route, a channel) are read by sorting their rows instead, which the covering indexes find.
    """
    medians = {}
    walks = []
    for column, wanted in parts:
        if not wanted:
            continue
        if _walkable(scope, column) or not _postgres():
            # SQLite has no ordered-set aggregates: LIMIT/OFFSET everywhere (its planner sorts
            # the few rows of a therapist instead of walking when that is cheaper).
            walks.append((column, wanted))
        else:
            medians.update(_sorted_medians(scope, column, wanted))
    if walks:
        if _postgres():
            values = _middle_values_lateral(scope, walks, split)
        else:
            values = _middle_values_union(scope, walks)
        for p, (column, wanted) in enumerate(walks):
            for index, (group, step, _n) in enumerate(wanted):
                found = values.get((p, index))
                if found:
                    medians[(column, group, step)] = sum(found) / len(found)
    return medians


def _walkable(scope: Scope, column: str | None) -> bool:
    """Whether a median can walk a duration index: over all invites or per practice, with no
    filter but dates and a practice (the entries hold the invite time and the practice)."""
    filtered = scope.therapist_id or scope.referral_source or scope.channel
    return not filtered and column in (None, "practice_id")


def _walk(scope: Scope, step: int, group: str | None, limit: str, offset: str) -> tuple[str, dict]:
    """Returns the SELECT walking step's duration index to the middle entries, and its values.

    `group` is the SQL of the group value the rows must have (None: any); `limit` and `offset`
    are SQL too (bound names or columns of the LATERAL's arrays)."""
    duration, offset_column = DURATION_COLUMNS[step - 1], OFFSET_COLUMNS[step - 1]
    clauses, params = _scope_sql(scope, need_invite=False)
    # `IS NOT NULL` is the duration indexes' predicate: it lets the planners use them.
    clauses = [f"{duration} IS NOT NULL", f"{offset_column} <= :w", *clauses]
    if group is not None:
        clauses.append(group)
    params["w"] = scope.window_days * DAY
    sql = (
        f"SELECT {duration} AS s FROM {MILESTONES}{_where(clauses)}"
        f" ORDER BY {duration} LIMIT {limit} OFFSET {offset}"
    )
    return sql, params


def _middle_values_lateral(
    scope: Scope, parts, split: _Split | None = None
) -> dict[tuple[int, int], list[int]]:
    """PostgreSQL: one branch per step and part; per group, one LATERAL walk whose (group,
    offset, limit) come from arrays, so the statement's text does not grow with the groups
    (a UNION ALL of 160 branches took longer to compile and plan than to run).

    With a split, the branches go into two statements of about equal walking (the entries each
    walk passes are known: its offset plus its limit), one per connection."""
    branches, params, lengths = [], {}, []
    for p, (column, wanted) in enumerate(parts):
        for step in sorted({step for _g, step, _n in wanted}):
            picked = [(i, g, n) for i, (g, s, n) in enumerate(wanted) if s == step]
            b = f"{p}_{step}"
            params[f"i_{b}"] = [i for i, _g, _n in picked]
            params[f"off_{b}"] = [(n - 1) // 2 for _i, _g, n in picked]
            params[f"lim_{b}"] = [2 - n % 2 for _i, _g, n in picked]
            arrays = [f"CAST(:{name}_{b} AS integer[])" for name in ("i", "off", "lim")]
            names = "i, off, lim"
            group = None
            if column:
                params[f"grp_{b}"] = [g for _i, g, _n in picked]
                arrays.append(_array(f"grp_{b}", column))
                names += ", grp"
                group = f"{column} = v.grp"
            walk, walk_params = _walk(scope, step, group, "v.lim", "v.off")
            params.update(walk_params)
            branches.append(
                f"SELECT {p} AS p, v.i, w.s FROM unnest({', '.join(arrays)}) AS v({names})"
                f" CROSS JOIN LATERAL ({walk}) AS w"
            )
            lengths.append(sum(n // 2 + 1 for _i, _g, n in picked))
    if split is None or len(branches) < 2:
        rows = _session_run(" UNION ALL ".join(branches), params)
    else:
        # Longest first, each to the statement with less walking so far.
        halves: tuple[list[str], list[str]] = ([], [])
        walked = [0, 0]
        for length, branch in sorted(zip(lengths, branches, strict=True), reverse=True):
            side = 0 if walked[0] <= walked[1] else 1
            halves[side].append(branch)
            walked[side] += length
        first, second = (" UNION ALL ".join(half) for half in halves)
        done, other = _halves(
            lambda run: run(first, params), lambda run: run(second, params), split
        )
        rows = [*done, *other]
    values: dict[tuple[int, int], list[int]] = {}
    for p, i, s in rows:
        values.setdefault((p, i), []).append(s)
    return values


def _middle_values_union(scope: Scope, parts) -> dict[tuple[int, int], list[int]]:
    """SQLite (no LATERAL): one UNION ALL branch per median."""
    branches = []
    for p, (column, wanted) in enumerate(parts):
        for index, (group, step, n) in enumerate(wanted):
            condition = None
            if column:
                condition = f"{column} = :g_{p}_{index}"
            # LIMIT and OFFSET are integers computed here, written into the text.
            walk, params = _walk(scope, step, condition, str(2 - n % 2), str((n - 1) // 2))
            if column:
                params[f"g_{p}_{index}"] = group
            branches.append((f"SELECT {p} AS p, {index} AS i, s FROM ({walk})", params))
    values: dict[tuple[int, int], list[int]] = {}
    for start in range(0, len(branches), 200):  # keep statements (and bound values) modest
        chunk = branches[start : start + 200]
        params = {}
        for _sql, branch_params in chunk:
            params.update(branch_params)
        sql = " UNION ALL ".join(sql for sql, _params in chunk)
        for p, i, s in db.session.execute(text(sql), params):
            values.setdefault((p, i), []).append(s)
    return values


def _sorted_medians(scope: Scope, column: str | None, wanted) -> dict:
    """PostgreSQL: the medians of one part by sorting its rows (percentile_cont, the mean of
    the two middle values of an even count), grouped by `column` when given."""
    steps = sorted({step for _g, step, _n in wanted})
    aggregates = ", ".join(
        f"percentile_cont(0.5) WITHIN GROUP (ORDER BY {DURATION_COLUMNS[step - 1]})"
        f" FILTER (WHERE {OFFSET_COLUMNS[step - 1]} <= :w)"
        for step in steps
    )
    clauses, params = _scope_sql(scope)
    params["w"] = scope.window_days * DAY
    key = f"{_text(column)}, " if column else ""
    sql = f"SELECT {key}{aggregates} FROM {MILESTONES}{_where(clauses)}"
    if column:
        sql += f" GROUP BY {column}"
    wanted_keys = {(group, step) for group, step, _n in wanted}
    medians = {}
    for row in db.session.execute(text(sql), params):
        values = list(row)
        group = values.pop(0) if column else None
        for step, value in zip(steps, values, strict=True):
            if value is not None and (group, step) in wanted_keys:
                medians[(column, group, step)] = value
    return medians


def _steps(
    reached: list[int], open_reached: list[int], medians: dict, column: str | None, group
) -> list[dict]:
    steps = []
    start = reached[0]
    for index, key in enumerate(FUNNEL_STEPS):
        count = reached[index]
        previous = reached[index - 1] if index else None
        in_progress = open_reached[index - 1] - open_reached[index] if index else 0
        median = medians.get((column, group, index))
        steps.append(
            {
                "key": key,
                "count": count,
                "in_progress": in_progress,
                "conversion_from_previous": _ratio(count, previous) if index else None,
                "conversion_from_start": _ratio(count, start),
                "median_hours_from_previous": round(median / 3600, 2)
                if median is not None
                else None,
            }
        )
    return steps


def _ratio(part: int, whole: int | None) -> float | None:
    return round(part / whole, 4) if whole else None


def breakdown_labels(breakdown: str, values) -> dict[str, str]:
    """Returns a readable label for each breakdown value (practice and therapist names)."""
    values = [v for v in values if v is not None]
    if breakdown == "practice" and values:
        rows = db.session.execute(
            select(Practice.id, Practice.name).where(Practice.id.in_(values))
        ).all()
        return {str(i): n for i, n in rows}
    if breakdown == "therapist" and values:
        rows = db.session.execute(
            select(Account.id, Account.display_name).where(Account.id.in_(values))
        ).all()
        return {str(i): n for i, n in rows}
    return {v: v for v in values}


def funnel(scope: Scope, breakdown: str | None = None) -> dict:
    """Returns the funnel over the scope's invites, optionally per breakdown value."""
    split = _split_plan(scope)  # on PostgreSQL also the settings (_SETTINGS)
    zero = [0] * len(FUNNEL_STEPS)
    group_column = BREAKDOWN_COLUMNS[breakdown] if breakdown else None
    groups, open_groups = _reached_counts(scope, group_column, split)
    if group_column:
        total = [sum(c[i] for c in groups.values()) for i in range(len(FUNNEL_STEPS))]
        open_total = [sum(c[i] for c in open_groups.values()) for i in range(len(FUNNEL_STEPS))]
    else:
        total, open_total = groups.get(None, zero), open_groups.get(None, zero)
    parts = [(None, [(None, k, total[k]) for k in range(1, len(FUNNEL_STEPS)) if total[k]])]
    if group_column:
        wanted = [
            (group, k, counts[k])
            for group, counts in groups.items()
            for k in range(1, len(FUNNEL_STEPS))
            if counts[k]
        ]
        parts.append((group_column, wanted))
    medians = _medians(scope, parts, split)
    result = {
        "steps": _steps(total, open_total, medians, None, None),
        "breakdown": {},
        "window_days": scope.window_days,
    }
    if group_column:
        labels = breakdown_labels(breakdown, groups)
        for group in sorted(groups, key=lambda g: (labels.get(g, g) or "", g or "")):
            result["breakdown"][group] = {
                "label": labels.get(group, group),
                "steps": _steps(
                    groups[group], open_groups.get(group, zero), medians, group_column, group
                ),
            }
    return result


CSV_COLUMNS = (
    "group",
    "label",
    "step",
    "count",
    "in_progress",
    "conversion_from_previous",
    "conversion_from_start",
    "median_hours_from_previous",
)


def funnel_csv(result: dict) -> str:
    """Returns the funnel as CSV: one line per step, for all units and per breakdown value."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    sections = [("all", "All", result["steps"])] + [
        (group, part["label"], part["steps"]) for group, part in result["breakdown"].items()
    ]
    for group, label, steps in sections:
        for step in steps:
            writer.writerow(
                [
                    group,
                    _csv_safe(label),
                    step["key"],
                    step["count"],
                    step["in_progress"],
                    _blank(step["conversion_from_previous"]),
                    _blank(step["conversion_from_start"]),
                    _blank(step["median_hours_from_previous"]),
                ]
            )
    return out.getvalue()


def _blank(value) -> str:
    return "" if value is None else str(value)


def _csv_safe(value: str) -> str:
    # Names are typed by people; a leading = + - @ would run as a formula in a spreadsheet.
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value


# --- drop-offs ---------------------------------------------------------------------------------


def dropoffs(scope: Scope, step: str, *, caller: Account) -> dict:
    """Returns the invites that reached the step before `step` but not `step` itself.

    Therapists get their own invites and patients, with how many days each has been waiting;
    owners get the counts only (overall and per practice).
    """
    from coaching.enrolment.models import Invite

    index = FUNNEL_STEPS.index(step)
    if index == 0:
        raise ValidationFailed.field("step", "the first step has no previous step")
    _no_jit()
    m = FunnelMilestone.__table__.c
    w = scope.window_days * DAY
    now = epoch_seconds(clock.now())
    previous = m[STEP_COLUMNS[index - 1]]
    # The offsets (seconds since invited_ts) say the same as `<step>_ts <= invited_ts + w`.
    previous_reached = (
        previous <= m.invited_ts + w if index == 1 else m[OFFSET_COLUMNS[index - 2]] <= w
    )
    current = m[OFFSET_COLUMNS[index - 1]]
    waiting = [*_conditions(m, scope), previous_reached, or_(current.is_(None), current > w)]
    window_open = m.invited_ts > now - w
    result = {"step": step, "previous_step": FUNNEL_STEPS[index - 1], "window_days": w // DAY}
    count_stmt = (
        select(m.practice_id, func.count(), func.count().filter(window_open))
        .where(*waiting)
        .group_by(m.practice_id)
    )
    by_practice = {p: (n, o) for p, n, o in db.session.execute(count_stmt)}
    result["total"] = sum(n for n, _ in by_practice.values())
    result["in_progress"] = sum(o for _, o in by_practice.values())
    result["dropped"] = result["total"] - result["in_progress"]
    if caller.role == "owner":
        labels = breakdown_labels("practice", by_practice)
        result["by_practice"] = {
            p: {"label": labels.get(p, p), "total": n, "in_progress": o, "dropped": n - o}
            for p, (n, o) in sorted(by_practice.items(), key=lambda kv: labels.get(kv[0], ""))
        }
        return result
    rows = db.session.execute(
        select(
            m.invite_id,
            m.patient_id,
            m.referral_source,
            m.channel,
            m.invited_ts,
            previous.label("previous_ts"),
            Invite.code,
            Account.display_name,
        )
        .join(Invite, Invite.id == cast(m.invite_id, String))
        .outerjoin(Account, Account.id == cast(m.patient_id, String))
        .where(*waiting)
        .order_by(previous, m.invite_id)
    ).all()
    from coaching.audit import service as audit

    items = []
    for row in rows:
        if row.patient_id is not None:
            audit.record(
                actor=caller,
                patient_id=row.patient_id,
                action="read",
                resource_type="metrics_dropoff",
                resource_id=row.invite_id,
            )
        items.append(
            {
                "invite_id": row.invite_id,
                "invite_code": row.code,
                "patient_id": row.patient_id,
                "patient_name": row.display_name,
                "referral_source": row.referral_source,
                "channel": row.channel,
                "invited_at": _iso(row.invited_ts),
                "previous_step_at": _iso(row.previous_ts),
                "days_waiting": max(0, (now - row.previous_ts) // DAY),
                "window_open": row.invited_ts > now - w,
                "window_closes_at": _iso(row.invited_ts + w),
            }
        )
    result["waiting"] = items
    return result


def _iso(ts: int) -> str:
    from coaching.db import utc_iso
    from coaching.metrics.service import EPOCH

    return utc_iso(EPOCH + timedelta(seconds=ts))
