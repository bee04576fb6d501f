"""Benchmark: the uptake funnel over 100,000 invites and about 1,000,000 raw events.

    .venv/bin/python benchmarks/funnel.py [--pg postgresql://postgres@127.0.0.1:5432/bench_metrics]
                                          [--invites 100000] [--runs 15]

Generates, with a fixed seed, 20 practices of 5 therapists and the invites' uptake events (with
repeated events, steps recorded before the previous step, and rows inserted out of time order),
loads the same data into PostgreSQL (the database named by --pg, whose schema is dropped and
rebuilt by the migrations) and into a SQLite file, and in one run times:

- `metrics rebuild` (the milestone tables recomputed from the raw events) on both databases, the
  median of three runs (on PostgreSQL built on two more connections beside the live table, as it
  is by default, and in the command's transaction alone);
- the dashboard's funnel from the milestone table, without and with a practice breakdown, on both
  (on PostgreSQL split over two connections, as it is at this size, and on one);
- the same funnel computed by DuckDB straight from the raw events;
- last, recording one uptake event in its own transaction (which keeps the invite's milestone
  row current), against inserting the raw event alone.

It checks that the two rebuilt milestone tables equal a plain-Python computation, that all three
funnels agree, and prints each time with its ratio to DuckDB's. Targets on 2 cores (issue 7):
funnel <= 20 ms on PostgreSQL and <= 50 ms on SQLite (<= 50 / 120 ms with the breakdown); a full
rebuild <= 5x DuckDB's raw-events funnel. The issue names a database for the funnel targets but
not for the rebuild's, and its tip on the rebuild is PostgreSQL's: the rebuild target is checked
on PostgreSQL, the production database. SQLite's rebuild (the embedded development default) is
timed and printed with its ratio as well, and said plainly when it is over 5x.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import duckdb  # noqa: E402
from sqlalchemy import text  # noqa: E402

from benchmarks.pgdb import ensure_database  # noqa: E402
from coaching import create_app  # noqa: E402
from coaching.clock import FrozenClock  # noqa: E402
from coaching.extensions import db  # noqa: E402
from coaching.metrics import funnel as funnel_mod  # noqa: E402
from coaching.metrics import service  # noqa: E402
from coaching.metrics.models import FUNNEL_STEPS, STEP_COLUMNS  # noqa: E402

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
NOW_TS = service.epoch_seconds(NOW)
DAY = 86400
SPAN_DAYS = 730
SOURCES = ("gp", "physio", "specialist", "insurer", "self", "other")
CHANNELS = ("in_person", "email", "sms", "letter", "qr")
# Chance of reaching each step after the previous one; referral by insurer converts badly.
CONVERSION = (0.85, 0.7, 0.92, 0.88, 0.85, 0.75, 0.7, 0.6)
REBUILDS = 3
TARGET = {"pg": 20.0, "sqlite": 50.0, "pg_breakdown": 50.0, "sqlite_breakdown": 120.0}


def uid(kind: int, n: int) -> str:
    return f"{kind:08x}-0000-4000-8000-{n:012x}"


def generate(n_invites: int, seed: int = 7):
    """Returns practices, therapists, invites and events (epoch seconds), shuffled."""
    rng = random.Random(seed)
    practices = [(uid(1, p), f"Practice {p + 1:02d}") for p in range(20)]
    therapists = [(uid(2, p * 5 + t), practices[p][0]) for p in range(20) for t in range(5)]
    invites, events = [], []
    for i in range(n_invites):
        invite_id = uid(3, i)
        therapist_id, practice_id = rng.choice(therapists)
        source, channel = rng.choice(SOURCES), rng.choice(CHANNELS)
        t0 = NOW_TS - rng.randint(0, SPAN_DAYS * DAY)
        invites.append((invite_id, therapist_id, practice_id, source, channel, t0))
        attrs = (practice_id, therapist_id, source, channel)
        events.append((invite_id, "invited", t0, *attrs))
        t = t0
        for step, chance in enumerate(CONVERSION, start=1):
            if source == "insurer" and step == 2:
                chance *= 0.5
            if rng.random() > chance:
                break
            t += int(rng.expovariate(1 / (3 * DAY))) if step != 7 else rng.randint(0, 6 * DAY)
            if t > NOW_TS:
                break
            name = FUNNEL_STEPS[step]
            events.append((invite_id, name, t, *attrs))
            # Repeats: an invite link opened again, several active days in week 4, a double tap.
            repeats = {1: rng.randint(0, 10), 7: rng.randint(0, 6)}.get(step, rng.random() < 0.15)
            for _ in range(int(repeats)):
                events.append((invite_id, name, t + rng.randint(0, 3 * DAY), *attrs))
            # A device clock behind: an occurrence before the previous step.
            if rng.random() < 0.05:
                events.append((invite_id, name, t - rng.randint(1, 2 * DAY), *attrs))
            if step >= 2 and rng.random() < 0.1:
                # A step recorded again with exactly the previous step's time (equal counts).
                events.append((invite_id, name, t, *attrs))
    rng.shuffle(events)  # rows arrive out of time order
    return practices, therapists, invites, events


def python_milestones(events) -> dict[str, list]:
    occurrences: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for invite_id, name, t, *_ in events:
        occurrences[invite_id][name].append(t)
    return {i: service.chain_times(o) for i, o in occurrences.items()}


def make_app(url: str):
    app = create_app(
        {
            "ENV": "testing",
            "SECRET_KEY": "benchmark-secret-key-long-enough-0123456789",
            "SQLALCHEMY_DATABASE_URI": url,
        },
        clock=FrozenClock(NOW),
    )
    with app.app_context():
        from flask_migrate import upgrade

        from tests.conftest import _reset_schema

        _reset_schema()
        upgrade()
    return app


def iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S.000000")


def load(app, practices, therapists, invites, events) -> None:
    created = iso(NOW_TS - SPAN_DAYS * DAY - DAY)
    with app.app_context():
        raw = db.engine.raw_connection()
        try:
            postgres = db.engine.dialect.name == "postgresql"
            cur = raw.cursor()
            rows = {
                "practices (id, name, city, created_at)": [
                    (p, name, "Utrecht", created) for p, name in practices
                ],
                "accounts (id, email, password_hash, role, display_name, locale, timezone,"
                " practice_id, is_active, created_at)": [
                    (
                        t,
                        f"{t}@bench.test",
                        "x",
                        "therapist",
                        f"T {t[-4:]}",
                        "nl",
                        "UTC",
                        p,
                        True,
                        created,
                    )
                    for t, p in therapists
                ],
                "invites (id, code, therapist_id, practice_id, referral_source, channel,"
                " created_at, expires_at)": [
                    (i, f"C{n:09d}", t, p, s, c, iso(t0), iso(t0 + 30 * DAY))
                    for n, (i, t, p, s, c, t0) in enumerate(invites)
                ],
                "uptake_events (id, invite_id, name, occurred_at, recorded_at, practice_id,"
                " therapist_id, referral_source, channel)": [
                    (uid(4, n), i, name, iso(t), iso(t), p, th, s, c)
                    for n, (i, name, t, p, th, s, c) in enumerate(events)
                ],
            }
            for table, values in rows.items():
                if postgres:
                    with cur.copy(f"COPY {table} FROM STDIN") as copy:
                        for row in values:
                            copy.write_row(
                                [
                                    v + "+00"
                                    if isinstance(v, str) and v[:2] == "20" and len(v) == 26
                                    else v
                                    for v in row
                                ]
                            )
                else:
                    marks = ", ".join("?" * len(values[0]))
                    cur.executemany(f"INSERT INTO {table} VALUES ({marks})", values)
            raw.commit()
            if postgres:
                raw.driver_connection.autocommit = True
                raw.driver_connection.execute("VACUUM ANALYZE")
                # The connection goes back to the pool: later sessions must get transactions.
                raw.driver_connection.autocommit = False
            else:
                raw.cursor().execute("ANALYZE")
        finally:
            raw.close()


def timed(fn, runs: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), result


def rebuild(app) -> float:
    """Times `flask metrics rebuild` itself (its VACUUM on PostgreSQL included)."""
    runner = app.test_cli_runner()
    started = time.perf_counter()
    outcome = runner.invoke(args=["metrics", "rebuild"])
    elapsed = (time.perf_counter() - started) * 1000
    if outcome.exit_code != 0:
        raise SystemExit(f"metrics rebuild failed: {outcome.output}") from outcome.exception
    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            # What autovacuum does a little later (the command itself leaves it out), untimed:
            # the load analysed the milestone table while it was still empty.
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("ANALYZE funnel_milestones"))
    return elapsed


def milestones_of(app) -> dict[str, list]:
    with app.app_context():
        cols = ", ".join(STEP_COLUMNS)
        rows = db.session.execute(
            text(f"SELECT CAST(invite_id AS varchar), {cols} FROM funnel_milestones")
        )
        return {r[0]: list(r[1:]) for r in rows}


def time_funnel(app, runs: int, breakdown: str | None):
    scope = funnel_mod.Scope(window_days=120)

    def once():
        try:
            return funnel_mod.funnel(scope, breakdown)
        finally:
            db.session.rollback()

    with app.app_context():
        once()  # warm caches and compiled statements
        return timed(once, runs)


def time_event_writes(app, invite_ids: list[str]) -> tuple[float, float]:
    """Returns the median ms of recording one uptake event in its own transaction (a repeated
    `invite_opened`, which recomputes and updates the invite's milestone row with its 21
    indexes), and of inserting the same raw event alone, over the given invites."""
    from coaching.enrolment.models import Invite
    from coaching.metrics.models import UptakeEvent

    def once(invite_id: str, with_milestone: bool) -> float:
        started = time.perf_counter()
        invite = db.session.get(Invite, invite_id)
        if with_milestone:
            service.record_event(invite=invite, name="invite_opened", once=False)
        else:
            db.session.add(
                UptakeEvent(
                    invite_id=invite.id,
                    name="invite_opened",
                    occurred_at=NOW,
                    recorded_at=NOW,
                    practice_id=invite.practice_id,
                    therapist_id=invite.therapist_id,
                    referral_source=invite.referral_source,
                    channel=invite.channel,
                )
            )
        db.session.commit()
        return (time.perf_counter() - started) * 1000

    with app.app_context():
        with_row = statistics.median(once(i, True) for i in invite_ids)
        alone = statistics.median(once(i, False) for i in invite_ids)
        return with_row, alone


DUCK_SQL = """
WITH s0 AS (SELECT invite_id, min(t) AS t FROM ev WHERE name = 'invited' GROUP BY invite_id),
{chain},
attrs AS (SELECT invite_id, any_value(practice_id) AS practice_id FROM ev
          WHERE name = 'invited' GROUP BY invite_id),
m AS (SELECT s0.invite_id, attrs.practice_id, s0.t AS t0, {times}
      FROM s0 JOIN attrs USING (invite_id) {joins}),
g AS (SELECT {group} AS grp, {aggs} FROM m GROUP BY ALL)
SELECT * FROM g ORDER BY grp
"""


def duck_funnel(con, window_days: int, breakdown: bool):
    w = window_days * DAY
    chain = ",\n".join(
        f"s{k} AS (SELECT p.invite_id, min(e.t) AS t FROM s{k - 1} p JOIN ev e"
        f" ON e.invite_id = p.invite_id AND e.name = '{FUNNEL_STEPS[k]}' AND e.t >= p.t"
        " GROUP BY p.invite_id)"
        for k in range(1, len(FUNNEL_STEPS))
    )
    times = ", ".join(f"s{k}.t AS t{k}" for k in range(1, len(FUNNEL_STEPS)))
    joins = " ".join(f"LEFT JOIN s{k} USING (invite_id)" for k in range(1, len(FUNNEL_STEPS)))
    aggs = ["count(*) AS c0"]
    for k in range(1, len(FUNNEL_STEPS)):
        reached = f"t{k} <= t0 + {w}"
        prev = f"t{k - 1} <= t0 + {w}" if k > 1 else "true"
        aggs.append(f"count(*) FILTER (WHERE {reached}) AS c{k}")
        aggs.append(
            f"count(*) FILTER (WHERE {prev} AND NOT coalesce({reached}, false)"
            f" AND t0 > {NOW_TS - w}) AS p{k}"
        )
        aggs.append(f"median(t{k} - t{k - 1}) FILTER (WHERE {reached}) AS m{k}")
    sql = DUCK_SQL.format(
        chain=chain,
        times=times,
        joins=joins,
        group="practice_id" if breakdown else "'all'",
        aggs=", ".join(aggs),
    )
    rows = con.execute(sql).fetchall()
    cols = [d[0] for d in con.description]
    return [dict(zip(cols, r, strict=True)) for r in rows]


def duck_steps(row) -> list[tuple]:
    steps = [("invited", row["c0"], 0, None)]
    for k in range(1, len(FUNNEL_STEPS)):
        median = row[f"m{k}"]
        steps.append(
            (
                FUNNEL_STEPS[k],
                row[f"c{k}"],
                row[f"p{k}"],
                round(median / 3600, 2) if median is not None else None,
            )
        )
    return steps


def our_steps(steps) -> list[tuple]:
    return [
        (s["key"], s["count"], s["in_progress"], s["median_hours_from_previous"]) for s in steps
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/bench_metrics")
    parser.add_argument("--invites", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()

    started = time.perf_counter()
    practices, therapists, invites, events = generate(args.invites)
    print(
        f"generated {len(invites):,} invites, {len(events):,} events across {len(practices)}"
        f" practices in {time.perf_counter() - started:.1f} s"
    )
    expected = python_milestones(events)
    tmp = Path(tempfile.mkdtemp(prefix="funnel-bench-"))
    ensure_database(args.pg)
    apps = {
        "pg": make_app(args.pg),
        "sqlite": make_app(f"sqlite:///{tmp / 'bench.db'}"),
    }
    for name, app in apps.items():
        started = time.perf_counter()
        load(app, practices, therapists, invites, events)
        print(f"loaded {name} in {time.perf_counter() - started:.1f} s")

    # DuckDB reads the same raw events (load not timed).
    csv_path = tmp / "events.csv"
    with csv_path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["invite_id", "name", "t", "practice_id"])
        for invite_id, name, t, practice_id, *_ in events:
            writer.writerow([invite_id, name, t, practice_id])
    # The loads' writes reach the disk before anything is timed: otherwise the kernel's writeback
    # of the SQLite file (0.5 GB) and PostgreSQL's checkpoint after the load run during the first
    # timings (the PostgreSQL rebuild took 1.8-1.9 s right after the loads, 1.2-1.4 s later on).
    with (
        apps["pg"].app_context(),
        db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn,
    ):
        conn.execute(text("CHECKPOINT"))
    os.sync()
    con = duckdb.connect()
    con.execute(
        f"CREATE TABLE ev AS SELECT * FROM read_csv('{csv_path}', header=true,"
        " columns={'invite_id': 'VARCHAR', 'name': 'VARCHAR', 't': 'BIGINT',"
        " 'practice_id': 'VARCHAR'})"
    )
    duck_time, duck_all = timed(lambda: duck_funnel(con, 120, False), args.runs)
    duck_break_time, duck_break = timed(lambda: duck_funnel(con, 120, True), args.runs)

    results, ok = {}, True
    for name, app in apps.items():
        # The median of three: the first on an empty milestone table, the others replacing it.
        results[f"{name}_rebuild"] = statistics.median(rebuild(app) for _ in range(REBUILDS))
        got = milestones_of(app)
        same = got == expected
        ok &= same
        print(f"{name}: rebuilt milestone table equals the Python computation: {same}")
        if name == "pg":
            # The same in the command's transaction alone (the default builds the new table on
            # two more connections beside the live one).
            app.config["METRICS_REBUILD_CONNECTIONS"] = 1
            results["pg_rebuild_one"] = statistics.median(rebuild(app) for _ in range(REBUILDS))
            app.config["METRICS_REBUILD_CONNECTIONS"] = 2
            same = milestones_of(app) == expected
            ok &= same
            print(f"{name}: the same, rebuilt in one transaction: {same}")
        results[name], plain = time_funnel(app, args.runs, None)
        results[f"{name}_breakdown"], broken = time_funnel(app, args.runs, "practice")
        if name == "pg":
            # The same on one connection (the split over two is the default at this size).
            minimum, app.config["METRICS_PARALLEL_MIN_ROWS"] = (
                app.config["METRICS_PARALLEL_MIN_ROWS"],
                -1,
            )
            results["pg_one"], one = time_funnel(app, args.runs, None)
            results["pg_breakdown_one"], broken_one = time_funnel(app, args.runs, "practice")
            app.config["METRICS_PARALLEL_MIN_ROWS"] = minimum
            ok &= one == plain and broken_one == broken
        agree = our_steps(plain["steps"]) == duck_steps(duck_all[0])
        agree &= our_steps(broken["steps"]) == duck_steps(duck_all[0])
        for row in duck_break:
            agree &= our_steps(broken["breakdown"][row["grp"]]["steps"]) == duck_steps(row)
        ok &= agree
        print(f"{name}: funnel agrees with DuckDB (overall and per practice): {agree}")
    # Last, since they add events: the write path that keeps the milestone rows current.
    sample = [invite[0] for invite in random.Random(11).sample(invites, 300)]
    for name, app in apps.items():
        results[f"{name}_event"], results[f"{name}_event_alone"] = time_event_writes(app, sample)

    print(
        "\nfunnel over",
        f"{len(invites):,} invites, window 120 days (median of {args.runs} runs;"
        f" rebuilds: median of {REBUILDS})",
    )
    print(f"  {'what':<44}{'ms':>9}{'x DuckDB':>10}{'target':>10}")
    rows = [
        ("DuckDB funnel from raw events", duck_time, duck_time, None),
        ("DuckDB funnel from raw events, per practice", duck_break_time, duck_time, None),
        ("PostgreSQL funnel (milestone table)", results["pg"], duck_time, "20 ms"),
        ("PostgreSQL funnel, per practice", results["pg_breakdown"], duck_time, "50 ms"),
        ("  the same on one connection", results["pg_one"], duck_time, None),
        ("  per practice on one connection", results["pg_breakdown_one"], duck_time, None),
        ("SQLite funnel (milestone table)", results["sqlite"], duck_time, "50 ms"),
        ("SQLite funnel, per practice", results["sqlite_breakdown"], duck_time, "120 ms"),
        ("PostgreSQL metrics rebuild (raw events)", results["pg_rebuild"], duck_time, "5x"),
        ("  the same in one transaction", results["pg_rebuild_one"], duck_time, None),
        ("SQLite metrics rebuild (raw events)", results["sqlite_rebuild"], duck_time, None),
    ]
    for label, ms, base, target in rows:
        print(f"  {label:<44}{ms:>9.1f}{ms / base:>10.2f}{target or '':>10}")
    print(f"\nrecording one uptake event, own transaction (median of {len(sample)})")
    for name, label in (("pg", "PostgreSQL"), ("sqlite", "SQLite")):
        print(
            f"  {label + ': event + milestone row':<44}{results[f'{name}_event']:>9.2f} ms"
            f"   (the raw event alone: {results[f'{name}_event_alone']:.2f} ms)"
        )
    for key, limit in TARGET.items():
        if results[key] > limit:
            print(f"  over target: {key} {results[key]:.1f} ms > {limit} ms")
    if results["pg_rebuild"] > 5 * duck_time:
        print(f"  over target: pg_rebuild {results['pg_rebuild'] / duck_time:.1f}x DuckDB > 5x")
    if results["sqlite_rebuild"] > 5 * duck_time:
        print(
            f"  SQLite rebuild {results['sqlite_rebuild'] / duck_time:.1f}x DuckDB: over 5x"
            " (the target is checked on PostgreSQL, the production database)"
        )
    print("all agree" if ok else "DISAGREEMENT: see above")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
