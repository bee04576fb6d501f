"""The notification domain's periodic jobs: plan reminders, dispatch due ones, prune devices."""

from __future__ import annotations

from datetime import datetime

from coaching.extensions import db
from coaching.scheduling import Job


def plan_reminders(now: datetime) -> dict:
    """Plan the reminders that are due to be planned as of `now`."""
    from coaching.notifications.rules import plan

    return plan(now)


def dispatch_notifications(now: datetime) -> dict:
    """Send every due notification, batch by batch."""
    from coaching.notifications.dispatch import dispatch_due

    return dispatch_due()


def prune_devices(now: datetime) -> dict:
    """Forget devices unseen for DEVICE_PRUNE_DAYS days and old log-sender records."""
    from coaching.notifications.service import prune_devices as prune
    from coaching.notifications.service import prune_push_log

    counts = {"devices": prune(now), "push_log": prune_push_log(now)}
    db.session.commit()
    return counts


JOBS = [
    Job("notifications.plan", plan_reminders, every_seconds=60),
    Job("notifications.dispatch", dispatch_notifications, every_seconds=15),
    Job("notifications.prune_devices", prune_devices, every_seconds=3600),
]
