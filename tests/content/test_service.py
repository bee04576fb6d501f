"""The unlock rule with an injected clock, versions a patient keeps, completion and uptake events."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import func, select

from coaching.content import service
from coaching.content.models import LessonProgress, ModuleCompletion
from coaching.enrolment.service import enrollment_for
from coaching.extensions import db
from coaching.metrics.models import PatientActivity, UptakeEvent
from tests.content.conftest import API, load, put_progress

START_DAY = date(2026, 3, 2)


def _states(patient):
    return {s.module.slug: s for s in service.programme_state(patient)}


def _complete(patient, *slugs, lesson):
    for slug in slugs:
        service.save_progress(patient=patient, lesson_id=lesson[slug], status="completed")
    db.session.commit()


def test_module_one_is_open_and_module_two_waits_seven_days(world, content, clock):
    states = _states(world.patient)
    assert states["first-steps"].unlocked and states["first-steps"].unlocks_on == START_DAY
    assert not states["noticing"].unlocked
    assert states["noticing"].unlocks_on == date(2026, 3, 9)
    _complete(world.patient, "how-pain-works", "moving-again", lesson=content.lesson)
    assert _states(world.patient)["first-steps"].completed
    # Completed on day 0: still locked until day 7 in the patient's own time zone.
    clock.set(datetime(2026, 3, 8, 22, 59, tzinfo=UTC))  # 23:59 in Amsterdam on 8 March
    assert not _states(world.patient)["noticing"].unlocked
    clock.set(datetime(2026, 3, 8, 23, 0, tzinfo=UTC))  # midnight in Amsterdam: 9 March
    assert _states(world.patient)["noticing"].unlocked


def test_days_alone_do_not_unlock_without_the_previous_module(world, content, clock):
    clock.advance(days=30)
    states = _states(world.patient)
    assert not states["noticing"].unlocked
    assert states["noticing"].unlocks_on == date(2026, 3, 9)
    assert not states["noticing"].is_date_known


def test_completing_late_unlocks_the_next_module_that_day(world, content, clock):
    clock.advance(days=10)
    _complete(world.patient, "how-pain-works", "moving-again", lesson=content.lesson)
    noticing = _states(world.patient)["noticing"]
    assert noticing.unlocked and noticing.unlocks_on == date(2026, 3, 12)


def test_unlock_days_come_from_the_programme_file(world, content_copy, clock):
    path = content_copy / "programme.toml"
    path.write_text(
        path.read_text().replace("unlock_days_per_module = 7", "unlock_days_per_module = 3")
    )
    load(content_copy)
    assert _states(world.patient)["noticing"].unlocks_on == date(2026, 3, 5)


def test_unlock_follows_the_patient_time_zone(make, content, clock):
    # 23:30 UTC on 1 March is already 2 March in Auckland: that is the enrolment date.
    clock.set(datetime(2026, 3, 1, 23, 30, tzinfo=UTC))
    therapist = make.therapist()
    patient = make.patient(therapist, timezone="Pacific/Auckland")
    assert enrollment_for(patient.id).started_on == date(2026, 3, 2)
    lesson = {
        s.lesson.slug: s.lesson.id for m in service.programme_state(patient) for s in m.lessons
    }
    _complete(patient, "how-pain-works", "moving-again", lesson=lesson)
    clock.set(datetime(2026, 3, 8, 10, 59, tzinfo=UTC))  # 23:59 on 8 March in Auckland
    assert not _states(patient)["noticing"].unlocked
    clock.set(datetime(2026, 3, 8, 11, 0, tzinfo=UTC))  # midnight: 9 March in Auckland
    assert _states(patient)["noticing"].unlocked


def test_module_unlock_dates_lists_only_settled_dates(world, content, clock):
    assert service.module_unlock_dates(world.patient) == [("first-steps", START_DAY)]
    clock.advance(days=2)
    _complete(world.patient, "how-pain-works", "moving-again", lesson=content.lesson)
    assert service.module_unlock_dates(world.patient) == [
        ("first-steps", START_DAY),
        ("noticing", date(2026, 3, 9)),
    ]


def test_a_started_lesson_keeps_the_version_the_patient_saw(world, content_copy, make, client):
    load(content_copy)
    lesson = {
        s.lesson.slug: s.lesson.id
        for m in service.programme_state(world.patient)
        for s in m.lessons
    }
    service.save_progress(
        patient=world.patient, lesson_id=lesson["how-pain-works"], status="started"
    )
    db.session.commit()
    path = content_copy / "first-steps" / "how-pain-works.nl.md"
    path.write_text(
        path.read_text()
        .replace("# Hoe pijn werkt", "# Hoe pijn echt werkt")
        .replace("id=what-matters", "id=what-counts")
    )
    en = content_copy / "first-steps" / "how-pain-works.en.md"
    en.write_text(en.read_text().replace("id=what-matters", "id=what-counts"))
    assert load(content_copy).counts["versions_added"] == 1

    mine = service.lesson_access(world.patient, lesson["how-pain-works"])
    assert mine.version.number == 1
    assert service.lesson_view(mine, "nl")["title"] == "Hoe pijn werkt"
    theirs = service.lesson_access(world.other_patient, lesson["how-pain-works"])
    assert theirs.version.number == 2
    assert service.lesson_view(theirs, "nl")["title"] == "Hoe pijn echt werkt"
    # Answers go to the blocks of the version each patient has.
    response = put_progress(
        client, world.h["patient"], lesson["how-pain-works"], answers={"what-matters": "Fietsen"}
    )
    assert response.status_code == 200, response.get_json()
    response = put_progress(
        client, world.h["patient"], lesson["how-pain-works"], answers={"what-counts": "Fietsen"}
    )
    assert response.status_code == 422
    assert "answers.what-counts" in response.get_json()["errors"]
    # The overview shows each patient the title of their own version.
    titles = {
        lesson["id"]: lesson["title"]
        for module in service.programme_view(world.patient)["modules"]
        for lesson in module["lessons"]
    }
    assert titles[mine.lesson.id] == "Hoe pijn werkt"


def test_fallback_to_the_other_locale(world, content):
    access = service.lesson_access(world.patient, content.lesson["moving-again"])
    assert service.lesson_view(access, "fr")["locale"] == "nl"
    access.version.body = {"en": access.version.body["en"]}  # (in memory only)
    view = service.lesson_view(access, "nl")
    assert view["locale"] == "en" and view["title"] == "Moving again"
    db.session.rollback()


def test_completing_everything_completes_the_enrolment_and_records_uptake(world, content, clock):
    patient = world.patient
    _complete(patient, "how-pain-works", lesson=content.lesson)
    events = {
        e.name: e
        for e in db.session.execute(
            select(UptakeEvent).where(UptakeEvent.patient_id == patient.id)
        ).scalars()
    }
    assert events["first_lesson_completed"].occurred_at == clock.now()
    assert "programme_completed" not in events
    _complete(patient, "moving-again", lesson=content.lesson)
    clock.advance(days=7)
    _complete(patient, "here-and-now", "observer", lesson=content.lesson)
    enrollment = enrollment_for(patient.id)
    assert enrollment.status == "completed" and enrollment.completed_at == clock.now()
    names = list(
        db.session.execute(
            select(UptakeEvent.name).where(UptakeEvent.patient_id == patient.id)
        ).scalars()
    )
    assert names.count("first_lesson_completed") == 1
    assert names.count("programme_completed") == 1
    assert (
        db.session.execute(
            select(func.count())
            .select_from(ModuleCompletion)
            .where(ModuleCompletion.patient_id == patient.id)
        ).scalar_one()
        == 2
    )


def test_progress_records_activity_only_when_something_changes(world, content, clock):
    patient = world.patient
    lesson_id = content.lesson["how-pain-works"]

    def activity():
        return list(
            db.session.execute(
                select(PatientActivity.kind)
                .where(PatientActivity.patient_id == patient.id)
                .order_by(PatientActivity.occurred_at)
            ).scalars()
        )

    service.save_progress(patient=patient, lesson_id=lesson_id, status="started")
    service.save_progress(patient=patient, lesson_id=lesson_id, status="started")
    clock.advance(minutes=5)
    service.save_progress(
        patient=patient, lesson_id=lesson_id, status="started", answers={"what-matters": "x"}
    )
    service.save_progress(
        patient=patient, lesson_id=lesson_id, status="started", answers={"what-matters": "x"}
    )
    clock.advance(minutes=5)
    service.save_progress(patient=patient, lesson_id=lesson_id, status="completed")
    service.save_progress(patient=patient, lesson_id=lesson_id, status="completed")
    db.session.commit()
    assert activity() == ["lesson_started", "lesson_answered", "lesson_completed"]
    assert enrollment_for(patient.id).last_active_at == clock.now()


def test_a_module_completed_stays_completed_when_a_lesson_is_added(world, content_copy, clock):
    load(content_copy)
    lesson = {
        s.lesson.slug: s.lesson.id
        for m in service.programme_state(world.patient)
        for s in m.lessons
    }
    _complete(world.patient, "how-pain-works", "moving-again", lesson=lesson)
    module = content_copy / "first-steps" / "module.toml"
    module.write_text(
        module.read_text().replace(
            'lessons = ["how-pain-works", "moving-again"]',
            'lessons = ["how-pain-works", "moving-again", "bonus"]',
        )
    )
    for locale in ("nl", "en"):
        (content_copy / "first-steps" / f"bonus.{locale}.md").write_text(
            "# Bonus\n\n<!-- block: text id=intro -->\nExtra.\n"
        )
    load(content_copy)
    clock.advance(days=7)
    states = _states(world.patient)
    assert states["first-steps"].completed
    assert states["first-steps"].lessons_completed == 2
    assert states["noticing"].unlocked


def test_today_moves_on(world, content):
    today = service.today_view(world.patient)
    assert today["next_lesson"]["id"] == content.lesson["how-pain-works"]
    assert today["next_unlock"]["module_slug"] == "noticing"
    _complete(world.patient, "how-pain-works", lesson=content.lesson)
    assert service.today_view(world.patient)["next_lesson"]["id"] == content.lesson["moving-again"]
    _complete(world.patient, "moving-again", lesson=content.lesson)
    assert service.today_view(world.patient)["next_lesson"] is None


def test_progress_rows_point_at_the_version(world, content):
    service.save_progress(
        patient=world.patient, lesson_id=content.lesson["how-pain-works"], status="started"
    )
    row = db.session.execute(select(LessonProgress)).scalar_one()
    assert row.version_id is not None and row.status == "started"


# --- the programme's title and slug ------------------------------------------------------------


@pytest.fixture
def configured_copy(app, content_copy, monkeypatch):
    """The writable copy of the fixture programme as the configured MODULES_DIR."""
    monkeypatch.setitem(app.config, "MODULES_DIR", str(content_copy))
    return content_copy


def _rename_programme(folder, title: str, slug: str) -> None:
    path = folder / "programme.toml"
    text = path.read_text().replace('en = "Test programme"', f'en = "{title}"')
    path.write_text(text.replace('slug = "test-programme"', f'slug = "{slug}"'))


def test_invites_and_registrations_show_the_synced_title_and_slug(client, make, configured_copy):
    load(configured_copy)
    first = make.invite()
    body = client.get(f"{API}/invites/{first.code}?locale=en").get_json()
    assert body["programme_title"] == "Test programme"
    _rename_programme(configured_copy, "Back on track", "back-on-track")
    # Edited but not synced: patients still see what was loaded.
    assert service.programme_title("en") == "Test programme"
    assert service.programme_slug() == "test-programme"
    assert load(configured_copy).release.title["en"] == "Back on track"
    second = make.invite()
    body = client.get(f"{API}/invites/{second.code}?locale=en").get_json()
    assert body["programme_title"] == "Back on track"
    assert service.programme_title("nl") == "Testprogramma"
    patient = make.patient()
    assert enrollment_for(patient.id).programme_slug == "back-on-track"


def test_before_the_first_sync_title_and_slug_come_from_the_file(configured_copy):
    assert service.programme_title("en") == "Test programme"
    assert service.programme_slug() == "test-programme"
    path = configured_copy / "programme.toml"
    modified = path.stat().st_mtime_ns
    _rename_programme(configured_copy, "Back on track", "back-on-track")
    # The file is read again once changed (its time set apart: a file system may keep coarse
    # times, and both writes can fall in one tick).
    os.utime(path, ns=(modified + 10**9, modified + 10**9))
    assert service.programme_title("en") == "Back on track"
    assert service.programme_slug() == "back-on-track"
