"""The demo data of video coaching: real videos through the real check, loaded once."""

from __future__ import annotations

from sqlalchemy import func, select

from coaching import clock
from coaching.demo.cli import seed_foundation
from coaching.extensions import db
from coaching.media.storage import get_storage
from coaching.messaging import demo, service
from coaching.messaging.models import CoachingCycle, Message


class _Progress:
    def update(self, n=1):
        pass


def test_demo_conversations_hold_real_videos_and_load_once():
    ctx = seed_foundation(_Progress())
    db.session.commit()
    demo.seed(ctx, _Progress())
    db.session.commit()
    videos = db.session.execute(select(Message).where(Message.kind == "video")).scalars().all()
    assert videos and all(v.status == "ready" and v.duration_s > 2 for v in videos)
    assert all(get_storage().size_of(v.media_key) == v.size_bytes for v in videos)
    cycles = db.session.execute(select(CoachingCycle)).scalars().all()
    assert {c.phase for c in cycles} == {"answered", "requested"}
    assert sum(service.unread_count(t) for t in ctx.therapists) >= 1
    assert len(service.messages_awaiting_reply(clock.now())) == 1  # the unanswered story
    count = db.session.execute(select(func.count(Message.id))).scalar_one()
    demo.seed(ctx, _Progress())
    db.session.commit()
    assert db.session.execute(select(func.count(Message.id))).scalar_one() == count
