"""Retention cohorts, the outcome benchmark, coaching response times and the reminder effect.

Each report takes a Scope already authorised for the caller (therapists: their own patients
only) and answers aggregates only. Definitions: docs/metrics.md.
"""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import Date, bindparam, func, select, text

from coaching import clock
from coaching.accounts.models import Account
from coaching.extensions import db
from coaching.messaging.service import WAITING_ON
from coaching.metrics.funnel import Scope, breakdown_labels, day_start_ts
from coaching.metrics.models import PatientActiveWeek
from coaching.metrics.service import _epoch_sql, epoch_seconds
from coaching.outcomes import definitions, schedule
from coaching.outcomes.definitions import ScoreDef
from coaching.outcomes.service import EPSILON


def _enrollment_conditions(enrollment, scope: Scope) -> list:
    conds = []
    if scope.date_from is not None:
        conds.append(enrollment.started_on >= scope.date_from)
    if scope.date_to is not None:
        conds.append(enrollment.started_on <= scope.date_to)
    if scope.practice_id is not None:
        conds.append(enrollment.practice_id == scope.practice_id)
    if scope.therapist_id is not None:
        conds.append(enrollment.therapist_id == scope.therapist_id)
    return conds


def cohort_of(day: date) -> date:
    """Returns the Monday of a day's week (the cohort an enrolment on that day belongs to)."""
    return day - timedelta(days=day.weekday())


def retention(scope: Scope, weeks: int = 12) -> dict:
    """Returns weekly enrolment cohorts with the share of patients active in each week since.

    Week n covers days 7(n-1) to 7n-1 after a patient's enrolment. A patient counts for week n
    (is `eligible`) once that week is over; `share` = active / eligible, None while none is.
    """
    from coaching.enrolment.models import Enrollment as E

    # Times are whole seconds (docs/metrics.md): week n is over once the truncated enrolment time
    # plus 7n days is at most the truncated now, i.e. for enrolled_at before that plus 1 second.
    now = clock.now().replace(microsecond=0)
    cutoffs = [now - timedelta(days=7 * n) + timedelta(seconds=1) for n in range(1, weeks + 1)]
    conds = _enrollment_conditions(E, scope)
    sizes = db.session.execute(
        select(
            E.started_on,
            func.count(),
            *[func.count().filter(E.enrolled_at < c) for c in cutoffs],
        )
        .where(*conds)
        .group_by(E.started_on)
    ).all()
    a = PatientActiveWeek
    active = db.session.execute(
        select(
            E.started_on,
            *[
                func.count().filter(a.week == n, E.enrolled_at < c)
                for n, c in enumerate(cutoffs, start=1)
            ],
        )
        .join(a, a.patient_id == E.patient_id)
        .where(*conds, a.week <= weeks)
        .group_by(E.started_on)
    ).all()
    cohorts: dict[date, dict] = {}
    for started_on, size, *eligible in sizes:
        entry = cohorts.setdefault(
            cohort_of(started_on), {"size": 0, "eligible": [0] * weeks, "active": [0] * weeks}
        )
        entry["size"] += size
        entry["eligible"] = [x + y for x, y in zip(entry["eligible"], eligible, strict=True)]
    for started_on, *counts in active:
        entry = cohorts[cohort_of(started_on)]
        entry["active"] = [x + y for x, y in zip(entry["active"], counts, strict=True)]

    def shape(label: str, entry: dict) -> dict:
        return {
            "cohort": label,
            "size": entry["size"],
            "weeks": [
                {
                    "week": n,
                    "eligible": entry["eligible"][n - 1],
                    "active": entry["active"][n - 1],
                    "share": round(entry["active"][n - 1] / entry["eligible"][n - 1], 4)
                    if entry["eligible"][n - 1]
                    else None,
                }
                for n in range(1, weeks + 1)
            ],
        }

    total = {"size": 0, "eligible": [0] * weeks, "active": [0] * weeks}
    for entry in cohorts.values():
        total["size"] += entry["size"]
        for key in ("eligible", "active"):
            total[key] = [x + y for x, y in zip(total[key], entry[key], strict=True)]
    return {
        "weeks": weeks,
        "cohorts": [shape(day.isoformat(), cohorts[day]) for day in sorted(cohorts)],
        "total": shape("all", total),
    }


# --- outcome benchmark -------------------------------------------------------------------------

MIN_GROUP = 5


def outcome_scores(timepoint: str) -> list[tuple[str, ScoreDef]]:
    """Returns the (questionnaire, score) pairs compared between baseline and a follow-up: the
    numeric scores with a direction of improvement, of questionnaires asked at both times."""
    asked = set(schedule.SCHEDULE["baseline"]) & set(schedule.SCHEDULE[timepoint])
    return [
        (key, score)
        for key, definition in definitions.definitions().items()
        if key in asked
        for score in definition.scores
        if score.type != "text" and score.better is not None
    ]


def _scope_sql(scope: Scope, *, practice: str, therapist: str) -> tuple[list[str], dict]:
    where, params = [], {}
    if scope.practice_id is not None:
        where.append(f"{practice} = :practice_id")
        params["practice_id"] = scope.practice_id
    if scope.therapist_id is not None:
        where.append(f"{therapist} = :therapist_id")
        params["therapist_id"] = scope.therapist_id
    return where, params


def outcomes(
    scope: Scope, timepoint: str = "month3", locale: str = "en", *, whole_groups_only: bool = True
) -> dict:
    """Returns the outcome benchmark per practice: patients with a baseline and the follow-up,
    and per score the mean baseline, follow-up and change and the share reaching the minimal
    important change (absolute and relative separately). Groups under 5 patients are suppressed.

    Patients are the enrolled ones in scope (their enrolment's practice and therapist); `from` and
    `to` filter the enrolment's `started_on`. With `whole_groups_only` (owners), a group that the
    therapist or date filters narrow is suppressed too unless it still holds every patient of the
    practice's whole group: two overlapping groups of 5 or more would otherwise differ by the
    scores of fewer than 5 patients (6 in a practice minus 5 of one therapist is one patient's).
    Therapists, who see their own patients' scores one by one anyway, may narrow freely.
    """
    scores = outcome_scores(timepoint)
    patients, found = _outcome_groups(scope, timepoint, scores)
    narrowed = any(v is not None for v in (scope.therapist_id, scope.date_from, scope.date_to))
    whole = patients
    if whole_groups_only and narrowed:
        # A narrowed group is a subset of the practice's whole one, so an equal count means the
        # same patients, and then every score's group is the whole one too: every figure shown
        # is that of a whole practice.
        whole, _ = _outcome_groups(Scope(practice_id=scope.practice_id), timepoint, scores)
    labels = breakdown_labels("practice", patients)
    practices = []
    for practice_id in sorted(patients, key=lambda p: (labels.get(p, ""), p)):
        n = patients[practice_id]
        suppressed = n < MIN_GROUP or n != whole.get(practice_id)
        entry = {
            "practice_id": practice_id,
            "label": labels.get(practice_id, practice_id),
            "patients": None if suppressed else n,
            "suppressed": suppressed,
            "scores": [],
        }
        if not suppressed:
            entry["scores"] = [
                _score_entry(key, score, found.get((practice_id, key, score.name)), locale)
                for key, score in scores
            ]
        practices.append(entry)
    return {"timepoint": timepoint, "min_group_size": MIN_GROUP, "practices": practices}


def _outcome_groups(
    scope: Scope, timepoint: str, scores: list[tuple[str, ScoreDef]]
) -> tuple[dict[str, int], dict[tuple[str, str, str], tuple]]:
    """Returns ({practice: patients}, {(practice, questionnaire, score): (count, sums...)})."""
    params: dict = {"timepoint": timepoint}
    matches, absolute, relative = [], [], []
    for i, (key, score) in enumerate(scores):
        params[f"k{i}"], params[f"n{i}"] = key, score.name
        match = f"(b.questionnaire_key = :k{i} AND b.name = :n{i})"
        matches.append(match)
        gain = "b.value - f.value" if score.better == "lower" else "f.value - b.value"
        # The same comparisons, in the same floating-point order, as the patient's own view
        # (outcomes.service.mic_reached), with its tolerance for 9.999999999999998.
        if score.mic_absolute is not None:
            params[f"a{i}"] = score.mic_absolute - EPSILON
            absolute.append(f"({match} AND {gain} >= :a{i})")
        if score.mic_relative_percent is not None:
            params[f"r{i}"] = score.mic_relative_percent - EPSILON
            relative.append(f"({match} AND b.value > 0 AND 100 * ({gain}) / b.value >= :r{i})")
    where = [
        "b.timepoint = 'baseline'",
        "b.value IS NOT NULL",
        "f.value IS NOT NULL",
        "(" + " OR ".join(matches) + ")",
    ]
    scoped, scope_params = _scope_sql(scope, practice="e.practice_id", therapist="e.therapist_id")
    where += scoped
    params |= scope_params
    binds = []
    if scope.date_from is not None:
        where.append("e.started_on >= :date_from")
        binds.append(bindparam("date_from", scope.date_from, type_=Date))
    if scope.date_to is not None:
        where.append("e.started_on <= :date_to")
        binds.append(bindparam("date_to", scope.date_to, type_=Date))
    pairs = (
        " FROM questionnaire_scores b JOIN questionnaire_scores f"
        " ON f.patient_id = b.patient_id AND f.questionnaire_key = b.questionnaire_key"
        " AND f.name = b.name AND f.timepoint = :timepoint"
        " JOIN enrollments e ON e.patient_id = b.patient_id WHERE " + " AND ".join(where)
    )
    per_score = text(
        "SELECT e.practice_id, b.questionnaire_key, b.name, count(*),"
        " avg(b.value), avg(f.value), avg(f.value - b.value),"
        f" sum(CASE WHEN {' OR '.join(absolute) or '1 = 0'} THEN 1 ELSE 0 END),"
        " sum(CASE WHEN b.value > 0 THEN 1 ELSE 0 END),"
        f" sum(CASE WHEN {' OR '.join(relative) or '1 = 0'} THEN 1 ELSE 0 END)"
        + pairs
        + " GROUP BY e.practice_id, b.questionnaire_key, b.name"
    ).bindparams(*binds)
    per_practice = text(
        "SELECT e.practice_id, count(DISTINCT b.patient_id)" + pairs + " GROUP BY e.practice_id"
    ).bindparams(*binds)
    patients = dict(db.session.execute(per_practice, params).all())
    found: dict[tuple[str, str, str], tuple] = {}
    for practice_id, key, name, *values in db.session.execute(per_score, params):
        found[(practice_id, key, name)] = values
    return patients, found


def _score_entry(key: str, score: ScoreDef, values: tuple | None, locale: str) -> dict:
    count, mean_b, mean_f, mean_change, absolute, room, relative = values or (0,) * 7
    shown = count >= MIN_GROUP
    entry = {
        "key": key,
        "score": score.name,
        "label": definitions.pick(score.label, locale),
        "better": score.better,
        "patients": count if shown else None,
        "suppressed": not shown,
        "mean_baseline": None,
        "mean_follow_up": None,
        "mean_change": None,
        "mic_absolute": score.mic_absolute,
        "mic_relative_percent": score.mic_relative_percent,
        "share_mic_absolute": None,
        "share_mic_relative": None,
    }
    if not shown:
        return entry
    entry["mean_baseline"] = round(float(mean_b), 3)
    entry["mean_follow_up"] = round(float(mean_f), 3)
    entry["mean_change"] = round(float(mean_change), 3)
    if score.mic_absolute is not None:
        entry["share_mic_absolute"] = round(int(absolute) / count, 4)
    if score.mic_relative_percent is not None and room:
        entry["share_mic_relative"] = round(int(relative) / int(room), 4)
    return entry


# --- coaching response times -------------------------------------------------------------------

REPLY_WITHIN = 48 * 3600


def _median_sql(value: str, partition: str, *, answered: str = "1 = 1") -> tuple[str, str]:
    """Returns (window columns, aggregate) computing a median per group with plain window
    functions (SQLite has no percentile aggregate): the mean of the middle one or two values."""
    # Rows without a value sort last on both databases (SQLite would put NULLs first).
    order = f"CASE WHEN {answered} THEN 0 ELSE 1 END, {value}"
    windows = (
        f"row_number() OVER (PARTITION BY {partition} ORDER BY {order}) AS rn,"
        f" sum(CASE WHEN {answered} THEN 1 ELSE 0 END) OVER (PARTITION BY {partition}) AS n"
    )
    aggregate = f"avg(CASE WHEN {answered} AND rn IN ((n + 1) / 2, (n + 2) / 2) THEN {value} END)"
    return windows, aggregate


def _levels_sql(source: str, columns: str) -> str:
    # Every row counts for its therapist, its therapist's practice and the whole scope.
    return (
        f"SELECT 'therapist' AS lvl, therapist_id AS k, {columns} FROM {source}"
        f" UNION ALL SELECT 'practice' AS lvl, practice_id AS k, {columns} FROM {source}"
        f" UNION ALL SELECT 'all' AS lvl, 'all' AS k, {columns} FROM {source}"
    )


def _reply_stats(scope: Scope, now: int) -> dict[tuple[str, str], dict]:
    """Returns {(level, key): reply statistics} for the waits that started in the period.

    A wait begins with a patient's message that the therapist had not answered yet and ends at
    the therapist's next message (sent at the same second or later); all times are when the
    message reached the other side (`sent_at`), in whole seconds.
    """
    epoch = _epoch_sql("m.sent_at")
    where, params = _scope_sql(scope, practice="a.practice_id", therapist="c.therapist_id")
    params |= {"now": now, "within": REPLY_WITHIN}
    period = []
    if scope.date_from is not None:
        period.append("start_t >= :lo")
        params["lo"] = day_start_ts(scope.date_from)
    if scope.date_to is not None:
        period.append("start_t < :hi")
        params["hi"] = day_start_ts(scope.date_to + timedelta(days=1))
    windows, median = _median_sql("s", "lvl, k", answered="reply_t IS NOT NULL")
    sql = (
        "WITH sent AS (SELECT m.conversation_id, m.sender_role, c.therapist_id, a.practice_id,"
        f" {epoch} AS t FROM messages m JOIN conversations c ON c.id = m.conversation_id"
        " JOIN accounts a ON a.id = c.therapist_id WHERE "
        + " AND ".join(["m.sent_at IS NOT NULL", *where])
        + "),"
        # For every message, the first therapist message at or after it (at an equal second the
        # patient's message sorts first, so a reply in the same second answers it).
        " marked AS (SELECT *, min(CASE WHEN sender_role = 'therapist' THEN t END) OVER"
        " (PARTITION BY conversation_id ORDER BY t,"
        " CASE WHEN sender_role = 'patient' THEN 0 ELSE 1 END"
        " ROWS BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING) AS reply_t FROM sent),"
        # The patient messages answered by one reply (or still unanswered) form one wait.
        " waits AS (SELECT therapist_id, practice_id, min(t) AS start_t, reply_t FROM marked"
        " WHERE sender_role = 'patient' GROUP BY conversation_id, therapist_id, practice_id,"
        " reply_t),"
        " scoped AS (SELECT therapist_id, practice_id, start_t, reply_t, reply_t - start_t AS s"
        " FROM waits" + (" WHERE " + " AND ".join(period) if period else "") + "),"
        f" levels AS ({_levels_sql('scoped', 'start_t, reply_t, s')}),"
        f" ranked AS (SELECT lvl, k, start_t, reply_t, s, {windows} FROM levels)"
        " SELECT lvl, k, count(reply_t),"
        " sum(CASE WHEN reply_t IS NOT NULL AND s <= :within THEN 1 ELSE 0 END),"
        f" {median},"
        " sum(CASE WHEN reply_t IS NULL THEN 1 ELSE 0 END),"
        " sum(CASE WHEN reply_t IS NULL AND CAST(:now AS BIGINT) - start_t > :within"
        " THEN 1 ELSE 0 END),"
        " max(CASE WHEN reply_t IS NULL THEN CAST(:now AS BIGINT) - start_t END)"
        " FROM ranked GROUP BY lvl, k"
    )
    stats = {}
    for lvl, k, replies, within, median_s, awaiting, late, oldest in db.session.execute(
        text(sql), params
    ):
        replies, within, awaiting, late = (int(x or 0) for x in (replies, within, awaiting, late))
        decided = replies + late
        stats[(lvl, k)] = {
            "replies": replies,
            "median_hours": _hours(median_s),
            "replied_within_48h": within,
            "share_within_48h": round(within / decided, 4) if decided else None,
            "awaiting_reply": awaiting,
            "awaiting_over_48h": late,
            "oldest_awaiting_hours": _hours(oldest),
        }
    return stats


def _cycle_stats(scope: Scope, now: int) -> dict[tuple[str, str], dict]:
    """Returns {(level, key): {side: open cycles waiting on it}}, as of now."""
    waiting_on = " ".join(f"WHEN '{phase}' THEN '{side}'" for phase, side in WAITING_ON.items())
    where, params = _scope_sql(scope, practice="a.practice_id", therapist="c.therapist_id")
    params["now"] = now
    windows, median = _median_sql("s", "lvl, k, side")
    sql = (
        "WITH open_cycles AS (SELECT c.therapist_id, a.practice_id,"
        f" CASE cc.phase {waiting_on} END AS side,"
        f" CAST(:now AS BIGINT) - {_epoch_sql('cc.waiting_since')} AS s"
        " FROM coaching_cycles cc JOIN conversations c ON c.id = cc.conversation_id"
        " JOIN accounts a ON a.id = c.therapist_id WHERE "
        + " AND ".join(["cc.status = 'open'", *where])
        + "),"
        f" levels AS ({_levels_sql('open_cycles', 'side, s')}),"
        f" ranked AS (SELECT lvl, k, side, s, {windows} FROM levels)"
        f" SELECT lvl, k, side, count(*), {median}, max(s) FROM ranked"
        " WHERE side IS NOT NULL GROUP BY lvl, k, side"
    )
    stats: dict[tuple[str, str], dict] = {}
    for lvl, k, side, count, median_s, longest in db.session.execute(text(sql), params):
        stats.setdefault((lvl, k), {})[side] = {
            "count": int(count),
            "median_hours_waiting": _hours(median_s),
            "longest_hours_waiting": _hours(longest),
        }
    return stats


def _hours(seconds) -> float | None:
    return None if seconds is None else round(float(seconds) / 3600, 2)


def _coaching_entry(replies: dict | None, cycles: dict | None) -> dict:
    empty_side = {"count": 0, "median_hours_waiting": None, "longest_hours_waiting": None}
    entry = replies or {
        "replies": 0,
        "median_hours": None,
        "replied_within_48h": 0,
        "share_within_48h": None,
        "awaiting_reply": 0,
        "awaiting_over_48h": 0,
        "oldest_awaiting_hours": None,
    }
    cycles = cycles or {}
    on_therapist = cycles.get("therapist", empty_side)
    on_patient = cycles.get("patient", empty_side)
    return entry | {
        "open_cycles": on_therapist["count"] + on_patient["count"],
        "cycles_waiting_on_therapist": on_therapist,
        "cycles_waiting_on_patient": on_patient,
    }


def coaching(scope: Scope) -> dict:
    """Returns therapist response times and open coaching cycles, overall, per practice and per
    therapist (the conversation's therapist and that therapist's practice).

    Response times: per wait (see _reply_stats) the hours until the therapist's reply; the median
    over answered waits, and the share answered within 48 hours of the waits whose outcome is
    known (answered, or unanswered for more than 48 hours). `from`/`to` select waits by the day
    they began. Open coaching cycles are as of now: how many wait on the therapist or on the
    patient, and for how long.
    """
    now = epoch_seconds(clock.now())
    replies = _reply_stats(scope, now)
    cycles = _cycle_stats(scope, now)
    keys = set(replies) | set(cycles)
    practice_ids = {k for lvl, k in keys if lvl == "practice"}
    therapist_ids = {k for lvl, k in keys if lvl == "therapist"}
    practice_labels = breakdown_labels("practice", practice_ids)
    therapist_labels = breakdown_labels("therapist", therapist_ids)
    therapist_practice = dict(
        db.session.execute(
            select(Account.id, Account.practice_id).where(Account.id.in_(therapist_ids))
        ).all()
    )
    practices = []
    for practice_id in sorted(practice_ids, key=lambda p: (practice_labels.get(p, ""), p)):
        members = [t for t in therapist_ids if therapist_practice.get(t) == practice_id]
        therapists = [
            {"therapist_id": t, "label": therapist_labels.get(t, t)}
            | _coaching_entry(replies.get(("therapist", t)), cycles.get(("therapist", t)))
            for t in sorted(members, key=lambda t: (therapist_labels.get(t, ""), t))
        ]
        practices.append(
            {"practice_id": practice_id, "label": practice_labels.get(practice_id, practice_id)}
            | _coaching_entry(
                replies.get(("practice", practice_id)), cycles.get(("practice", practice_id))
            )
            | {"therapists": therapists}
        )
    return {
        "reply_within_hours": REPLY_WITHIN // 3600,
        "all": _coaching_entry(replies.get(("all", "all")), cycles.get(("all", "all"))),
        "practices": practices,
    }


ACTED_WITHIN = 24 * 3600
# What a reminder asks for: working on a lesson, or answering a questionnaire. Opening the app
# (which opening the push itself records) does not count as acting on it.
ACTED_KINDS = ("lesson_started", "lesson_completed", "lesson_answered", "questionnaire")


def reminders(scope: Scope) -> dict:
    """Returns, per reminder category, how many were scheduled, sent, opened, and acted on.

    Opened = sent and opened. Acted on = the patient worked on a lesson or answered a
    questionnaire (`ACTED_KINDS`) within 24 hours after it was sent. Only reminders to enrolled
    patients in the scope count; dates filter `scheduled_for`.
    """
    scheduled = _epoch_sql("n.scheduled_for")
    sent = _epoch_sql("n.sent_at")
    activity = _epoch_sql("a.occurred_at")
    where, params = ["n.recipient_id = e.patient_id"], {"within": ACTED_WITHIN}
    kinds = ", ".join(f":kind{i}" for i in range(len(ACTED_KINDS)))
    params |= {f"kind{i}": kind for i, kind in enumerate(ACTED_KINDS)}
    if scope.date_from is not None:
        where.append(f"{scheduled} >= :lo")
        params["lo"] = day_start_ts(scope.date_from)
    if scope.date_to is not None:
        where.append(f"{scheduled} < :hi")
        params["hi"] = day_start_ts(scope.date_to + timedelta(days=1))
    for name in ("practice_id", "therapist_id"):
        if getattr(scope, name) is not None:
            where.append(f"e.{name} = :{name}")
            params[name] = getattr(scope, name)
    sql = (
        "SELECT n.category, count(*),"
        " sum(CASE WHEN n.sent_at IS NOT NULL THEN 1 ELSE 0 END),"
        # A reminder never sent (skipped, failed) can still be opened from the app's list;
        # that is no push opened, and `opened` is a step after `sent`.
        " sum(CASE WHEN n.sent_at IS NOT NULL AND n.opened_at IS NOT NULL THEN 1 ELSE 0 END),"
        " sum(CASE WHEN n.sent_at IS NOT NULL AND EXISTS (SELECT 1 FROM patient_activity a"
        f" WHERE a.patient_id = n.recipient_id AND a.kind IN ({kinds}) AND {activity} >= {sent}"
        f" AND {activity} < {sent} + :within) THEN 1 ELSE 0 END)"
        " FROM notifications n JOIN enrollments e ON " + " AND ".join(where) + ""
        " GROUP BY n.category ORDER BY n.category"
    )
    categories = []
    for category, total, sent_n, opened, acted in db.session.execute(text(sql), params):
        sent_n, opened, acted = int(sent_n or 0), int(opened or 0), int(acted or 0)
        categories.append(
            {
                "category": category,
                "scheduled": int(total),
                "sent": sent_n,
                "opened": opened,
                "acted_on": acted,
                "share_opened": round(opened / sent_n, 4) if sent_n else None,
                "share_acted_on": round(acted / sent_n, 4) if sent_n else None,
            }
        )
    return {"acted_within_hours": ACTED_WITHIN // 3600, "categories": categories}
