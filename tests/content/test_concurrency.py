"""Progress writes of one patient arriving at once: both answered, and completion decided on
what both wrote (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import threading

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from coaching.content import service as content_service
from coaching.content.models import LessonAnswer, LessonProgress, ModuleCompletion
from coaching.enrolment.models import Enrollment
from coaching.enrolment.service import enrollment_for
from coaching.extensions import db
from coaching.metrics.models import UptakeEvent
from tests.content.conftest import API

postgres_only = pytest.mark.skipif(
    not os.environ.get("COACHING_TEST_DATABASE_URL", "").startswith("postgresql"),
    reason="row locks are PostgreSQL's (SQLite takes none for a SELECT)",
)


def _meet_where_they_race(monkeypatch, is_postgres: bool, n: int = 2) -> None:
    """Makes n progress writes wait for each other where they would race: on SQLite after each
    has read the programme state (nothing stops them there), on PostgreSQL just before the
    enrolment lock (which lets one through at a time; a meeting after it would never happen)."""
    name = "_lock_enrollment" if is_postgres else "_check_answers"
    barrier, original = threading.Barrier(n), getattr(content_service, name)

    def synchronised(*args, **kwargs):
        barrier.wait(timeout=10)
        return original(*args, **kwargs)

    monkeypatch.setattr(content_service, name, synchronised)


def _put_at_once(app, headers, bodies: list[tuple[str, dict]]) -> list[int]:
    """Sends each (lesson id, body) as a progress PUT from its own thread; returns the statuses."""
    statuses: list[int] = []

    def put(lesson_id, body):
        response = app.test_client().put(
            f"{API}/lessons/{lesson_id}/progress", json=body, headers=headers
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=put, args=pair) for pair in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return statuses


def _count(model, **where) -> int:
    stmt = select(func.count()).select_from(model)
    for key, value in where.items():
        stmt = stmt.where(getattr(model, key) == value)
    return db.session.execute(stmt).scalar_one()


def test_the_same_progress_put_twice_at_once_is_200_both_times(
    app, world, content, monkeypatch, is_postgres
):
    lesson_id = content.lesson["how-pain-works"]
    _meet_where_they_race(monkeypatch, is_postgres)
    statuses = _put_at_once(app, world.h["patient"], [(lesson_id, {"status": "started"})] * 2)
    assert statuses == [200, 200]
    assert _count(LessonProgress, patient_id=world.patient.id, lesson_id=lesson_id) == 1


def test_completing_with_answers_twice_at_once_is_200_both_times(
    app, world, content, monkeypatch, is_postgres
):
    lesson_id = content.lesson["how-pain-works"]
    body = {"status": "completed", "answers": {"what-matters": "Walking again."}}
    _meet_where_they_race(monkeypatch, is_postgres)
    assert _put_at_once(app, world.h["patient"], [(lesson_id, body)] * 2) == [200, 200]
    monkeypatch.undo()
    progress = db.session.execute(
        select(LessonProgress).where(LessonProgress.patient_id == world.patient.id)
    ).scalar_one()
    assert progress.status == "completed"
    assert _count(LessonAnswer, progress_id=progress.id) == 1
    assert _count(UptakeEvent, patient_id=world.patient.id, name="first_lesson_completed") == 1


def test_the_same_answer_twice_at_once_to_a_started_lesson_is_200_both_times(
    app, client, world, content, monkeypatch, is_postgres
):
    lesson_id = content.lesson["how-pain-works"]
    headers = world.h["patient"]
    started = client.put(
        f"{API}/lessons/{lesson_id}/progress", json={"status": "started"}, headers=headers
    )
    assert started.status_code == 200
    body = {"status": "started", "answers": {"what-matters": "Walking again."}}
    _meet_where_they_race(monkeypatch, is_postgres)
    assert _put_at_once(app, headers, [(lesson_id, body)] * 2) == [200, 200]
    monkeypatch.undo()
    answer = client.get(f"{API}/lessons/{lesson_id}/progress", headers=headers).get_json()
    assert answer["answers"] == {"what-matters": "Walking again."}


def test_completing_the_last_two_lessons_at_once_completes_the_programme(
    app, client, make, world, content, monkeypatch, clock, is_postgres
):
    patient = world.patient
    headers = world.h["patient"]
    for slug in ("how-pain-works", "moving-again"):
        response = client.put(
            f"{API}/lessons/{content.lesson[slug]}/progress",
            json={"status": "completed"},
            headers=headers,
        )
        assert response.status_code == 200
    clock.advance(days=8)
    headers = make.headers(patient)
    _meet_where_they_race(monkeypatch, is_postgres)
    statuses = _put_at_once(
        app,
        headers,
        [(content.lesson[slug], {"status": "completed"}) for slug in ("here-and-now", "observer")],
    )
    assert statuses == [200, 200]
    monkeypatch.undo()
    body = client.get(f"{API}/me/programme", headers=headers).get_json()
    assert all(module["completed"] for module in body["modules"])
    assert body["status"] == "completed"
    enrollment = enrollment_for(patient.id)
    assert enrollment.completed_at == clock.now()
    assert _count(ModuleCompletion, patient_id=patient.id) == 2
    assert _count(UptakeEvent, patient_id=patient.id, name="programme_completed") == 1


@postgres_only
def test_a_progress_write_holds_the_patients_enrolment_until_it_commits(
    app, world, content, monkeypatch
):
    inside, release = threading.Event(), threading.Event()
    original = content_service._check_answers

    def paused(version, answers):
        inside.set()
        assert release.wait(timeout=10)
        return original(version, answers)

    monkeypatch.setattr(content_service, "_check_answers", paused)
    lesson_id = content.lesson["how-pain-works"]
    thread = threading.Thread(
        target=lambda: statuses.extend(
            _put_at_once(app, world.h["patient"], [(lesson_id, {"status": "started"})])
        )
    )
    statuses: list[int] = []
    thread.start()
    try:
        assert inside.wait(timeout=10)
        # The write is past the lock and has read the state: another one would wait here.
        with db.engine.connect() as connection, pytest.raises(OperationalError) as raised:
            connection.execute(
                select(Enrollment.id)
                .where(Enrollment.patient_id == world.patient.id)
                .with_for_update(nowait=True)
            )
        assert raised.value.orig.sqlstate == "55P03"  # lock_not_available
    finally:
        release.set()
        thread.join(timeout=30)
    assert statuses == [200]
