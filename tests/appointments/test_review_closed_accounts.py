"""A closed account (erased, its medical record kept) can be given no new appointments: it
cannot sign in to see them, and the reminders would go to nobody."""

from __future__ import annotations

from sqlalchemy import func, select

from coaching.accounts.models import Account
from coaching.appointments.models import Appointment
from coaching.extensions import db
from tests.conftest import assert_error


def test_planning_with_a_closed_account_is_404(world, plan):
    # What erasure leaves when the medical record is kept (privacy._close_account).
    db.session.get(Account, world.patient.id).is_active = False
    db.session.commit()
    assert_error(plan(world.h["therapist"], world.patient.id), 404)
    count = db.session.execute(select(func.count()).select_from(Appointment)).scalar_one()
    assert count == 0
    # The therapist's other patients are not affected.
    assert plan(world.h["therapist"], world.other_patient.id).status_code == 201
