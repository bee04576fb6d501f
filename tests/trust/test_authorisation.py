"""The authorisation matrix: every operation of the OpenAPI document, called as anonymous, with a
forged token, as each role, as a patient who has not consented, as another patient and as a
therapist of another practice, answers as the contract says:

- no or a forged token → 401 (public operations never 401);
- a role the operation is not for → 403;
- a patient without the current consent → 403 with "consent" (except the exempt operations);
- another patient's or another practice's object → 404, never 403 (the object's existence is
  not revealed);
- the right caller with their own objects: never 401, never a role 403, never a 5xx.

`EXPECTED` is the table of who may call what. Every operation in the document must be in it (a new
endpoint fails `test_every_operation_has_an_expectation` until its row is added), and every row
must still be in the document.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import cycle

import pytest

from tests.conftest import PASSWORD
from tests.trust.conftest import forged_tokens, operations

P, T, OW = "patient", "therapist", "owner"
PT = (P, T)
STAFF = (OW, T)


@dataclass(frozen=True)
class Rule:
    # None: public, no token needed; (): any signed-in account; otherwise the roles allowed.
    roles: tuple[str, ...] | None
    # Patients must have accepted the current consent (the contract's exemptions set False).
    consent: bool = True
    # The path names an object of the patient (or of their therapist): others get 404.
    owned: bool = False
    # A valid body, so that a 404 is not hidden behind a 422 from the body's validation.
    body: dict | None = field(default=None, hash=False)


PUBLIC = Rule(None)
SIGNED_IN = Rule(())


def r(*roles, consent=True, owned=False, body=None) -> Rule:
    return Rule(tuple(roles), consent=consent, owned=owned, body=body)


EXPECTED: dict[str, Rule] = {
    # accounts and sessions
    "POST /api/v1/auth/token": PUBLIC,
    "POST /api/v1/auth/refresh": PUBLIC,
    "POST /api/v1/auth/logout": Rule((), consent=False),
    "GET /api/v1/me": Rule((), consent=False),
    "PATCH /api/v1/me": Rule((), consent=False),
    "DELETE /api/v1/me": r(P, consent=False, body={"password": PASSWORD}),
    # practices (owner)
    "GET /api/v1/practices": r(OW),
    "POST /api/v1/practices": r(OW),
    "GET /api/v1/practices/{practice_id}/therapists": r(OW),
    "POST /api/v1/practices/{practice_id}/therapists": r(OW),
    # invites, registration, consent
    "GET /api/v1/invites": r(T),
    "POST /api/v1/invites": r(T),
    "GET /api/v1/invites/{code}": PUBLIC,
    "DELETE /api/v1/invites/{code}": r(T, owned=True),
    "POST /api/v1/patients": PUBLIC,
    "GET /api/v1/consent": PUBLIC,
    "POST /api/v1/me/consent": r(P, consent=False),
    # programme and lessons
    "GET /api/v1/me/programme": r(P),
    "GET /api/v1/lessons/{lesson_id}": r(P),
    "GET /api/v1/lessons/{lesson_id}/progress": r(P),
    "PUT /api/v1/lessons/{lesson_id}/progress": r(P),
    "GET /api/v1/me/today": r(P),
    "POST /api/v1/me/events": r(P),
    # appointments
    "GET /api/v1/patients/{patient_id}/appointments": r(*PT, owned=True),
    "POST /api/v1/patients/{patient_id}/appointments": r(
        T, owned=True, body={"kind": "video_call", "starts_at": "2026-03-09T10:00:00Z"}
    ),
    "GET /api/v1/me/appointments": r(P),
    "GET /api/v1/appointments/{appointment_id}": r(*PT, owned=True),
    "DELETE /api/v1/appointments/{appointment_id}": r(*PT, owned=True),
    "POST /api/v1/appointments/{appointment_id}/cancel": r(*PT, owned=True, body={}),
    # therapist work list
    "GET /api/v1/patients": r(T),
    "GET /api/v1/patients/{patient_id}": r(T, owned=True),
    # questionnaires and outcomes
    "GET /api/v1/questionnaires": SIGNED_IN,
    "GET /api/v1/questionnaires/{key}": SIGNED_IN,
    "GET /api/v1/fhir/Questionnaire/{key}": SIGNED_IN,
    "GET /api/v1/me/questionnaires/due": r(P),
    "GET /api/v1/me/questionnaires/schedule": r(P),
    "POST /api/v1/me/questionnaires/{key}/responses": r(P),
    "GET /api/v1/me/outcomes": r(P),
    "GET /api/v1/patients/{patient_id}/outcomes": r(T, owned=True),
    "GET /api/v1/patients/{patient_id}/fhir": r(T, owned=True),
    "GET /api/v1/me/decision-aid": r(P),
    "GET /api/v1/patients/{patient_id}/decision-aid": r(*PT, owned=True),
    "GET /api/v1/me/checkins": r(P),
    "POST /api/v1/me/checkins": r(P),
    "GET /api/v1/patients/{patient_id}/checkins": r(T, owned=True),
    "GET /api/v1/alerts": r(T),
    "GET /api/v1/patients/{patient_id}/alerts": r(T, owned=True),
    "POST /api/v1/alerts/{alert_id}/acknowledge": r(T, owned=True, body={}),
    # video coaching
    "GET /api/v1/conversations": r(*PT),
    "GET /api/v1/conversations/{conversation_id}": r(*PT, owned=True),
    "GET /api/v1/conversations/{conversation_id}/messages": r(*PT, owned=True),
    "POST /api/v1/conversations/{conversation_id}/messages": r(
        *PT, owned=True, body={"kind": "text", "body": "Hoi"}
    ),
    "GET /api/v1/messages/{message_id}": r(*PT, owned=True),
    "POST /api/v1/messages/{message_id}/upload": r(*PT, owned=True),
    "POST /api/v1/messages/{message_id}/complete": r(*PT, owned=True),
    "GET /api/v1/messages/{message_id}/media": r(*PT, owned=True),
    "POST /api/v1/messages/{message_id}/read": r(*PT, owned=True),
    "POST /api/v1/messages/{message_id}/watched": r(*PT, owned=True),
    "GET /api/v1/conversations/{conversation_id}/cycles": r(*PT, owned=True),
    "POST /api/v1/conversations/{conversation_id}/cycles": r(
        *PT, owned=True, body={"activity": "Fietsen"}
    ),
    "GET /api/v1/cycles/{cycle_id}": r(*PT, owned=True),
    "PATCH /api/v1/cycles/{cycle_id}": r(*PT, owned=True, body={"activity": "Wandelen"}),
    "GET /api/v1/me/consent/video": r(P, consent=False),
    "DELETE /api/v1/me/consent/video": r(P, consent=False),
    # devices, reminders, notifications (the contract exempts /me/devices from consent)
    "POST /api/v1/me/devices": r(*PT, consent=False),
    "DELETE /api/v1/me/devices/{device_id}": r(*PT, consent=False, owned=True),
    "GET /api/v1/me/reminder-settings": r(*PT),
    "PUT /api/v1/me/reminder-settings": r(*PT),
    "GET /api/v1/me/notifications": r(*PT),
    "POST /api/v1/me/notifications/{notification_id}/opened": r(*PT, owned=True),
    # programme metrics (owners; therapists their own patients)
    "GET /api/v1/metrics/funnel": r(*STAFF),
    "GET /api/v1/metrics/funnel.csv": r(*STAFF),
    "GET /api/v1/metrics/dropoffs": r(*STAFF),
    "GET /api/v1/metrics/retention": r(*STAFF),
    "GET /api/v1/metrics/outcomes": r(*STAFF),
    "GET /api/v1/metrics/coaching": r(*STAFF),
    "GET /api/v1/metrics/reminders": r(*STAFF),
    # access log and privacy rights
    # API.md: every patient endpoint but /me, /consent, /me/consent, /me/devices and /auth/*
    # needs the current consent, the access log and the export included.
    "GET /api/v1/me/access-log": r(P),
    "GET /api/v1/audit": r(OW),
    "POST /api/v1/me/export": r(P),
    "GET /api/v1/me/exports/{export_id}": r(P, owned=True),
    "POST /api/v1/patients/{patient_id}/erasure": r(
        T, OW, owned=True, body={"reason": "Verzoek van de patiënt"}
    ),
}

FORGED_KINDS = cycle(
    [
        "alg_none",
        "alg_none_signed",
        "rs256_own_key",
        "hs_rs_confusion",
        "hs512",
        "wrong_secret",
        "wrong_audience",
        "wrong_issuer",
        "wrong_type",
        "expired",
        "not_yet_valid",
        "unknown_key_id",
        "other_session",
        "tampered_role",
    ]
)
ROLE_MESSAGE = "needs the role"


def test_every_operation_has_an_expectation(spec):
    documented = set(operations(spec))
    missing = sorted(documented - set(EXPECTED))
    stale = sorted(set(EXPECTED) - documented)
    assert not missing, f"add these operations to EXPECTED: {missing}"
    assert not stale, f"these rows of EXPECTED are no longer in the document: {stale}"


def _call(client, name: str, path: str, headers: dict, body: dict | None):
    method, _, template = name.partition(" ")
    kwargs = {"headers": headers}
    if body is not None:
        kwargs["json"] = body
    return client.open(path, method=method, **kwargs)


def _path(name: str, params: dict) -> str:
    template = name.partition(" ")[2]
    path = template
    for part in template.split("{")[1:]:
        param = part.split("}")[0]
        assert param in params, f"no value for the path parameter {param!r}: add it to `objects`"
        path = path.replace("{" + param + "}", str(params[param]))
    return path


def _documented(op: dict, status: int) -> bool:
    return str(status) in op["responses"]


def _show(response) -> str:
    return f"{response.status_code} {response.get_data(as_text=True)[:200]}"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_authorisation(name, app, client, spec, world, make, objects, clock):
    rule = EXPECTED[name]
    ops = operations(spec)
    assert name in ops, f"{name} is not in the OpenAPI document"
    op = ops[name]
    path = _path(name, objects.params)
    body = rule.body
    is_public = rule.roles is None
    assert is_public == (not op.get("security")), "the document's security disagrees"

    def call(headers):
        response = _call(client, name, path, headers, body)
        assert response.status_code < 500, f"{name} as {headers}: {_show(response)}"
        return response

    # Anonymous, and a forged token.
    anonymous = call({})
    if is_public:
        assert anonymous.status_code != 401, _show(anonymous)
        return
    assert anonymous.status_code == 401, _show(anonymous)
    assert _documented(op, 401), f"{name} does not document 401"
    kind = next(FORGED_KINDS)
    token = forged_tokens(app, world.patient, clock)[kind]
    forged = call({"Authorization": f"Bearer {token}"})
    assert forged.status_code == 401, (kind, _show(forged))

    allowed = rule.roles or ("patient", "therapist", "owner")
    # Wrong roles: 403 before anything else is looked at.
    for role in ("patient", "therapist", "owner"):
        if role not in allowed:
            response = call(world.h[role])
            assert response.status_code == 403, (role, _show(response))
            assert _documented(op, 403), f"{name} does not document 403"
    # A patient who has not accepted the consent.
    if "patient" in allowed:
        unconsented = make.patient(world.therapist, consented=False)
        response = call(make.headers(unconsented))
        if rule.consent:
            assert response.status_code == 403, _show(response)
            assert "consent" in response.get_json()["message"].lower()
        else:
            assert response.status_code not in (401, 403) or (
                ROLE_MESSAGE not in response.get_json()["message"]
                and "consent" not in response.get_json()["message"].lower()
            ), _show(response)
    # Another patient (same therapist) and a therapist of another practice.
    if rule.owned:
        for stranger in ("other_patient", "other_therapist"):
            role = "patient" if stranger == "other_patient" else "therapist"
            response = call(world.h[stranger])
            expected = 404 if role in allowed else 403
            assert response.status_code == expected, (stranger, _show(response))
            if expected == 404:
                assert _documented(op, 404), f"{name} does not document 404"
    # The right callers with their own objects (destructive calls last: the order of roles).
    first = True
    for role in allowed:
        response = call(world.h[role])
        assert response.status_code != 401, (role, _show(response))
        if response.status_code == 403:
            assert ROLE_MESSAGE not in response.get_json()["message"], (role, _show(response))
        if rule.owned and first:
            assert response.status_code != 404, (role, _show(response))
        first = False
