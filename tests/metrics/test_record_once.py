"""A step recorded "once" is stored once, even when two requests record it at the same moment
(PostgreSQL: the second waits for the first's transaction and then sees its event)."""

from __future__ import annotations

import os
import threading

import pytest
from sqlalchemy import func, select

from coaching.enrolment.models import Invite
from coaching.extensions import db
from coaching.metrics import service
from coaching.metrics.models import UptakeEvent
from tests.metrics.test_rebuild_staged import _wait_for_a_lock_wait


def test_a_step_recorded_once_is_not_stored_again(app, make):
    invite = make.invite(make.therapist())
    assert service.record_event(invite=invite, name="invite_opened") is not None
    assert service.record_event(invite=invite, name="invite_opened") is None
    assert service.record_event(invite=invite, name="invite_opened", once=False) is not None
    assert _events(invite.id, "invite_opened") == 2


@pytest.mark.skipif(
    not os.environ.get("COACHING_TEST_DATABASE_URL", "").startswith("postgresql"),
    reason="concurrent transactions: PostgreSQL (SQLite has one writer at a time)",
)
def test_two_requests_recording_the_same_step_at_once_store_it_once(app, make):
    invite = make.invite(make.therapist())
    db.session.commit()
    invite_id = invite.id
    results: list = []
    errors: list[BaseException] = []

    def second_request() -> None:
        try:
            with app.app_context():
                other = db.session.get(Invite, invite_id)
                results.append(service.record_event(invite=other, name="invite_opened"))
                db.session.commit()
        except BaseException as error:  # (reported below)
            errors.append(error)

    # The first request has recorded the step and not yet committed when the second comes.
    assert service.record_event(invite=invite, name="invite_opened") is not None
    thread = threading.Thread(target=second_request)
    thread.start()
    with db.engine.connect() as connection:
        _wait_for_a_lock_wait(connection)  # (the second request, for the milestone row)
    db.session.commit()
    thread.join(timeout=60)

    assert not thread.is_alive() and not errors
    assert results == [None]
    assert _events(invite_id, "invite_opened") == 1


def _events(invite_id: str, name: str) -> int:
    return db.session.execute(
        select(func.count())
        .select_from(UptakeEvent)
        .where(UptakeEvent.invite_id == invite_id, UptakeEvent.name == name)
    ).scalar()
