"""The validator (every rule names its file and line) and `modules validate` / `modules sync`."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from coaching.content import service
from coaching.content.loader import MAX_SLUG_LENGTH, read_programme
from coaching.content.models import ContentLesson, ContentModule, ContentRelease, LessonVersion
from coaching.enrolment.models import Enrollment
from coaching.extensions import db
from tests.content.conftest import BROKEN, VALID, load

# (file, line, part of the message): one per rule, all found in fixtures/broken.
BROKEN_EXPECTED = [
    ("broken/programme.toml", 7, "module 'missing-module' has no folder"),
    ("broken/programme.toml", 8, "module 'alpha' is listed twice"),
    ("broken/media.toml", 6, "type 'gif'"),
    ("broken/media.toml", 10, "needs duration_s"),
    ("broken/alpha/bad-blocks.nl.md", 3, "unknown block type 'quiz'"),
    ("broken/alpha/bad-blocks.nl.md", 6, "a text block needs id=<id>"),
    ("broken/alpha/bad-blocks.nl.md", 12, "block id 'same' is used twice"),
    ("broken/alpha/bad-blocks.nl.md", 15, "an exercise needs duration=<seconds>"),
    ("broken/alpha/bad-blocks.nl.md", 20, "duration=10 must be whole seconds from 30 to 3600"),
    ("broken/alpha/bad-blocks.nl.md", 26, "an exercise starts with a '## title' line"),
    ("broken/alpha/bad-blocks.nl.md", 29, "at least 2 numbered steps"),
    ("broken/alpha/bad-blocks.nl.md", 33, "media 'does-not-exist' is not in media.toml"),
    ("broken/alpha/bad-blocks.nl.md", 36, "media 'body-scan' is audio, not video"),
    ("broken/alpha/bad-blocks.nl.md", 39, "an image block needs media=<key>"),
    ("broken/alpha/bad-blocks.nl.md", 42, "text block 'empty' is empty"),
    ("broken/alpha/bad-blocks.nl.md", 44, "reflection 'no-question' has no question"),
    ("broken/alpha/bad-blocks.nl.md", 46, "malformed block marker"),
    ("broken/alpha/bad-blocks.nl.md", 49, "has no attribute 'colour'"),
    ("broken/alpha/bad-blocks.nl.md", 52, "block id 'Capital' must be lowercase"),
    ("broken/alpha/bad-blocks.en.md", 3, "unknown block type 'quiz'"),
    ("broken/alpha/mismatch.en.md", 6, "block 'other' where mismatch.nl.md has 'question'"),
    ("broken/alpha/no-title.nl.md", 1, "level-1 heading"),
    ("broken/alpha/no-blocks.nl.md", 1, "a lesson needs at least one block"),
    ("broken/alpha/no-blocks.en.md", 3, "text before the first block marker"),
    ("broken/alpha/no-blocks.en.md", 5, "block 'intro' is not in no-blocks.nl.md"),
    ("broken/beta/module.toml", 1, "'slug' must be 'beta' (the folder's name), not 'gamma'"),
    ("broken/beta/module.toml", 3, "lesson 'only-one' has no en file only-one.en.md"),
    ("broken/beta/module.toml", 3, "lesson slug 'mismatch' is already used in module 'alpha'"),
    ("broken/beta/module.toml", 9, "'summary' has no en text"),
    ("broken/beta/only-one.de.md", 1, "unknown locale 'de'"),
    ("broken/beta/stray.nl.md", 1, "lesson 'stray' is not listed in module.toml"),
    ("broken/delta/module.toml", 3, "a module has 2 to 4 lessons, not 5"),
    ("broken/delta/module.toml", 3, "lesson 'd1' has no nl file d1.nl.md"),
    ("broken/epsilon/module.toml", 2, "is not valid TOML"),
]


def test_valid_fixture_parses_into_modules_lessons_and_blocks():
    report = read_programme(VALID)
    assert report.ok and report.problems == []
    programme = report.programme
    assert [m.slug for m in programme.modules] == ["first-steps", "noticing"]
    assert programme.unlock_days_per_module == 7
    lesson = programme.modules[0].lessons[0]
    assert lesson.slug == "how-pain-works"
    nl = lesson.locales["nl"]
    assert nl["title"] == "Hoe pijn werkt"
    assert [b["type"] for b in nl["blocks"]] == ["text", "video", "image", "exercise", "reflection"]
    exercise = nl["blocks"][3]
    assert exercise["title"] == "Drie minuten ademruimte"
    assert exercise["duration_s"] == 180
    assert exercise["intro"] == "Zoek een rustige plek."
    assert exercise["steps"] == [
        "Merk op wat er nu is.",
        "Breng je aandacht naar je adem. Adem rustig in en uit.",
        "Verbreed je aandacht naar je hele lichaam.",
    ]
    assert exercise["outro"] == "Hoe was dat?"
    video = nl["blocks"][1]
    assert video["media"] == {
        "key": "pain-explainer",
        "type": "video",
        "duration_s": 240,
        "title": "Hoe pijn werkt",
    }
    assert lesson.locales["en"]["blocks"][1]["media"]["title"] == "How pain works"


@pytest.mark.parametrize(("path", "line", "fragment"), BROKEN_EXPECTED)
def test_broken_fixture_reports_each_rule_with_file_and_line(path, line, fragment):
    report = read_programme(BROKEN)
    found = [(p.path, p.line, p.message) for p in report.errors]
    assert any(p == path and n == line and fragment in m for p, n, m in found), "\n".join(
        f"{p}:{n}: {m}" for p, n, m in found
    )


def test_broken_fixture_gives_no_programme_and_prints_as_file_colon_line():
    report = read_programme(BROKEN)
    assert not report.ok and report.programme is None
    assert "broken/alpha/bad-blocks.nl.md:3: unknown block type 'quiz'" in {
        str(p)[: len("broken/alpha/bad-blocks.nl.md:3: unknown block type 'quiz'")]
        for p in report.errors
    }


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_missing_translation_names_the_module_file_and_line(content_copy):
    (content_copy / "noticing" / "observer.en.md").unlink()
    report = read_programme(content_copy)
    assert [str(p) for p in report.errors] == [
        "modules/noticing/module.toml:3: lesson 'observer' has no en file observer.en.md"
    ]


def test_image_without_alt_text_is_a_warning_only(content_copy):
    _edit(
        content_copy / "first-steps" / "how-pain-works.en.md",
        "An alarm bell with a volume knob.\n",
        "",
    )
    report = read_programme(content_copy)
    assert report.ok
    assert [str(p) for p in report.warnings] == [
        "modules/first-steps/how-pain-works.en.md:12: warning: an image block should "
        "describe the image (alt text)"
    ]


def test_block_of_different_type_in_translation(content_copy):
    _edit(
        content_copy / "noticing" / "here-and-now.en.md",
        "<!-- block: reflection id=noticed -->",
        "<!-- block: text id=noticed -->",
    )
    report = read_programme(content_copy)
    assert [str(p) for p in report.errors] == [
        "modules/noticing/here-and-now.en.md:6: block 'noticed' is a text block here but a "
        "reflection block in here-and-now.nl.md"
    ]


def test_folder_not_in_programme_is_a_warning(content_copy):
    draft = content_copy / "draft"
    draft.mkdir()
    (draft / "module.toml").write_text('slug = "draft"\n', encoding="utf-8")
    report = read_programme(content_copy)
    assert report.ok
    assert [str(p) for p in report.warnings] == [
        "modules/draft/module.toml:1: warning: this module is not in programme.toml: not loaded"
    ]


def test_invalid_utf8_names_the_line(content_copy):
    path = content_copy / "noticing" / "observer.nl.md"
    path.write_bytes(b"# De waarnemer\n\n<!-- block: text id=intro -->\nJij bent \xff meer.\n")
    report = read_programme(content_copy)
    assert [str(p) for p in report.errors] == [
        "modules/noticing/observer.nl.md:4: is not valid UTF-8"
    ]


LONG = "x" * 60  # with any of the fixture's names, longer than the 64 of their columns


def test_slug_limit_is_the_columns_length():
    columns = (
        ContentLesson.__table__.c.slug,
        ContentModule.__table__.c.slug,
        ContentModule.__table__.c.process,
        ContentRelease.__table__.c.programme_slug,
        Enrollment.__table__.c.programme_slug,
    )
    assert {column.type.length for column in columns} == {MAX_SLUG_LENGTH}


def test_a_lesson_slug_longer_than_its_column_names_the_module_file_and_line(content_copy):
    long_slug = f"how-pain-works-{LONG}"
    module = content_copy / "first-steps"
    _edit(module / "module.toml", '"how-pain-works"', f'"{long_slug}"')
    for locale in ("nl", "en"):
        (module / f"how-pain-works.{locale}.md").rename(module / f"{long_slug}.{locale}.md")
    report = read_programme(content_copy)
    assert [str(p) for p in report.errors] == [
        f"modules/first-steps/module.toml:3: lesson slug '{long_slug}' is 75 characters long; "
        "at most 64"
    ]


def test_a_module_slug_longer_than_its_column_names_the_programme_file_and_line(content_copy):
    long_slug = f"noticing-{LONG}"
    _edit(content_copy / "programme.toml", '"noticing"', f'"{long_slug}"')
    (content_copy / "noticing").rename(content_copy / long_slug)
    _edit(content_copy / long_slug / "module.toml", '"noticing"', f'"{long_slug}"')
    report = read_programme(content_copy)
    assert [str(p) for p in report.errors] == [
        f"modules/programme.toml:7: module slug '{long_slug}' is 69 characters long; at most 64"
    ]


def test_a_programme_slug_or_process_longer_than_its_column_is_an_error(content_copy):
    _edit(content_copy / "programme.toml", '"test-programme"', f'"test-programme-{LONG}"')
    _edit(content_copy / "noticing" / "module.toml", '"present_moment"', f'"present_{LONG}"')
    report = read_programme(content_copy)
    assert [str(p) for p in report.errors] == [
        "modules/noticing/module.toml:2: 'process' is 68 characters long; at most 64",
        "modules/programme.toml:2: 'slug' is 75 characters long; at most 64",
    ]
    assert service.validate(content_copy).ok is False


# --- sync ------------------------------------------------------------------------------------------


def _count(model) -> int:
    return db.session.execute(select(func.count()).select_from(model)).scalar_one()


def test_sync_loads_and_is_idempotent():
    first = load()
    assert first.is_new_release and first.release.number == 1
    assert first.counts["lessons_added"] == 4 and first.counts["versions_added"] == 4
    second = load()
    assert not second.changed
    assert second.release.number == 1
    assert second.counts["lessons_unchanged"] == 4
    assert _count(ContentRelease) == 1 and _count(LessonVersion) == 4


def test_sync_adds_a_version_only_for_changed_text(content_copy):
    load(content_copy)
    _edit(content_copy / "noticing" / "observer.en.md", "more than", "much more than")
    result = load(content_copy)
    assert result.counts["versions_added"] == 1
    assert result.counts["lessons_unchanged"] == 3
    assert result.release.number == 2
    observer = db.session.execute(
        select(ContentLesson).where(ContentLesson.slug == "observer")
    ).scalar_one()
    assert observer.latest_version == 2
    versions = db.session.execute(
        select(LessonVersion).where(LessonVersion.lesson_id == observer.id)
    ).scalars()
    texts = sorted(v.body["en"]["blocks"][0]["markdown"] for v in versions)
    assert texts == ["You are more than your thoughts.", "You are much more than your thoughts."]


def test_sync_retires_a_removed_lesson_and_brings_it_back(content_copy):
    load(content_copy)
    _edit(
        content_copy / "noticing" / "module.toml",
        'lessons = ["here-and-now", "observer"]',
        'lessons = ["here-and-now", "extra"]',
    )
    (content_copy / "noticing" / "observer.nl.md").rename(content_copy / "noticing" / "extra.nl.md")
    (content_copy / "noticing" / "observer.en.md").rename(content_copy / "noticing" / "extra.en.md")
    result = load(content_copy)
    assert result.counts["lessons_retired"] == 1 and result.counts["lessons_added"] == 1
    active = set(
        db.session.execute(
            select(ContentLesson.slug).where(ContentLesson.is_active.is_(True))
        ).scalars()
    )
    assert active == {"how-pain-works", "moving-again", "here-and-now", "extra"}


def _rows():
    return {m.__tablename__: _count(m) for m in (ContentRelease, ContentLesson, LessonVersion)}


def test_cli_sync_shows_progress_and_is_idempotent(app):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["modules", "sync", "--dir", str(VALID)])
    assert result.exit_code == 0, result.output
    assert "modules sync" in result.output and "4/4" in result.output
    assert "Loaded content release 1" in result.output
    before = _rows()
    again = runner.invoke(args=["modules", "sync", "--dir", str(VALID)])
    assert again.exit_code == 0, again.output
    assert "Content unchanged (release 1" in again.output
    assert _rows() == before


def test_cli_sync_of_broken_content_changes_nothing(app):
    runner = app.test_cli_runner()
    assert runner.invoke(args=["modules", "sync", "--dir", str(VALID)]).exit_code == 0
    before = _rows()
    result = runner.invoke(args=["modules", "sync", "--dir", str(BROKEN)])
    assert result.exit_code == 1
    assert "broken/alpha/bad-blocks.nl.md:3: unknown block type 'quiz'" in result.output
    assert "nothing was changed" in result.output
    db.session.expire_all()
    assert _rows() == before


def test_cli_validate(app):
    runner = app.test_cli_runner()
    ok = runner.invoke(args=["modules", "validate", "--dir", str(VALID)])
    assert ok.exit_code == 0 and "Content is valid: 2 modules, 4 lessons" in ok.output
    bad = runner.invoke(args=["modules", "validate", "--dir", str(BROKEN)])
    assert bad.exit_code == 1
    assert "broken/epsilon/module.toml:2: is not valid TOML" in bad.output
    assert _count(ContentRelease) == 0


def test_load_from_disk_writes_nothing_when_invalid():
    report, result = service.load_from_disk(BROKEN)
    assert result is None and not report.ok
    assert _count(ContentRelease) == 0 and _count(ContentLesson) == 0


SHIPPED = Path(__file__).resolve().parents[2] / "modules"


def test_shipped_content_is_valid_and_loads():
    report = read_programme(SHIPPED)
    assert report.ok, "\n".join(str(p) for p in report.errors)
    programme = report.programme
    assert len(programme.modules) >= 8
    for module in programme.modules:
        assert 2 <= len(module.lessons) <= 4
    result = load(SHIPPED)
    assert result.counts["lessons_added"] == len(programme.lessons())
    assert not load(SHIPPED).changed
