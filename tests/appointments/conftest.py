"""Fixtures for the appointment tests."""

from __future__ import annotations

from datetime import timedelta

import pytest

from coaching import clock
from coaching.db import utc_iso

API = "/api/v1"


def in_hours(hours: float) -> str:
    return utc_iso(clock.now() + timedelta(hours=hours))


@pytest.fixture
def plan(client):
    """Plan an appointment through the API; returns the response."""

    def _plan(headers, patient_id, **body):
        payload = {"starts_at": in_hours(48), "duration_minutes": 45, "kind": "in_person"}
        payload.update(body)
        return client.post(
            f"{API}/patients/{patient_id}/appointments", json=payload, headers=headers
        )

    return _plan
