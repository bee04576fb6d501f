"""Fixtures for the content tests: the small valid programme under fixtures/valid, loaded."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from coaching.content import service
from coaching.content.models import ContentLesson
from coaching.extensions import db

API = "/api/v1"
FIXTURES = Path(__file__).parent / "fixtures"
VALID = FIXTURES / "valid"
BROKEN = FIXTURES / "broken"


def load(path: Path = VALID):
    """Validate and load a content folder, commit, and return the sync result."""
    report, result = service.load_from_disk(path)
    assert report.ok, [str(p) for p in report.errors]
    db.session.commit()
    return result


def lesson_ids() -> dict[str, str]:
    return {
        lesson.slug: lesson.id for lesson in db.session.execute(select(ContentLesson)).scalars()
    }


@pytest.fixture
def content():
    """The valid fixture programme, loaded: `content.lesson[slug]` is a lesson's id."""
    result = load()
    return SimpleNamespace(result=result, lesson=lesson_ids())


@pytest.fixture
def content_copy(tmp_path) -> Path:
    """A writable copy of the valid fixture programme (to change and sync again)."""
    target = tmp_path / "modules"
    shutil.copytree(VALID, target)
    return target


def put_progress(client, headers, lesson_id, status="started", answers=None):
    body = {"status": status}
    if answers is not None:
        body["answers"] = answers
    return client.put(f"{API}/lessons/{lesson_id}/progress", json=body, headers=headers)


def complete_module(client, headers, lesson_ids_in_module):
    for lesson_id in lesson_ids_in_module:
        response = put_progress(client, headers, lesson_id, "completed")
        assert response.status_code == 200, response.get_json()
