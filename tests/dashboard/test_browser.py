"""The dashboard in a real headless browser: sign in, read the numbers off the page, compare
them with the API, and keep a screenshot."""

from __future__ import annotations

import os
import threading
from datetime import timedelta

import pytest
from werkzeug.serving import make_server

from coaching.extensions import db
from coaching.metrics import service
from tests.conftest import PASSWORD, START

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM),
    reason=f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)",
)


@pytest.fixture
def server(app):
    srv = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown()
    thread.join(timeout=5)


@pytest.fixture
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


def _outcomes_and_messages(world, make, clock):
    """Five patients of `therapist` with ODI at baseline and month 3, and a reply after 3 h."""
    from coaching.messaging import service as messaging
    from coaching.outcomes import service as outcomes

    patients = [world.patient, world.other_patient] + [
        make.patient(world.therapist) for _ in range(3)
    ]
    for n, patient in enumerate(patients):
        for timepoint, total, days in (("baseline", 20 + n, 0), ("month3", 10 + 2 * n, 90)):
            answers = {f"odi{i}": min(5, max(0, total - 5 * (i - 1))) for i in range(1, 11)}
            outcomes.submit_response(
                patient=patient,
                key="odi",
                answers=answers,
                timepoint=timepoint,
                submitted_at=START + timedelta(days=days),
            )
    conversation = messaging.ensure_conversation(
        patient_id=world.patient.id, therapist_id=world.therapist.id
    )
    messaging.post_message(account=world.patient, conversation=conversation, kind="text", body="?")
    clock.advance(hours=3)
    messaging.post_message(
        account=world.therapist, conversation=conversation, kind="text", body="!"
    )
    db.session.commit()


def test_dashboard_shows_the_api_numbers(client, world, make, clock, server, browser, tmp_path):
    make.invite(world.therapist, referral_source="insurer", channel="sms")
    make.patient(world.colleague, consented=False, referral_source="insurer")
    service.record_activity(patient_id=world.patient.id, kind="app_opened")
    _outcomes_and_messages(world, make, clock)
    db.session.commit()
    h = make.headers(world.owner)
    api = client.get("/api/v1/metrics/funnel", headers=h).get_json()
    by_source = client.get("/api/v1/metrics/funnel?breakdown=referral_source", headers=h).get_json()

    page = browser.new_page(viewport={"width": 1366, "height": 900})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server + "/dashboard")
    page.fill("#email", world.owner.email)
    page.fill("#password", PASSWORD)
    page.click("#signin-button")
    page.wait_for_selector("body[data-loaded=true]", timeout=15000)

    rows = page.locator("#funnel .funnel-row[data-step]")
    keys = rows.evaluate_all("rows => rows.map(r => r.dataset.step)")
    counts = page.locator("#funnel .count").evaluate_all(
        "cells => cells.map(c => Number(c.textContent))"
    )
    in_progress = page.locator("#funnel .progress").evaluate_all(
        "cells => cells.map(c => Number(c.textContent))"
    )
    assert keys == [s["key"] for s in api["steps"]]
    assert counts == [s["count"] for s in api["steps"]]
    assert in_progress == [s["in_progress"] for s in api["steps"]]
    conversions = page.locator("#funnel .conv").all_text_contents()
    assert conversions[2] == f"{api['steps'][2]['conversion_from_previous'] * 100:.1f} %"

    page.select_option("#breakdown", "referral_source")
    page.wait_for_selector("#breakdown-table tr[data-group=insurer]")
    for group, part in by_source["breakdown"].items():
        cells = page.locator(f"#breakdown-table tr[data-group={group}] td").evaluate_all(
            "cells => cells.map(c => Number(c.dataset.count))"
        )
        assert cells == [s["count"] for s in part["steps"]]

    retention = client.get("/api/v1/metrics/retention", headers=h).get_json()
    size = page.locator("#retention tr[data-cohort=all] td").first.text_content()
    assert int(size) == retention["total"]["size"]

    # Outcomes: the first score (ODI) per practice; practice B is suppressed.
    outcomes = client.get("/api/v1/metrics/outcomes", headers=h).get_json()
    page.wait_for_selector("#outcomes tr[data-practice] td[data-field=mean_change]")
    for practice in outcomes["practices"]:
        row = page.locator(f"#outcomes tr[data-practice='{practice['practice_id']}']")
        if practice["suppressed"]:
            assert row.locator("td[data-field=patients]").text_content() == "< 5"
            continue
        odi = practice["scores"][0]
        assert odi["score"] == "odi_percent" and odi["patients"] == 5
        change = row.locator("td[data-field=mean_change]").get_attribute("data-value")
        assert float(change) == odi["mean_change"]
        shown = row.locator("td[data-field=share_mic_absolute]").text_content()
        assert shown.startswith(f"{odi['share_mic_absolute'] * 100:.1f} %")

    # Coaching: the reply after 3 hours, overall and for practice A.
    coaching = client.get("/api/v1/metrics/coaching", headers=h).get_json()
    assert coaching["all"]["median_hours"] == 3.0
    for key, stats in [("all", coaching["all"])] + [
        (p["practice_id"], p) for p in coaching["practices"]
    ]:
        row = page.locator(f"#coaching tr[data-practice='{key}']")
        assert row.locator("td[data-field=replies]").text_content() == str(stats["replies"])
        assert row.locator("td[data-field=median_hours]").text_content() == (
            f"{stats['median_hours']:.1f}"
        )
    therapist = page.locator(f"#coaching tr[data-therapist='{world.therapist.id}'] th")
    assert therapist.text_content() == world.therapist.display_name

    with page.expect_download() as download:
        page.click("#csv")
    path = tmp_path / "funnel.csv"
    download.value.save_as(path)
    assert path.read_text().startswith("group,label,step,count")

    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    assert errors == []
    print(f"screenshot: {shot}")


def test_dashboard_refuses_patients(world, server, browser):
    page = browser.new_page()
    page.goto(server + "/dashboard")
    page.fill("#email", world.patient.email)
    page.fill("#password", PASSWORD)
    page.click("#signin-button")
    # (wait_for_function would evaluate a string, which the page's CSP rightly forbids)
    page.locator("#signin-error", has_text="owners").wait_for(timeout=15000)
    assert "owners and therapists" in page.text_content("#signin-error")
    assert page.is_hidden("#board")


def _sign_in(page, server, account):
    page.goto(server + "/dashboard")
    page.fill("#email", account.email)
    page.fill("#password", PASSWORD)
    page.click("#signin-button")


def test_an_expired_token_is_refreshed_once_for_the_parallel_requests(
    world, make, clock, server, browser
):
    # The access token expires between the retention request and the three requests that
    # follow it side by side; each refresh token works once (a second use revokes the login).
    _outcomes_and_messages(world, make, clock)
    page = browser.new_page()
    errors, refreshes = [], []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: "/auth/refresh" in r.url and refreshes.append(r.url))

    def expire_after(route):
        response = route.fetch()
        clock.advance(minutes=16)
        route.fulfill(response=response)

    page.route("**/api/v1/metrics/retention*", expire_after)
    _sign_in(page, server, world.therapist)
    page.wait_for_selector("body[data-loaded=true]", timeout=15000)
    assert len(refreshes) == 1
    assert page.locator("#reminders th", has_text="Category").count() == 1
    assert page.locator("#coaching td[data-field=replies]").count() >= 1
    row = page.locator(f"#coaching tr[data-therapist='{world.therapist.id}']")
    assert row.count() == 1  # the therapist's own
    assert page.locator(f"#coaching tr[data-therapist='{world.colleague.id}']").count() == 0
    assert errors == []


def test_a_login_that_ended_asks_to_sign_in_again(world, clock, server, browser):
    page = browser.new_page()
    _sign_in(page, server, world.owner)
    page.wait_for_selector("body[data-loaded=true]", timeout=15000)
    clock.advance(days=31)  # the access and the refresh token have both expired
    page.click("#refresh")
    page.locator("#signin-error", has_text="sign in again").wait_for(timeout=15000)
    assert page.is_visible("#signin") and page.is_hidden("#board")
    assert page.input_value("#email") == world.owner.email
    page.fill("#password", PASSWORD)
    page.click("#signin-button")
    page.locator("#status", has_text="Updated").wait_for(timeout=15000)
    assert page.is_visible("#board")
