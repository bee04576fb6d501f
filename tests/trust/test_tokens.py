"""Tokens under attack: a dozen forged access tokens on endpoints of every role (the single-claim
cases are in tests/foundation/test_auth.py), and one refresh token presented 50 times at once."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import select

from coaching.accounts.models import LoginSession
from coaching.extensions import db
from tests.conftest import PASSWORD
from tests.trust.conftest import forged_tokens

# One endpoint per role (and one for any signed-in account).
TARGETS = {
    "patient": "/api/v1/me/today",
    "therapist": "/api/v1/patients",
    "owner": "/api/v1/audit",
    "any": "/api/v1/me",
}


@pytest.mark.parametrize("role", ["patient", "therapist", "owner"])
def test_a_dozen_forged_tokens_are_all_401(client, world, app, clock, role):
    account = getattr(world, role)
    genuine = world.h[role]
    forged = forged_tokens(app, account, clock)
    assert len(forged) >= 12
    for path in (TARGETS[role], TARGETS["any"]):
        assert client.get(path, headers=genuine).status_code == 200
        for kind, token in forged.items():
            response = client.get(path, headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 401, (kind, path, response.get_json())
            assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_fifty_parallel_refreshes_of_one_token_give_exactly_one_new_pair(
    live_server, world, app, monkeypatch
):
    # All fifty come from one address: the per-address refresh limit (30 a minute) is lifted.
    monkeypatch.setitem(app.config, "RATELIMIT_REFRESH", "1000 per minute")
    login = requests.post(
        f"{live_server}/api/v1/auth/token",
        json={"email": world.patient.email, "password": PASSWORD},
        timeout=30,
    ).json()
    refresh = login["refresh_token"]
    n = 50
    barrier = threading.Barrier(n)

    def present(_):
        barrier.wait()
        return requests.post(
            f"{live_server}/api/v1/auth/refresh", json={"refresh_token": refresh}, timeout=60
        )

    with ThreadPoolExecutor(max_workers=n) as pool:
        answers = list(pool.map(present, range(n)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(200) == 1, statuses
    assert statuses.count(401) == n - 1, statuses
    # The other 49 are a reuse: the whole login is revoked, the new pair included.
    (winner,) = [a.json() for a in answers if a.status_code == 200]
    again = requests.post(
        f"{live_server}/api/v1/auth/refresh",
        json={"refresh_token": winner["refresh_token"]},
        timeout=30,
    )
    assert again.status_code == 401
    me = requests.get(
        f"{live_server}/api/v1/me",
        headers={"Authorization": f"Bearer {winner['access_token']}"},
        timeout=30,
    )
    assert me.status_code == 401
    db.session.expire_all()
    reasons = db.session.execute(
        select(LoginSession.revoked_reason).where(LoginSession.account_id == world.patient.id)
    ).scalars()
    assert "refresh_token_reuse" in set(reasons)
