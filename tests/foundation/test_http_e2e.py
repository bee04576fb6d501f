"""The new user's journey over real HTTP, against the app served by a real server in a thread:
the owner signs in and creates a practice and a therapist; the therapist creates an invite; the
invite is looked up without a token; a patient registers with it, accepts consent and reaches
`/me/programme`."""

from __future__ import annotations

import threading

import pytest
import requests
from werkzeug.serving import make_server

from tests.conftest import PASSWORD


@pytest.fixture
def server(app):
    """Serve the app on a free port; yield its base URL."""
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_new_user_journey_over_http(server, app):
    api = f"{server}/api/v1"
    http = requests.Session()
    # The owner account comes from the CLI, as on a fresh installation.
    result = app.test_cli_runner().invoke(
        args=["accounts", "create-owner", "--email", "owner@e2e.test", "--password", PASSWORD]
    )
    assert result.exit_code == 0, result.output
    assert http.get(f"{server}/healthz", timeout=5).json() == {"status": "ok", "database": "ok"}

    r = http.post(
        f"{api}/auth/token", json={"email": "owner@e2e.test", "password": PASSWORD}, timeout=5
    )
    assert r.status_code == 200 and r.json()["role"] == "owner"
    owner = {"Authorization": f"Bearer {r.json()['access_token']}"}

    r = http.post(
        f"{api}/practices", json={"name": "Fysio Centrum", "city": "Utrecht"}, headers=owner
    )
    assert r.status_code == 201, r.text
    practice_id = r.json()["id"]
    r = http.post(
        f"{api}/practices/{practice_id}/therapists",
        json={"email": "fysio@e2e.test", "display_name": "Femke Fysio", "password": PASSWORD},
        headers=owner,
    )
    assert r.status_code == 201, r.text
    r = http.get(f"{api}/practices/{practice_id}/therapists", headers=owner)
    assert [t["email"] for t in r.json()] == ["fysio@e2e.test"]
    assert '"total": 1' in r.headers["X-Pagination"]

    r = http.post(f"{api}/auth/token", json={"email": "fysio@e2e.test", "password": PASSWORD})
    therapist = {"Authorization": f"Bearer {r.json()['access_token']}"}
    r = http.post(
        f"{api}/invites",
        json={"referral_source": "gp", "channel": "in_person", "expires_in_days": 14},
        headers={**therapist, "Idempotency-Key": "e2e-invite"},
    )
    assert r.status_code == 201, r.text
    code = r.json()["code"]
    assert r.json()["status"] == "pending"

    anonymous = requests.Session()  # the patient's phone: no token
    r = anonymous.get(f"{api}/invites/{code}")
    assert r.status_code == 200
    assert r.json()["practice_name"] == "Fysio Centrum"
    assert r.json()["therapist_name"] == "Femke Fysio"
    r = http.get(f"{api}/invites", headers=therapist)
    assert [(i["code"], i["status"]) for i in r.json()] == [(code, "opened")]

    r = anonymous.get(f"{api}/consent", params={"locale": "en"})
    assert r.status_code == 200
    version = r.json()["version"]
    r = anonymous.post(
        f"{api}/patients",
        json={
            "invite_code": code,
            "email": "patient@e2e.test",
            "password": PASSWORD,
            "display_name": "Pim Patiënt",
            "locale": "en",
            "timezone": "Europe/Amsterdam",
        },
    )
    assert r.status_code == 201, r.text
    patient = {"Authorization": f"Bearer {r.json()['access_token']}"}

    r = anonymous.get(f"{api}/me/programme", headers=patient)
    assert r.status_code == 403 and "consent" in r.json()["message"].lower()
    me = anonymous.get(f"{api}/me", headers=patient).json()
    assert me["role"] == "patient" and me["practice_id"] == practice_id

    r = anonymous.post(f"{api}/me/consent", json={"version": version}, headers=patient)
    assert r.status_code == 201, r.text
    r = anonymous.get(f"{api}/me/programme", headers=patient)
    assert r.status_code == 200, r.text
    programme = r.json()
    assert programme["status"] == "active" and programme["started_on"] == "2026-03-02"
    assert isinstance(programme["modules"], list)

    r = http.get(f"{api}/invites", headers=therapist)
    assert [(i["code"], i["status"]) for i in r.json()] == [(code, "redeemed")]
    # A broken body over the wire is a 400 in the error shape, not a crash.
    r = anonymous.post(
        f"{api}/patients", data="{oops", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400 and r.json()["code"] == 400
