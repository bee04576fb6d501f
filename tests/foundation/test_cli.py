"""The foundation's CLI: `accounts create-owner` and `demo seed`."""

from __future__ import annotations

import pytest

from coaching.accounts import service as accounts
from coaching.demo import cli as demo
from tests.foundation.conftest import table_counts


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


def test_create_owner(runner, client):
    result = runner.invoke(
        args=[
            "accounts",
            "create-owner",
            "--email",
            "Boss@Example.test",
            "--password",
            "a-long-password",
        ]
    )
    assert result.exit_code == 0, result.output
    assert "Created owner boss@example.test" in result.output
    owner = accounts.find_by_email("boss@example.test")
    assert owner.role == "owner" and owner.display_name == "Programme owner"
    assert owner.password_hash.startswith("$argon2id$")
    response = client.post(
        "/api/v1/auth/token", json={"email": "boss@example.test", "password": "a-long-password"}
    )
    assert response.status_code == 200 and response.get_json()["role"] == "owner"


def test_create_owner_with_a_name(runner):
    result = runner.invoke(
        args=[
            "accounts",
            "create-owner",
            "--email",
            "boss@example.test",
            "--password",
            "a-long-password",
            "--name",
            "Programmaleider",
        ]
    )
    assert result.exit_code == 0, result.output
    assert accounts.find_by_email("boss@example.test").display_name == "Programmaleider"


def test_create_owner_twice_fails_clearly(runner):
    args = [
        "accounts",
        "create-owner",
        "--email",
        "boss@example.test",
        "--password",
        "a-long-password",
    ]
    assert runner.invoke(args=args).exit_code == 0
    before = table_counts()
    result = runner.invoke(args=args)
    assert result.exit_code != 0
    assert "already exists" in result.output
    assert table_counts() == before


def test_create_owner_refuses_a_short_password_and_missing_options(runner):
    before = table_counts()
    short = runner.invoke(
        args=["accounts", "create-owner", "--email", "boss@example.test", "--password", "short"]
    )
    assert short.exit_code == 2 and "at least 10 characters" in short.output
    missing = runner.invoke(args=["accounts", "create-owner", "--email", "boss@example.test"])
    assert missing.exit_code == 2 and "--password" in missing.output
    assert table_counts() == before


def test_demo_seed_twice_changes_nothing_the_second_time(runner, client):
    first = runner.invoke(args=["demo", "seed"])
    assert first.exit_code == 0, first.output
    after_first = table_counts()
    # The foundation's accounts (other domains' seeds may add more of their own).
    assert after_first["practices"] >= len(demo.PRACTICES)
    for email, *_ in demo.PATIENTS:
        assert accounts.find_by_email(email).role == "patient"
    for _name, _city, therapists in demo.PRACTICES:
        for email, _display in therapists:
            assert accounts.find_by_email(email).role == "therapist"
    assert accounts.find_by_email("owner@demo.test").role == "owner"
    # Progress on stderr (tqdm), then every credential on stdout.
    assert "demo seed" in first.stderr
    assert "Sign in with:" in first.stdout
    for email in ("owner@demo.test", "fenna@linde.demo", "sanne@aanzee.demo", "anna@patient.demo"):
        assert email in first.stdout
    assert demo.PASSWORD in first.stdout

    second = runner.invoke(args=["demo", "seed"])
    assert second.exit_code == 0, second.output
    assert table_counts() == after_first
    assert "owner@demo.test" in second.stdout

    # The printed credentials work.
    response = client.post(
        "/api/v1/auth/token", json={"email": "owner@demo.test", "password": demo.PASSWORD}
    )
    assert response.status_code == 200


def test_demo_patients_are_at_their_stages(runner, monkeypatch):
    monkeypatch.setattr(demo, "DOMAIN_SEEDS", ())  # the foundation's part only
    result = runner.invoke(args=["demo", "seed"])
    assert result.exit_code == 0, result.output
    from coaching.enrolment.service import has_current_consent

    for email, _name, _locale, stage in demo.PATIENTS:
        patient = accounts.find_by_email(email)
        assert patient.role == "patient" and patient.therapist_id is not None
        assert has_current_consent(patient_id=patient.id) == (stage == "consented")
