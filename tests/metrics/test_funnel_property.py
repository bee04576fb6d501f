"""The funnel against a brute-force computation over random event histories (hypothesis), and the
rebuild reproducing the incrementally kept tables exactly."""

from __future__ import annotations

import statistics
import uuid
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select

from coaching.enrolment.models import Invite
from coaching.extensions import db
from coaching.metrics import funnel, service
from coaching.metrics.models import (
    FUNNEL_STEPS,
    FunnelMilestone,
    PatientActiveWeek,
    UptakeEvent,
)
from tests.conftest import START

DAY = 86400
AMS = ZoneInfo("Europe/Amsterdam")

event_strategy = st.tuples(
    st.integers(min_value=0, max_value=len(FUNNEL_STEPS) - 1),  # step
    st.integers(min_value=-2 * DAY, max_value=60 * DAY),  # seconds after the invite
    st.integers(min_value=0, max_value=999_999),  # microseconds (times are truncated)
)
invite_strategy = st.tuples(
    st.integers(min_value=0, max_value=2),  # therapist
    st.sampled_from(["gp", "insurer"]),
    st.sampled_from(["email", "sms"]),
    st.integers(min_value=0, max_value=90 * DAY),  # invite this long before now
    st.lists(event_strategy, max_size=14),
    st.booleans(),  # has its `invited` event
)


def brute_force(invites, now_ts, window_days, breakdown, date_from, only=None):
    """Returns {group: [(count, in_progress, median seconds)]} straight from the definitions
    (`only`: an (attribute, value) filter)."""
    w = window_days * DAY
    units = []
    for attrs, events in invites:
        if only is not None and attrs[only[0]] != only[1]:
            continue
        occ = {}
        for step, at in events:
            occ.setdefault(step, []).append(
                int((at - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() // 1)
            )
        if "invited" not in occ:
            continue
        times = [min(occ["invited"])]
        for step in FUNNEL_STEPS[1:]:
            prev = times[-1]
            later = [t for t in occ.get(step, []) if prev is not None and t >= prev]
            times.append(min(later) if later else None)
        t0 = times[0]
        if date_from is not None:
            local = datetime.fromtimestamp(t0, UTC).astimezone(AMS).date()
            if local < date_from:
                continue
        reached = [t is not None and t - t0 <= w for t in times]
        units.append((attrs, times, reached, now_ts < t0 + w))
    groups = {None: units}
    if breakdown:
        groups = {}
        for unit in units:
            groups.setdefault(unit[0][breakdown], []).append(unit)
    result = {}
    for group, members in groups.items():
        steps = []
        for k in range(len(FUNNEL_STEPS)):
            count = sum(1 for u in members if u[2][k])
            in_progress = (
                sum(1 for u in members if u[2][k - 1] and not u[2][k] and u[3]) if k else 0
            )
            durations = [u[1][k] - u[1][k - 1] for u in members if k and u[2][k]]
            median = statistics.median(durations) if durations else None
            steps.append((count, in_progress, median))
        result[group] = steps
    return result


def _snapshot():
    milestones = {
        r.invite_id: tuple(getattr(r, c.name) for c in FunnelMilestone.__table__.columns)
        for r in db.session.execute(select(FunnelMilestone)).scalars()
    }
    weeks = set(db.session.execute(select(*PatientActiveWeek.__table__.columns)).all())
    return milestones, weeks


def _split(*, parallel: bool) -> funnel._Split:
    """A split whose cut points lie among the current milestone rows (from their own values, as
    the planner's statistics would give them for a large table)."""
    rows = db.session.execute(
        select(
            FunnelMilestone.invited_ts, FunnelMilestone.practice_id, FunnelMilestone.therapist_id
        )
    ).all()
    times = sorted(r.invited_ts for r in rows if r.invited_ts is not None) * 4
    values = {}
    for index, column in ((1, "practice_id"), (2, "therapist_id")):
        counts = Counter(str(r[index]) for r in rows)
        values[column] = [(v, n / len(rows)) for v, n in counts.items()]
    helper = funnel._helper_engine() if parallel else None
    return funnel._Split(funnel._Statistics(sorted(times), values), helper, parallel)


def _with_split(split, scope, breakdown):
    planned = funnel._split_plan
    funnel._split_plan = lambda _scope: split
    try:
        return funnel.funnel(scope, breakdown)
    finally:
        funnel._split_plan = planned


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    invites=st.lists(invite_strategy, min_size=1, max_size=8),
    window_days=st.sampled_from([1, 3, 30, 120, 365]),
    breakdown=st.sampled_from([None, "practice", "therapist", "referral_source", "channel"]),
    date_from=st.sampled_from([None, date(2026, 1, 15), date(2026, 2, 20)]),
    # None, the first practice (its medians walk the indexes) or therapist 0 (sorted).
    only=st.sampled_from([None, "practice", "therapist"]),
    order=st.randoms(use_true_random=False),
)
def test_funnel_matches_brute_force(make, invites, window_days, breakdown, date_from, only, order):
    therapists = getattr(test_funnel_matches_brute_force, "_therapists", None)
    if therapists is None or db.session.get(type(therapists[0]), therapists[0].id) is None:
        first, second = make.practice(), make.practice()
        therapists = [make.therapist(first), make.therapist(first), make.therapist(second)]
        test_funnel_matches_brute_force._therapists = therapists
    for model in (FunnelMilestone, UptakeEvent, Invite):
        db.session.execute(delete(model))
    now = START
    built, pending = [], []
    for therapist_index, source, channel, age, events, has_invited in invites:
        therapist = therapists[therapist_index]
        created = now - timedelta(seconds=age)
        invite = Invite(
            code=uuid.uuid4().hex[:16],
            therapist_id=therapist.id,
            practice_id=therapist.practice_id,
            referral_source=source,
            channel=channel,
            created_at=created,
            expires_at=created + timedelta(days=30),
        )
        db.session.add(invite)
        history = [
            (FUNNEL_STEPS[s], created + timedelta(seconds=o, microseconds=us))
            for s, o, us in events
        ]
        if has_invited:
            history.append(("invited", created))
        attrs = {
            "practice": therapist.practice_id,
            "therapist": therapist.id,
            "referral_source": source,
            "channel": channel,
        }
        built.append((attrs, history))
        pending.extend((invite, name, at) for name, at in history)
    db.session.flush()
    order.shuffle(pending)  # events arrive in any order, repeats included
    for invite, name, at in pending:
        service.record_event(invite=invite, name=name, occurred_at=at, once=False)

    filters, wanted = {}, None
    if only == "practice":
        wanted = ("practice", therapists[0].practice_id)
        filters = {"practice_id": therapists[0].practice_id}
    elif only == "therapist":
        wanted = ("therapist", therapists[0].id)
        filters = {"therapist_id": therapists[0].id}
    now_ts = service.epoch_seconds(now)
    expected = brute_force(built, now_ts, window_days, breakdown, date_from, wanted)
    overall = brute_force(built, now_ts, window_days, None, date_from, wanted)
    scope = funnel.Scope(window_days=window_days, date_from=date_from, **filters)
    got = funnel.funnel(scope, breakdown)

    def shape(steps):
        return [
            (
                s["count"],
                s["in_progress"],
                None
                if s["median_hours_from_previous"] is None
                else s["median_hours_from_previous"],
            )
            for s in steps
        ]

    def expect(steps):
        return [(c, p, None if m is None else round(m / 3600, 2)) for c, p, m in steps]

    assert shape(got["steps"]) == expect(overall[None])
    if breakdown is not None:
        assert set(got["breakdown"]) == set(expected)
        for group, steps in expected.items():
            assert shape(got["breakdown"][group]["steps"]) == expect(steps)

    # The same funnel with its scans cut in two where these invites' times and ids fall: one
    # half after the other and, on PostgreSQL, on two connections at once (which needs the
    # rows committed: the second connection cannot see this transaction's).
    if funnel._walkable(scope, None):
        assert _with_split(_split(parallel=False), scope, breakdown) == got
        if db.engine.dialect.name == "postgresql":
            db.session.commit()
            # (test_funnel_parallel.py checks that the second connection is used)
            assert _with_split(_split(parallel=True), scope, breakdown) == got

    # The rebuild from the raw events gives exactly the rows kept up to date event by event.
    before = _snapshot()
    service.rebuild()
    assert _snapshot() == before
