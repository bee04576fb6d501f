"""The programme: loading `modules/` into versioned rows, the unlock rule, lessons in the
patient's locale, progress with answers, and what a patient should do today.

The unlock rule: module 1 is open from enrolment; module N opens when module N-1 is completed
and at least (N-1) × `unlock_days_per_module` days have passed since the enrolment's
`started_on`, counted in the patient's own time zone. A module stays open once it was completed
or a lesson in it was started, whatever later content or settings changes do.
"""

from __future__ import annotations

import importlib
import tomllib
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path

from flask import current_app
from markdown_it import MarkdownIt
from sqlalchemy import select, update

from coaching import clock
from coaching.accounts.models import Account
from coaching.content.loader import LOCALES, ProgrammeDef, ValidationReport, read_programme
from coaching.content.models import (
    ContentLesson,
    ContentModule,
    ContentRelease,
    LessonAnswer,
    LessonProgress,
    LessonVersion,
    ModuleCompletion,
)
from coaching.db import dialect_insert, new_id
from coaching.enrolment.models import Enrollment
from coaching.errors import Forbidden, NotFound, ValidationFailed
from coaching.extensions import db
from coaching.metrics import service as metrics

# What the app may report through POST /me/events (anything else is refused).
EVENT_NAMES = (
    "app_opened",
    "programme_viewed",
    "lesson_opened",
    "lesson_audio_played",
    "lesson_video_played",
    "exercise_started",
    "exercise_completed",
)
# An app that was offline reports events later; older ones are refused, future ones clamped.
EVENT_MAX_AGE = timedelta(days=7)
EVENT_CLOCK_SKEW = timedelta(minutes=5)
MAX_ANSWER_LENGTH = 4000
ANSWERABLE = ("exercise", "reflection")

_markdown = MarkdownIt("commonmark", {"html": False})


@lru_cache(maxsize=4096)
def _render_markdown(text: str) -> str:
    # Markdown to HTML is a pure function of the text, and lesson texts never change in place.
    return _markdown.render(text)


# --- the programme file ------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _read_programme(path: str, mtime_ns: int) -> dict:
    # Keyed on the modification time too: an edited file is read again.
    with open(path, "rb") as fh:
        return tomllib.load(fh)


def modules_dir() -> Path:
    """Returns the content folder (`MODULES_DIR`, by default `modules/`)."""
    return Path(current_app.config["MODULES_DIR"])


def programme_definition() -> dict:
    """Returns the parsed `modules/programme.toml` as it is on disk now."""
    path = modules_dir() / "programme.toml"
    return _read_programme(str(path), path.stat().st_mtime_ns)


def programme_slug() -> str:
    """Returns the slug of the programme patients enrol in (from the loaded release, else the
    file: the release is what `modules sync` loaded, the file may be edited since)."""
    release = latest_release()
    if release is not None:
        return release.programme_slug
    return programme_definition()["slug"]


def programme_title(locale: str) -> str:
    """Returns the programme's title in a locale, falling back to Dutch (from the loaded
    release, else the file)."""
    release = latest_release()
    titles = release.title if release is not None else programme_definition()["title"]
    return titles.get(locale) or titles["nl"]


def localized(texts: dict, locale: str):
    """Returns a {locale: value} entry in a locale, falling back to Dutch, then any."""
    if locale in texts:
        return texts[locale]
    for fallback in LOCALES:
        if fallback in texts:
            return texts[fallback]
    return next(iter(texts.values()), None)


# --- loading the content -----------------------------------------------------------------------


def validate(path: Path | str | None = None) -> ValidationReport:
    """Returns the validation report of a content folder (default: the configured one)."""
    return read_programme(path or modules_dir())


def latest_release() -> ContentRelease | None:
    """Returns the newest content release, or None before the first sync."""
    return db.session.execute(
        select(ContentRelease).order_by(ContentRelease.number.desc()).limit(1)
    ).scalar_one_or_none()


def is_loaded() -> bool:
    """Returns whether content was ever loaded."""
    return latest_release() is not None


@dataclass
class SyncResult:
    release: ContentRelease | None = None
    is_new_release: bool = False
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            (
                "modules_added",
                "modules_updated",
                "modules_retired",
                "lessons_added",
                "lessons_updated",
                "lessons_retired",
                "versions_added",
                "lessons_unchanged",
            ),
            0,
        )
    )

    @property
    def changed(self) -> bool:
        return self.is_new_release or any(
            n for key, n in self.counts.items() if key != "lessons_unchanged"
        )


def _set(row, values: dict) -> bool:
    changed = False
    for key, value in values.items():
        if getattr(row, key) != value:
            setattr(row, key, value)
            changed = True
    return changed


def sync(programme: ProgrammeDef, *, progress=None) -> SyncResult:
    """Load a validated programme: add what is new, a version for each lesson whose text changed,
    retire what was removed, and record a release when anything changed (idempotent).

    `progress.update(1)` is called once per lesson. Only flushes; the caller commits.
    """
    now = clock.now()
    result = SyncResult()
    counts = result.counts
    modules = {m.slug: m for m in db.session.execute(select(ContentModule)).scalars()}
    lessons = {row.slug: row for row in db.session.execute(select(ContentLesson)).scalars()}
    latest_digests = dict(
        db.session.execute(
            select(LessonVersion.lesson_id, LessonVersion.digest).join(
                ContentLesson,
                (ContentLesson.id == LessonVersion.lesson_id)
                & (ContentLesson.latest_version == LessonVersion.number),
            )
        ).all()
    )
    seen_modules: set[str] = set()
    seen_lessons: set[str] = set()
    for module_def in programme.modules:
        seen_modules.add(module_def.slug)
        values = {
            "position": module_def.position,
            "process": module_def.process,
            "title": module_def.title,
            "summary": module_def.summary,
            "is_active": True,
        }
        module = modules.get(module_def.slug)
        if module is None:
            module = ContentModule(slug=module_def.slug, updated_at=now, **values)
            db.session.add(module)
            db.session.flush()
            counts["modules_added"] += 1
        elif _set(module, values):
            module.updated_at = now
            counts["modules_updated"] += 1
        for lesson_def in module_def.lessons:
            seen_lessons.add(lesson_def.slug)
            digest = lesson_def.digest()
            lesson = lessons.get(lesson_def.slug)
            if lesson is None:
                lesson = ContentLesson(
                    slug=lesson_def.slug,
                    module_id=module.id,
                    position=lesson_def.position,
                    is_active=True,
                    latest_version=1,
                )
                db.session.add(lesson)
                db.session.flush()
                _add_version(lesson, 1, digest, lesson_def.body(), now)
                counts["lessons_added"] += 1
                counts["versions_added"] += 1
            else:
                moved = _set(
                    lesson,
                    {"module_id": module.id, "position": lesson_def.position, "is_active": True},
                )
                counts["lessons_updated"] += int(moved)
                if latest_digests.get(lesson.id) != digest:
                    lesson.latest_version += 1
                    _add_version(lesson, lesson.latest_version, digest, lesson_def.body(), now)
                    counts["versions_added"] += 1
                elif not moved:
                    counts["lessons_unchanged"] += 1
            if progress is not None:
                progress.update(1)
    for slug, module in modules.items():
        if slug not in seen_modules and module.is_active:
            module.is_active = False
            module.updated_at = now
            counts["modules_retired"] += 1
    for slug, lesson in lessons.items():
        if slug not in seen_lessons and lesson.is_active:
            lesson.is_active = False
            counts["lessons_retired"] += 1
    release = latest_release()
    digest = programme.digest()
    if release is None or release.digest != digest:
        release = ContentRelease(
            number=(release.number + 1) if release else 1,
            digest=digest,
            programme_slug=programme.slug,
            title=programme.title,
            unlock_days_per_module=programme.unlock_days_per_module,
            loaded_at=now,
            summary={
                "modules": len(programme.modules),
                "lessons": len(programme.lessons()),
                **{k: v for k, v in counts.items() if v},
            },
        )
        db.session.add(release)
        result.is_new_release = True
    result.release = release
    db.session.flush()
    _CATALOGUE_CACHE.clear()
    return result


def _add_version(lesson: ContentLesson, number: int, digest: str, body: dict, now) -> None:
    db.session.add(
        LessonVersion(lesson_id=lesson.id, number=number, digest=digest, body=body, created_at=now)
    )


def load_from_disk(
    path: Path | str | None = None, *, progress=None
) -> tuple[ValidationReport, SyncResult | None]:
    """Validate a content folder and load it when valid; returns the report and the result.

    With any validation error nothing is written and the result is None.
    """
    report = validate(path)
    if not report.ok:
        return report, None
    return report, sync(report.programme, progress=progress)


# --- the programme of a patient ----------------------------------------------------------------


@dataclass
class LessonState:
    lesson: ContentLesson
    progress: LessonProgress | None

    @property
    def status(self) -> str:
        return self.progress.status if self.progress else "not_started"

    @property
    def completed(self) -> bool:
        return self.status == "completed"


@dataclass
class ModuleState:
    module: ContentModule
    position: int
    lessons: list[LessonState]
    scheduled_on: date
    unlocked: bool = False
    unlocks_on: date | None = None
    completed: bool = False
    completed_at: datetime | None = None
    # Whether `unlocks_on` is final (module 1, or the previous module is completed).
    is_date_known: bool = False

    @property
    def lessons_completed(self) -> int:
        return sum(1 for state in self.lessons if state.completed)


@dataclass(frozen=True)
class CatalogueModule:
    """An active module as the programme shows it (a read-only copy of its ContentModule row)."""

    id: str
    slug: str
    position: int
    process: str
    title: dict
    summary: dict
    is_active: bool
    updated_at: datetime


@dataclass(frozen=True)
class CatalogueLesson:
    """An active lesson (a read-only copy of its ContentLesson row) and its newest version's id."""

    id: str
    module_id: str
    slug: str
    position: int
    is_active: bool
    latest_version: int
    latest_version_id: str | None


Catalogue = list[tuple[CatalogueModule, list[CatalogueLesson]]]

# The active modules and lessons only change when `modules sync` loads a new release: kept per
# process under the release's id (one entry), so a request reads them with no query.
_CATALOGUE_CACHE: dict[tuple[str, str], Catalogue] = {}


def _load_catalogue() -> Catalogue:
    modules = [
        CatalogueModule(
            id=m.id,
            slug=m.slug,
            position=m.position,
            process=m.process,
            title=m.title,
            summary=m.summary,
            is_active=m.is_active,
            updated_at=m.updated_at,
        )
        for m in db.session.execute(
            select(ContentModule)
            .where(ContentModule.is_active.is_(True))
            .order_by(ContentModule.position, ContentModule.slug)
        ).scalars()
    ]
    by_module: dict[str, list[CatalogueLesson]] = {m.id: [] for m in modules}
    if modules:
        for lesson, version_id in db.session.execute(
            select(ContentLesson, LessonVersion.id)
            .outerjoin(
                LessonVersion,
                (LessonVersion.lesson_id == ContentLesson.id)
                & (LessonVersion.number == ContentLesson.latest_version),
            )
            .where(ContentLesson.is_active.is_(True), ContentLesson.module_id.in_(list(by_module)))
            .order_by(ContentLesson.position, ContentLesson.slug)
        ):
            by_module[lesson.module_id].append(
                CatalogueLesson(
                    id=lesson.id,
                    module_id=lesson.module_id,
                    slug=lesson.slug,
                    position=lesson.position,
                    is_active=lesson.is_active,
                    latest_version=lesson.latest_version,
                    latest_version_id=version_id,
                )
            )
    return [(m, by_module[m.id]) for m in modules]


def _catalogue(release: ContentRelease | None = None) -> Catalogue:
    """Returns the active modules in order, each with its active lessons in order."""
    if release is None:
        release = latest_release()
    if release is None:
        return _load_catalogue()
    key = (release.id, release.digest)
    catalogue = _CATALOGUE_CACHE.get(key)
    if catalogue is None:
        catalogue = _load_catalogue()
        _CATALOGUE_CACHE.clear()
        _CATALOGUE_CACHE[key] = catalogue
    return catalogue


def _unlock_days(release: ContentRelease | None) -> int:
    if release is not None:
        return release.unlock_days_per_module
    return int(programme_definition().get("unlock_days_per_module", 7))


def unlock_days_per_module() -> int:
    """Returns the days between module unlocks (from the loaded release, else the file)."""
    return _unlock_days(latest_release())


def _local_date(account: Account, at: datetime) -> date:
    from coaching.enrolment.service import local_date

    return local_date(account, at)


def programme_states(
    pairs: list[tuple[Account, Enrollment]], *, catalogue=None
) -> dict[str, list[ModuleState]]:
    """Returns each patient's modules with unlock and completion state (bulk, few queries)."""
    if not pairs:
        return {}
    release = latest_release()
    catalogue = _catalogue(release) if catalogue is None else catalogue
    ids = [patient.id for patient, _ in pairs]
    progress: dict[tuple[str, str], LessonProgress] = {
        (row.patient_id, row.lesson_id): row
        for row in db.session.execute(
            select(LessonProgress).where(LessonProgress.patient_id.in_(ids))
        ).scalars()
    }
    completions: dict[tuple[str, str], datetime] = {
        (patient_id, module_id): at
        for patient_id, module_id, at in db.session.execute(
            select(
                ModuleCompletion.patient_id,
                ModuleCompletion.module_id,
                ModuleCompletion.completed_at,
            ).where(ModuleCompletion.patient_id.in_(ids))
        )
    }
    days = _unlock_days(release)
    now = clock.now()
    result = {}
    for patient, enrollment in pairs:
        today = _local_date(patient, now)
        states: list[ModuleState] = []
        for index, (module, lessons) in enumerate(catalogue):
            position = index + 1
            lesson_states = [
                LessonState(lesson, progress.get((patient.id, lesson.id))) for lesson in lessons
            ]
            state = ModuleState(
                module=module,
                position=position,
                lessons=lesson_states,
                scheduled_on=enrollment.started_on + timedelta(days=days * index),
            )
            done_at = [s.progress.completed_at for s in lesson_states if s.completed]
            completed_at = completions.get((patient.id, module.id))
            if completed_at is not None:
                state.completed, state.completed_at = True, completed_at
            elif lesson_states and len(done_at) == len(lesson_states):
                state.completed, state.completed_at = True, max(done_at)
            if index == 0:
                state.unlocks_on, state.is_date_known = enrollment.started_on, True
                state.unlocked = True
            else:
                previous = states[-1]
                if previous.completed:
                    finished_on = _local_date(patient, previous.completed_at)
                    state.unlocks_on = max(state.scheduled_on, finished_on)
                    state.is_date_known = True
                    state.unlocked = today >= state.unlocks_on
                else:
                    state.unlocks_on = state.scheduled_on
                began = any(s.progress is not None for s in lesson_states)
                state.unlocked = state.unlocked or state.completed or began
            states.append(state)
        result[patient.id] = states
    return result


def _enrollment(patient: Account) -> Enrollment:
    enrollment = db.session.execute(
        select(Enrollment).where(Enrollment.patient_id == patient.id)
    ).scalar_one_or_none()
    if enrollment is None:
        raise NotFound("No enrolment in the programme")
    return enrollment


def programme_state(patient: Account, enrollment: Enrollment | None = None) -> list[ModuleState]:
    """Returns one patient's modules with unlock and completion state."""
    enrollment = enrollment or _enrollment(patient)
    return programme_states([(patient, enrollment)])[patient.id]


def module_unlock_dates(patient: Account) -> list[tuple[str, date]]:
    """Returns (module slug, date it opens or opened) for each module whose date is settled:
    module 1, and every module whose previous module is completed. Modules still waiting for
    the previous one are left out (their date depends on the patient)."""
    enrollment = db.session.execute(
        select(Enrollment).where(Enrollment.patient_id == patient.id)
    ).scalar_one_or_none()
    if enrollment is None:
        return []
    return module_unlock_dates_for([(patient, enrollment)])[patient.id]


def module_unlock_dates_for(
    pairs: list[tuple[Account, Enrollment]],
) -> dict[str, list[tuple[str, date]]]:
    """Returns module_unlock_dates for many patients at once, by patient id (few queries)."""
    return {
        patient_id: [(s.module.slug, s.unlocks_on) for s in states if s.is_date_known]
        for patient_id, states in programme_states(pairs).items()
    }


def _versions(ids: set[str]) -> dict[str, LessonVersion]:
    if not ids:
        return {}
    return {
        v.id: v
        for v in db.session.execute(
            select(LessonVersion).where(LessonVersion.id.in_(ids))
        ).scalars()
    }


def _latest_versions(lessons: list[ContentLesson]) -> dict[str, LessonVersion]:
    if not lessons:
        return {}
    rows = db.session.execute(
        select(LessonVersion)
        .join(
            ContentLesson,
            (ContentLesson.id == LessonVersion.lesson_id)
            & (ContentLesson.latest_version == LessonVersion.number),
        )
        .where(ContentLesson.id.in_([lesson.id for lesson in lessons]))
    ).scalars()
    return {v.lesson_id: v for v in rows}


def shown_versions(states: list[ModuleState]) -> dict[str, LessonVersion]:
    """Returns per lesson id the version a patient sees: the one they started, else the newest."""
    pinned = _versions({s.progress.version_id for m in states for s in m.lessons if s.progress})
    latest = _latest_versions([s.lesson for m in states for s in m.lessons if not s.progress])
    shown = {}
    for lesson_state in (s for m in states for s in m.lessons):
        progress = lesson_state.progress
        shown[lesson_state.lesson.id] = (
            pinned[progress.version_id] if progress else latest.get(lesson_state.lesson.id)
        )
    return shown


def lesson_title(version: LessonVersion | None, locale: str) -> str:
    """Returns a version's title in a locale (with fallback)."""
    if version is None:
        return ""
    return localized(version.body, locale)["title"]


# {version id: {locale: title}}: a version's text never changes, so its titles are kept.
_VERSION_TITLES: dict[str, dict[str, str]] = {}
_VERSION_TITLES_MAX = 20_000


def _titles_of(version_ids: set[str]) -> dict[str, dict[str, str]]:
    missing = [vid for vid in version_ids if vid not in _VERSION_TITLES]
    if missing:
        if len(_VERSION_TITLES) + len(missing) > _VERSION_TITLES_MAX:
            _VERSION_TITLES.clear()
        for vid, body in db.session.execute(
            select(LessonVersion.id, LessonVersion.body).where(LessonVersion.id.in_(missing))
        ):
            _VERSION_TITLES[vid] = {lc: content["title"] for lc, content in body.items()}
    return {vid: _VERSION_TITLES[vid] for vid in version_ids if vid in _VERSION_TITLES}


def shown_titles(states: list[ModuleState], locale: str) -> dict[str, str]:
    """Returns per lesson id the title a patient sees (that of `shown_versions`) in a locale."""
    shown_ids = {
        s.lesson.id: (s.progress.version_id if s.progress else s.lesson.latest_version_id)
        for m in states
        for s in m.lessons
    }
    titles = _titles_of({vid for vid in shown_ids.values() if vid is not None})
    return {
        lesson_id: localized(titles[vid], locale) if vid in titles else ""
        for lesson_id, vid in shown_ids.items()
    }


def programme_view(patient: Account) -> dict:
    """Returns the patient's programme as /me/programme shows it."""
    enrollment = _enrollment(patient)
    states = programme_state(patient, enrollment)
    locale = patient.locale
    titles = shown_titles(states, locale)
    return {
        "enrollment_id": enrollment.id,
        "status": enrollment.status,
        "started_on": enrollment.started_on,
        "modules": [
            {
                "slug": state.module.slug,
                "title": localized(state.module.title, locale),
                "summary": localized(state.module.summary, locale),
                "position": state.position,
                "unlocked": state.unlocked,
                "unlocks_on": state.unlocks_on,
                "completed": state.completed,
                "lessons": [
                    {
                        "id": s.lesson.id,
                        "slug": s.lesson.slug,
                        "title": titles[s.lesson.id],
                        "completed": s.completed,
                        "status": s.status,
                    }
                    for s in state.lessons
                ],
            }
            for state in states
        ],
    }


# --- one lesson ----------------------------------------------------------------------------------


@dataclass
class LessonAccess:
    lesson: ContentLesson
    module: ModuleState
    state: LessonState
    version: LessonVersion
    states: list[ModuleState]
    enrollment: Enrollment


def _locked_message(module: ModuleState, states: list[ModuleState]) -> str:
    on = module.unlocks_on.isoformat()
    previous = states[module.position - 2]
    if not previous.completed:
        return (
            f"This lesson is locked: module {module.position} unlocks on {on} at the earliest, "
            f"once module {previous.position} ({previous.module.slug}) is completed"
        )
    return f"This lesson is locked until {on}"


def lesson_access(
    patient: Account, lesson_id: str, enrollment: Enrollment | None = None
) -> LessonAccess:
    """Returns the patient's access to a lesson; unknown → NotFound, locked → Forbidden."""
    lesson = db.session.get(ContentLesson, lesson_id) if isinstance(lesson_id, str) else None
    if lesson is None or not lesson.is_active:
        raise NotFound("Lesson not found")
    enrollment = enrollment or _enrollment(patient)
    states = programme_state(patient, enrollment)
    for module in states:
        for state in module.lessons:
            if state.lesson.id == lesson.id:
                if not module.unlocked:
                    raise Forbidden(_locked_message(module, states))
                if state.progress is not None:
                    version = db.session.get(LessonVersion, state.progress.version_id)
                else:
                    version = _latest_versions([lesson])[lesson.id]
                return LessonAccess(lesson, module, state, version, states, enrollment)
    raise NotFound("Lesson not found")


def render_block(block: dict) -> dict:
    """Returns a block as the API shows it (text blocks with their Markdown rendered)."""
    shown = dict(block)
    if block["type"] == "text":
        shown["html"] = _render_markdown(block["markdown"])
    return shown


def lesson_view(access: LessonAccess, locale: str) -> dict:
    """Returns a lesson in a locale (falling back to the other one) as /lessons/{id} shows it."""
    body = access.version.body
    served = locale if locale in body else next(lc for lc in (*LOCALES, *body) if lc in body)
    content = body[served]
    return {
        "id": access.lesson.id,
        "slug": access.lesson.slug,
        "module_slug": access.module.module.slug,
        "module_title": localized(access.module.module.title, served),
        "title": content["title"],
        "locale": served,
        "version": access.version.number,
        "blocks": [render_block(block) for block in content["blocks"]],
    }


def _block_types(version: LessonVersion) -> dict[str, str]:
    # Both locales have the same ids and types (the validator makes sure).
    content = localized(version.body, "nl")
    return {block["id"]: block["type"] for block in content["blocks"]}


def _check_answers(version: LessonVersion, answers: dict) -> dict[str, str]:
    """Returns {block id: block type} for the answers, or raises naming the first bad one."""
    types = _block_types(version)
    checked = {}
    for block_id, value in answers.items():
        name = f"answers.{block_id}"
        kind = types.get(block_id)
        if kind is None:
            raise ValidationFailed.field(name, "This lesson has no block with this id.")
        if kind not in ANSWERABLE:
            raise ValidationFailed.field(
                name, f"A {kind} block takes no answer (only exercises and reflections)."
            )
        if value is None:
            pass
        elif kind == "reflection" and not isinstance(value, str):
            raise ValidationFailed.field(name, "A reflection's answer is text.")
        elif kind == "exercise" and not isinstance(value, str | bool):
            raise ValidationFailed.field(name, "An exercise's answer is true (done) or text.")
        if isinstance(value, str) and len(value) > MAX_ANSWER_LENGTH:
            raise ValidationFailed.field(name, f"Longer than {MAX_ANSWER_LENGTH} characters.")
        checked[block_id] = kind
    return checked


def answers_of(progress: LessonProgress | None) -> dict:
    """Returns a progress row's answers as {block id: value}."""
    if progress is None:
        return {}
    rows = db.session.execute(
        select(LessonAnswer.block_id, LessonAnswer.value).where(
            LessonAnswer.progress_id == progress.id
        )
    ).all()
    return dict(rows)


def progress_view(lesson_id: str, progress: LessonProgress | None) -> dict:
    """Returns a lesson's progress as PUT/GET /lessons/{id}/progress show it."""
    return {
        "lesson_id": lesson_id,
        "status": progress.status if progress else "not_started",
        "started_at": progress.started_at if progress else None,
        "completed_at": progress.completed_at if progress else None,
        "answers": answers_of(progress),
    }


def get_progress(*, patient: Account, lesson_id: str) -> dict:
    """Returns the patient's progress in a lesson (with their answers)."""
    access = lesson_access(patient, lesson_id)
    return progress_view(access.lesson.id, access.state.progress)


def save_progress(
    *, patient: Account, lesson_id: str, status: str, answers: dict | None = None
) -> dict:
    """Returns the lesson's progress after recording a status and answers (idempotent).

    Progress only moves forward (`started` after `completed` keeps it completed); answers are
    merged by block id (null removes one). A repeated request changes nothing, also when two
    arrive at once.
    """
    enrollment = _lock_enrollment(patient)
    access = lesson_access(patient, lesson_id, enrollment)
    answers = answers or {}
    progress = access.state.progress
    version = access.version
    kinds = _check_answers(version, answers)
    now = clock.now()
    changed: list[str] = []
    if progress is None:
        progress, inserted = _insert_progress(patient, access, now)
        access.state.progress = progress
        if inserted:
            changed.append("lesson_started")
        elif answers and progress.version_id != version.id:
            # Another request started the lesson on a version synced since: answer that one.
            version = db.session.get(LessonVersion, progress.version_id)
            kinds = _check_answers(version, answers)
    just_completed = status == "completed" and _mark_completed(progress, now)
    if just_completed:
        changed.append("lesson_completed")
    if answers and _save_answers(progress, answers, kinds, now):
        changed.append("lesson_answered")
    if changed:
        progress.updated_at = now
        metrics.record_activity(patient_id=patient.id, kind=changed[-1], occurred_at=now)
    if just_completed:
        _after_lesson_completed(patient, access, now)
    db.session.flush()
    return progress_view(access.lesson.id, progress)


def _lock_enrollment(patient: Account) -> Enrollment:
    """Returns the patient's enrolment, locked until the transaction ends (on PostgreSQL).

    Progress writes of one patient queue here, so each reads the programme state after the one
    before it committed (a new snapshot under READ COMMITTED). SQLite takes no lock for a
    SELECT: there, completion is decided from a recount after the write instead (SQLite runs
    one writer at a time, so the second writer's recount sees the first's rows).
    """
    enrollment = db.session.execute(
        select(Enrollment)
        .where(Enrollment.patient_id == patient.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if enrollment is None:
        raise NotFound("No enrolment in the programme")
    return enrollment


def _insert_ignore(model):
    """Returns an INSERT of the dialect in use that leaves a row already there alone."""
    return dialect_insert(model).on_conflict_do_nothing()


def _insert_progress(
    patient: Account, access: LessonAccess, now: datetime
) -> tuple[LessonProgress, bool]:
    """Returns the patient's progress row of the lesson, inserted as started unless another
    request inserted it first (then that one), and whether it was inserted here."""
    inserted = db.session.execute(
        _insert_ignore(LessonProgress)
        .values(
            id=new_id(),
            patient_id=patient.id,
            lesson_id=access.lesson.id,
            version_id=access.version.id,
            status="started",
            started_at=now,
            updated_at=now,
        )
        .returning(LessonProgress.id)
    ).first()
    progress = db.session.execute(
        select(LessonProgress)
        .where(
            LessonProgress.patient_id == patient.id, LessonProgress.lesson_id == access.lesson.id
        )
        .execution_options(populate_existing=True)
    ).scalar_one()
    return progress, inserted is not None


def _mark_completed(progress: LessonProgress, now: datetime) -> bool:
    """Returns whether this call completed the lesson (False when it already was)."""
    if progress.status == "completed":
        return False
    # Conditional, so two requests completing one lesson at once complete it only once.
    done = db.session.execute(
        update(LessonProgress)
        .where(LessonProgress.id == progress.id, LessonProgress.status != "completed")
        .values(status="completed", completed_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.refresh(progress)
    return done == 1


def _save_answers(progress: LessonProgress, answers: dict, kinds: dict, now: datetime) -> bool:
    existing = {
        a.block_id: a
        for a in db.session.execute(
            select(LessonAnswer).where(LessonAnswer.progress_id == progress.id)
        ).scalars()
    }
    changed = False
    for block_id, value in answers.items():
        row = existing.get(block_id)
        if value is None:
            if row is not None:
                db.session.delete(row)
                changed = True
            continue
        if row is None:
            row = _insert_answer(progress, block_id, kinds[block_id], value, now)
            if row is None:
                changed = True
                continue
        if row.value != value or type(row.value) is not type(value):
            row.value = value
            row.updated_at = now
            changed = True
    return changed


def _insert_answer(
    progress: LessonProgress, block_id: str, kind: str, value, now: datetime
) -> LessonAnswer | None:
    """Inserts an answer; returns None, or the row another request inserted first (on SQLite,
    see `_lock_enrollment`), to be updated like one read before."""
    inserted = db.session.execute(
        _insert_ignore(LessonAnswer)
        .values(
            id=new_id(),
            progress_id=progress.id,
            block_id=block_id,
            block_type=kind,
            value=value,
            answered_at=now,
            updated_at=now,
        )
        .returning(LessonAnswer.id)
    ).first()
    if inserted is not None:
        return None
    return db.session.execute(
        select(LessonAnswer)
        .where(LessonAnswer.progress_id == progress.id, LessonAnswer.block_id == block_id)
        .execution_options(populate_existing=True)
    ).scalar_one()


def _completed_lessons(patient: Account) -> set[str]:
    return set(
        db.session.execute(
            select(LessonProgress.lesson_id).where(
                LessonProgress.patient_id == patient.id, LessonProgress.status == "completed"
            )
        ).scalars()
    )


def _completed_modules(patient: Account, states: list[ModuleState], lessons: set[str]) -> set[str]:
    """Returns the ids of the modules completed by the rule of `programme_states`: a completion
    row, or every lesson completed (of the completed lessons' ids given)."""
    recorded = set(
        db.session.execute(
            select(ModuleCompletion.module_id).where(ModuleCompletion.patient_id == patient.id)
        ).scalars()
    )
    return recorded | {
        m.module.id for m in states if m.lessons and all(s.lesson.id in lessons for s in m.lessons)
    }


def _after_lesson_completed(patient: Account, access: LessonAccess, now: datetime) -> None:
    """Record the uptake steps and module/programme completion a completed lesson brings.

    Decided from the database after the write, not from `access` (read before it): another
    request may have completed a lesson since (see `_lock_enrollment`).
    """
    db.session.flush()
    lessons = _completed_lessons(patient)
    if len(lessons) == 1:
        metrics.record_patient_event(
            patient_id=patient.id, name="first_lesson_completed", occurred_at=now
        )
    module = access.module
    if not module.completed and all(s.lesson.id in lessons for s in module.lessons):
        # Ignored when another request recorded it first.
        db.session.execute(
            _insert_ignore(ModuleCompletion).values(
                id=new_id(), patient_id=patient.id, module_id=module.module.id, completed_at=now
            )
        )
        module.completed, module.completed_at = True, now
    modules = _completed_modules(patient, access.states, lessons)
    if not all(state.module.id in modules for state in access.states):
        return
    enrollment = access.enrollment
    db.session.refresh(enrollment)
    if enrollment.status in ("active", "paused") and enrollment.completed_at is None:
        enrollment.status = "completed"
        enrollment.completed_at = now
        metrics.record_patient_event(
            patient_id=patient.id, name="programme_completed", occurred_at=now
        )


# --- today, events, the therapist's view -------------------------------------------------------


def _other(module: str, name: str):
    """Returns a function of another domain's service when that domain has it, else None."""
    try:
        return getattr(importlib.import_module(module), name, None)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):
            return None
        raise


def next_lesson(states: list[ModuleState]) -> tuple[ModuleState, LessonState] | None:
    """Returns the first lesson not completed in an open module, in programme order."""
    for module in states:
        if not module.unlocked:
            continue
        for state in module.lessons:
            if not state.completed:
                return module, state
    return None


def current_module(states: list[ModuleState]) -> ModuleState | None:
    """Returns the first module the patient has not completed (None when all are done)."""
    return next((m for m in states if not m.completed), None)


def today_view(patient: Account) -> dict:
    """Returns what the patient should do today (/me/today)."""
    enrollment = _enrollment(patient)
    states = programme_state(patient, enrollment)
    locale = patient.locale
    upcoming = next_lesson(states)
    lesson = None
    if upcoming is not None:
        module, state = upcoming
        lesson = {
            "id": state.lesson.id,
            "title": shown_titles([module], locale)[state.lesson.id],
            "module_slug": module.module.slug,
            "status": state.status,
        }
    waiting = next((m for m in states if not m.unlocked), None)
    due = _other("coaching.outcomes.service", "due_questionnaires")
    unread = _other("coaching.messaging.service", "unread_count")
    appointment = _other("coaching.appointments.service", "next_appointment")
    return {
        "next_lesson": lesson,
        "next_unlock": (
            {
                "module_slug": waiting.module.slug,
                "title": localized(waiting.module.title, locale),
                "unlocks_on": waiting.unlocks_on,
                "needs_previous_completed": not waiting.is_date_known,
            }
            if waiting is not None
            else None
        ),
        "due_questionnaires": list(due(patient) or []) if due else [],
        "unread_messages": int(unread(patient) or 0) if unread else 0,
        "next_appointment": appointment(patient_id=patient.id) if appointment else None,
    }


def record_app_event(*, patient: Account, name: str, occurred_at: datetime | None = None) -> dict:
    """Returns the accepted event after recording it as patient activity (allow-list only)."""
    if name not in EVENT_NAMES:
        raise ValidationFailed.field("name", f"Unknown event; one of: {', '.join(EVENT_NAMES)}.")
    now = clock.now()
    at = occurred_at or now
    if at < now - EVENT_MAX_AGE:
        raise ValidationFailed.field("occurred_at", "More than 7 days ago.")
    if at > now + EVENT_CLOCK_SKEW:
        raise ValidationFailed.field("occurred_at", "In the future.")
    at = min(at, now)
    metrics.record_activity(patient_id=patient.id, kind=name, occurred_at=at)
    return {"name": name, "occurred_at": at}


def progress_summary(states: list[ModuleState]) -> dict:
    """Returns counts of completed modules and lessons."""
    return {
        "modules_completed": sum(1 for m in states if m.completed),
        "modules_total": len(states),
        "lessons_completed": sum(m.lessons_completed for m in states),
        "lessons_total": sum(len(m.lessons) for m in states),
    }


def module_summary(state: ModuleState | None, locale: str) -> dict | None:
    """Returns a module's slug, title, position and lesson counts (for the work list)."""
    if state is None:
        return None
    return {
        "slug": state.module.slug,
        "title": localized(state.module.title, locale),
        "position": state.position,
        "unlocked": state.unlocked,
        "unlocks_on": state.unlocks_on,
        "lessons_completed": state.lessons_completed,
        "lessons_total": len(state.lessons),
    }


def modules_detail(states: list[ModuleState], locale: str) -> list[dict]:
    """Returns per module its state and each lesson's progress (the therapist's detail view)."""
    shown = shown_versions(states)
    return [
        {
            **module_summary(state, locale),
            "completed": state.completed,
            "completed_at": state.completed_at,
            "lessons": [
                {
                    "id": s.lesson.id,
                    "slug": s.lesson.slug,
                    "title": lesson_title(shown[s.lesson.id], locale),
                    "status": s.status,
                    "started_at": s.progress.started_at if s.progress else None,
                    "completed_at": s.progress.completed_at if s.progress else None,
                }
                for s in state.lessons
            ],
        }
        for state in states
    ]


def reflections(patient_id: str, locale: str) -> list[dict]:
    """Returns the patient's written answers (reflections and exercise notes), newest first,
    each with the question as the patient saw it."""
    rows = db.session.execute(
        select(LessonAnswer, LessonVersion, ContentLesson, ContentModule)
        .join(LessonProgress, LessonProgress.id == LessonAnswer.progress_id)
        .join(LessonVersion, LessonVersion.id == LessonProgress.version_id)
        .join(ContentLesson, ContentLesson.id == LessonProgress.lesson_id)
        .join(ContentModule, ContentModule.id == ContentLesson.module_id)
        .where(LessonProgress.patient_id == patient_id)
        .order_by(LessonAnswer.updated_at.desc(), LessonAnswer.id)
    ).all()
    result = []
    for answer, version, lesson, module in rows:
        if not isinstance(answer.value, str):
            continue
        content = localized(version.body, locale)
        block = next((b for b in content["blocks"] if b["id"] == answer.block_id), {})
        prompt = block.get("question") if answer.block_type == "reflection" else block.get("title")
        result.append(
            {
                "lesson_id": lesson.id,
                "lesson_title": content["title"],
                "module_slug": module.slug,
                "block_id": answer.block_id,
                "block_type": answer.block_type,
                "question": prompt or "",
                "answer": answer.value,
                "answered_at": answer.answered_at,
                "updated_at": answer.updated_at,
            }
        )
    return result
