"""Demo cohorts for the dashboard: six months of invites whose journeys tell a story.

Referrals through the insurer convert badly (few open the invite), letters are opened late, and
one practice loses patients between registration and consent. Idempotent: it adds nothing when
its invites (codes starting with DEMO) exist already.
"""

from __future__ import annotations

import random
from datetime import timedelta

from sqlalchemy import select

from coaching import clock
from coaching.enrolment.models import Invite
from coaching.extensions import db
from coaching.metrics import service
from coaching.metrics.models import FUNNEL_STEPS

INVITES = 420
DAYS = 180
SOURCES = ("gp", "gp", "physio", "specialist", "insurer", "self")
CHANNELS = ("in_person", "email", "sms", "letter", "qr")
BASE = (0.8, 0.75, 0.9, 0.85, 0.85, 0.7, 0.7, 0.6)


def seed(ctx, progress) -> None:
    """Add the demo cohorts (once)."""
    if db.session.execute(select(Invite.id).where(Invite.code.like("DEMO%")).limit(1)).first():
        return
    rng = random.Random(2026)
    now = clock.now()
    therapists = ctx.therapists
    for n in range(INVITES):
        therapist = therapists[n % len(therapists)]
        source, channel = rng.choice(SOURCES), rng.choice(CHANNELS)
        created = now - timedelta(days=rng.uniform(0, DAYS))
        invite = Invite(
            code=f"DEMO{n:06d}",
            therapist_id=therapist.id,
            practice_id=therapist.practice_id,
            referral_source=source,
            channel=channel,
            created_at=created,
            expires_at=created + timedelta(days=30),
        )
        db.session.add(invite)
        db.session.flush()
        service.record_event(invite=invite, name="invited", occurred_at=created)
        at = registered = created
        for step, chance in enumerate(BASE, start=1):
            if source == "insurer" and step == 1:
                chance = 0.35
            if therapist is therapists[-1] and step == 3:
                chance = 0.55
            if rng.random() > chance:
                break
            hours = rng.expovariate(1 / (96 if channel == "letter" and step == 1 else 30))
            at += timedelta(hours=hours)
            if step == 7:
                # Activity in days 21-27 after enrolment (registration), as record_activity
                # would find it (docs/metrics.md), and not before the first video exchange.
                earliest = max(at, registered + timedelta(days=21))
                room = (registered + timedelta(days=28) - earliest).total_seconds() - 1
                if room < 0:
                    break
                at = earliest + timedelta(seconds=rng.uniform(0, room))
            if step == 8:
                at = created + timedelta(days=rng.uniform(84, 100))
            if at > now or (step <= 2 and at >= invite.expires_at):
                break  # not yet, or the invite expired before it was opened or used
            if step == 1:
                invite.opened_at = at
            if step == 2:
                # Redeemed by a patient the demo does not create (as after an erasure).
                invite.redeemed_at = registered = at
            service.record_event(invite=invite, name=FUNNEL_STEPS[step], occurred_at=at)
        if n % 20 == 0:
            progress.set_postfix_str(f"metrics {n}/{INVITES} invites")
    db.session.flush()
