"""Demo patients are staged some way into the programme: their enrolment moves into the past,
and so do their invite and its uptake events, so that the steps they go on to take (dated from
the new start) follow the earlier ones in the chained funnel."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from coaching.enrolment.models import Invite
from coaching.enrolment.service import enrollment_for, move_enrolment_back
from coaching.extensions import db
from coaching.metrics import service as metrics
from coaching.metrics.models import FunnelMilestone, UptakeEvent
from tests.conftest import START


def test_moving_an_enrolment_back_moves_its_invite_and_journey_with_it(make, clock):
    patient = make.patient()  # invited, opened, registered and consented at START
    enrollment = enrollment_for(patient.id)
    invite = db.session.execute(select(Invite).where(Invite.patient_id == patient.id)).scalar_one()
    created, redeemed = invite.created_at, invite.redeemed_at
    back = timedelta(days=40)
    move_enrolment_back(enrollment, (START - back).date(), enrollment.enrolled_at - back)
    db.session.commit()
    db.session.expire_all()
    assert enrollment_for(patient.id).started_on == (START - back).date()
    invite = db.session.get(Invite, invite.id)
    assert (invite.created_at, invite.redeemed_at) == (created - back, redeemed - back)
    events = db.session.execute(
        select(UptakeEvent.name, UptakeEvent.occurred_at).where(UptakeEvent.invite_id == invite.id)
    ).all()
    assert {name for name, _ in events} >= {"invited", "registered", "consented"}
    assert all(at <= START - back for _, at in events)
    # A baseline dated ten days after the new start now follows consent in the chain.
    metrics.record_event(
        invite=invite, name="baseline_completed", occurred_at=START - back + timedelta(days=10)
    )
    db.session.commit()
    row = db.session.get(FunnelMilestone, invite.id)
    assert row.consented_ts is not None
    assert row.baseline_completed_ts == metrics.epoch_seconds(START - back + timedelta(days=10))
    assert row.invited_ts <= row.registered_ts <= row.consented_ts <= row.baseline_completed_ts
