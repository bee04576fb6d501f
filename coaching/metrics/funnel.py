"""The uptake funnel and its drop-offs, computed in the database from the milestone tables.

Counts come from one scan of a covering index of `funnel_milestones` (one row per invite);
medians walk the milestone table's per-step duration indexes to the middle entry instead of
sorting, all of them from one statement (on PostgreSQL a LATERAL walk per median whose text does
not grow with the number of groups). Definitions: docs/metrics.md.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import (
    String,
    cast,
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


def _no_jit(*, index_only: bool = False) -> None:
    if db.session.get_bind().dialect.name != "postgresql":
        return
    # Row estimates along these filters are poor and JIT then costs more than the query.
    settings = ["jit = off"]
    if index_only:
        # The counts read the narrow covering indexes (all pages visible after a vacuum), not the
        # wide rows: the offsets sit after the text columns, and decoding every row up to them
        # took three times as long. With the default random_page_cost the planner prefers the
        # rows. Parallel workers cost more to start than they save on these ~10 ms scans, and
        # concurrent dashboard requests share the cores anyway.
        settings += ["random_page_cost = 1.1", "max_parallel_workers_per_gather = 0"]
    db.session.execute(text("; ".join(f"SET LOCAL {s}" for s in settings)))


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


def _reached_counts(scope: Scope, group_column: str | None) -> tuple[dict, dict]:
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

    def read(sql: str) -> dict:
        found = {}
        for row in db.session.execute(text(sql), params):
            values = list(row)
            found[values.pop(0)] = values
        return found

    if not group_column:
        parts = read(
            f"SELECT 0, {aggregates} FROM {MILESTONES}{closed}"
            f" UNION ALL SELECT 1, {aggregates} FROM {MILESTONES}{window_open}"
        )
        open_groups = {None: parts[1]}
        return {None: _added(parts[0], parts[1])}, open_groups
    if group_column in _INDEXED_GROUPS and _postgres():
        # Per group, the open units are one range of the (group, invited_ts, ...) covering index:
        # one index-only range per group (of every group the whole count found) instead of
        # reading each entry of the index a second time.
        groups = read(
            f"SELECT {_text(group_column)}, {aggregates} FROM {MILESTONES}{_where(clauses)}"
            f" GROUP BY {group_column}"
        )
        params["groups"] = list(groups)
        where = _where([*clauses, "invited_ts > :open_after", f"{group_column} = g.g"])
        open_groups = read(
            f"SELECT {_text('g.g')}, part.* FROM unnest({_array('groups', group_column)}) AS g(g)"
            f" CROSS JOIN LATERAL (SELECT {aggregates} FROM {MILESTONES}{where}) AS part"
        )
        return groups, open_groups
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


def _medians(scope: Scope, parts: list[tuple[str | None, list]]) -> dict:
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
            values = _middle_values_lateral(scope, walks)
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


def _middle_values_lateral(scope: Scope, parts) -> dict[tuple[int, int], list[int]]:
    """PostgreSQL: one branch per step and part; per group, one LATERAL walk whose (group,
    offset, limit) come from arrays, so the statement's text does not grow with the groups
    (a UNION ALL of 160 branches took longer to compile and plan than to run)."""
    branches, params = [], {}
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
    values: dict[tuple[int, int], list[int]] = {}
    for p, i, s in db.session.execute(text(" UNION ALL ".join(branches)), params):
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
    _no_jit(index_only=True)
    zero = [0] * len(FUNNEL_STEPS)
    group_column = BREAKDOWN_COLUMNS[breakdown] if breakdown else None
    groups, open_groups = _reached_counts(scope, group_column)
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
    medians = _medians(scope, parts)
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
