"""Reading and validating the programme content in `modules/` (see modules/README.md).

`read_programme(path)` parses `programme.toml`, `media.toml`, every module's `module.toml` and
every lesson file, and returns a `ValidationReport`: the parsed programme (only when there is no
error) plus every problem found, each naming the file and line. Nothing here touches the
database; `coaching.content.service.sync` loads a valid programme.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

LOCALES = ("nl", "en")
BLOCK_TYPES = ("text", "exercise", "reflection", "audio", "video", "image")
MEDIA_TYPES = ("audio", "video", "image")
# The attributes each block type takes on its marker line.
BLOCK_ATTRIBUTES = {
    "text": {"id"},
    "exercise": {"id", "duration"},
    "reflection": {"id"},
    "audio": {"id", "media"},
    "video": {"id", "media"},
    "image": {"id", "media"},
}
MIN_LESSONS, MAX_LESSONS = 2, 4
MIN_EXERCISE_S, MAX_EXERCISE_S = 30, 3600
MAX_ID_LENGTH = 64
# Slugs and process names are stored in String(64) columns (content_modules.slug and .process,
# content_lessons.slug, content_releases.programme_slug, enrollments.programme_slug).
MAX_SLUG_LENGTH = 64
DEFAULT_UNLOCK_DAYS = 7

SLUG_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
BLOCK_ID_RE = re.compile(r"^[a-z0-9-]+$")
MEDIA_KEY_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
PROCESS_RE = re.compile(r"^[a-z][a-z0-9_]*$")
MARKER_RE = re.compile(r"^\s*<!--\s*block\s*:\s*(?P<type>[^\s>]*)(?P<attrs>.*?)\s*-->\s*$")
# Anything that looks like it was meant to be a marker, to catch typos such as a missing colon.
LOOSE_MARKER_RE = re.compile(r"^\s*<!--\s*block\b", re.IGNORECASE)
ATTR_RE = re.compile(
    r'\s*(?P<key>[A-Za-z_][A-Za-z0-9_-]*)=(?:"(?P<quoted>[^"]*)"|(?P<bare>[^\s"]+))'
)
H1_RE = re.compile(r"^#\s+(?P<title>\S.*?)\s*#*\s*$")
H2_RE = re.compile(r"^##\s+(?P<title>\S.*?)\s*#*\s*$")
STEP_RE = re.compile(r"^ {0,3}\d{1,3}[.)]\s+(?P<text>\S.*)$")
LESSON_FILE_RE = re.compile(r"^(?P<slug>[^.]+)\.(?P<locale>[^.]+)\.md$")
TOML_LINE_RE = re.compile(r"line (\d+)")


@dataclass(frozen=True)
class Problem:
    """One finding of the validator, naming the file and line."""

    path: str
    line: int
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        prefix = "" if self.severity == "error" else f"{self.severity}: "
        return f"{self.path}:{self.line}: {prefix}{self.message}"


@dataclass
class LessonDef:
    slug: str
    position: int
    module_slug: str
    # locale -> {"title": ..., "blocks": [...]}
    locales: dict[str, dict] = field(default_factory=dict)

    def body(self) -> dict:
        """Returns what a lesson version stores: every locale's title and blocks."""
        return {locale: self.locales[locale] for locale in sorted(self.locales)}

    def digest(self) -> str:
        """Returns a hash of the lesson's text in every locale (a new version when it changes)."""
        return digest_of(self.body())


@dataclass
class ModuleDef:
    slug: str
    position: int
    process: str
    title: dict[str, str]
    summary: dict[str, str]
    lessons: list[LessonDef] = field(default_factory=list)


@dataclass
class ProgrammeDef:
    slug: str
    title: dict[str, str]
    unlock_days_per_module: int
    modules: list[ModuleDef]
    media: dict[str, dict]

    def lessons(self) -> list[LessonDef]:
        """Returns every lesson in programme order."""
        return [lesson for module in self.modules for lesson in module.lessons]

    def digest(self) -> str:
        """Returns a hash of the whole programme: the same tree gives the same hash."""
        return digest_of(
            {
                "slug": self.slug,
                "title": self.title,
                "unlock_days_per_module": self.unlock_days_per_module,
                "modules": [
                    {
                        "slug": m.slug,
                        "process": m.process,
                        "title": m.title,
                        "summary": m.summary,
                        "lessons": [[lesson.slug, lesson.digest()] for lesson in m.lessons],
                    }
                    for m in self.modules
                ],
            }
        )


@dataclass
class ValidationReport:
    programme: ProgrammeDef | None
    problems: list[Problem]

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity != "error"]

    @property
    def ok(self) -> bool:
        return not self.errors


def digest_of(value) -> str:
    """Returns the SHA-256 of a value's canonical JSON."""
    data = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


class _Collector:
    """Collects problems with paths shown relative to the content folder's parent."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.problems: list[Problem] = []

    def rel(self, path: Path) -> str:
        try:
            return str(Path(self.root.name) / path.relative_to(self.root))
        except ValueError:
            return str(path)

    def error(self, path: Path, line: int | None, message: str) -> None:
        self.problems.append(Problem(self.rel(path), line or 1, message))

    def warning(self, path: Path, line: int | None, message: str) -> None:
        self.problems.append(Problem(self.rel(path), line or 1, message, "warning"))


# --- TOML helpers --------------------------------------------------------------------------------


def _read_text(path: Path, out: _Collector) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        out.error(path, line, "is not valid UTF-8")
    except OSError as exc:
        out.error(path, 1, f"cannot be read: {exc.strerror}")
    return None


def _load_toml(path: Path, out: _Collector) -> tuple[dict | None, list[str]]:
    text = _read_text(path, out)
    if text is None:
        return None, []
    try:
        return tomllib.loads(text), text.splitlines()
    except tomllib.TOMLDecodeError as exc:
        match = TOML_LINE_RE.search(str(exc))
        out.error(path, int(match.group(1)) if match else 1, f"is not valid TOML: {exc}")
        return None, []


def _key_line(lines: list[str], key: str, table: str | None = None) -> int:
    """Returns the 1-based line of `key = ...` (top level, or inside `[table]`), else 1.

    With an empty key, returns the line of the table itself (`[table]` or `table = {...}`).
    """
    key_re = re.compile(rf"^\s*[\"']?{re.escape(key or table or '')}[\"']?\s*=")
    current: str | None = None
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if stripped.startswith("[") and not stripped.startswith("[["):
            current = stripped.split("]")[0].strip("[ ").strip("\"'")
            if not key and current == table:
                return number
            continue
        if key and current == table and key_re.match(line):
            return number
        if not key and current is None and key_re.match(line):
            return number
    return 1


def _item_line(lines: list[str], key: str, item: str, occurrence: int = 1) -> int:
    """Returns the line of the n-th quoted string `item` in the array assigned to `key`."""
    start = _key_line(lines, key)
    seen = 0
    for number in range(start, len(lines) + 1):
        text = lines[number - 1].split("#")[0]
        seen += text.count(f'"{item}"') + text.count(f"'{item}'")
        if seen >= occurrence:
            return number
    return start


def _table_line(lines: list[str], table: str) -> int:
    return _key_line(lines, "", table)


def _too_long(name: str, value: str) -> str:
    return f"{name} is {len(value)} characters long; at most {MAX_SLUG_LENGTH}"


def _localized(
    value, path: Path, line: int, name: str, out: _Collector, *, required=True
) -> dict[str, str]:
    """Returns a {nl, en} text table, reporting missing or empty locales."""
    if value is None:
        if required:
            out.error(path, line, f"'{name}' is missing (a table with nl and en)")
        return {}
    if not isinstance(value, dict):
        out.error(path, line, f"'{name}' must be a table with nl and en")
        return {}
    result = {}
    for locale in LOCALES:
        text = value.get(locale)
        if not isinstance(text, str) or not text.strip():
            out.error(path, line, f"'{name}' has no {locale} text")
        else:
            result[locale] = text.strip()
    for extra in sorted(set(value) - set(LOCALES)):
        out.error(path, line, f"'{name}' has an unknown locale '{extra}'")
    return result


# --- programme.toml and media.toml -------------------------------------------------------------


def _read_programme_file(root: Path, out: _Collector) -> tuple[dict, list[str]] | None:
    path = root / "programme.toml"
    if not path.is_file():
        out.error(path, 1, "is missing")
        return None
    data, lines = _load_toml(path, out)
    if data is None:
        return None
    slug = data.get("slug")
    if not isinstance(slug, str) or not SLUG_RE.match(slug):
        out.error(
            path, _key_line(lines, "slug"), "'slug' must be lowercase letters, digits, dashes"
        )
    elif len(slug) > MAX_SLUG_LENGTH:
        out.error(path, _key_line(lines, "slug"), _too_long("'slug'", slug))
    data["title"] = _localized(data.get("title"), path, _table_line(lines, "title"), "title", out)
    days = data.get("unlock_days_per_module", DEFAULT_UNLOCK_DAYS)
    if isinstance(days, bool) or not isinstance(days, int) or not 0 <= days <= 365:
        out.error(
            path,
            _key_line(lines, "unlock_days_per_module"),
            "'unlock_days_per_module' must be a whole number of days from 0 to 365",
        )
        days = DEFAULT_UNLOCK_DAYS
    data["unlock_days_per_module"] = days
    modules = data.get("modules")
    if not isinstance(modules, list) or not modules:
        out.error(
            path, _key_line(lines, "modules"), "'modules' must list the module slugs in order"
        )
        data["modules"] = []
        return data, lines
    seen: set[str] = set()
    clean = []
    for slug in modules:
        if not isinstance(slug, str) or not SLUG_RE.match(slug):
            out.error(path, _key_line(lines, "modules"), f"module slug {slug!r} is not valid")
            continue
        if slug in seen:
            out.error(
                path, _item_line(lines, "modules", slug, 2), f"module '{slug}' is listed twice"
            )
            continue
        if len(slug) > MAX_SLUG_LENGTH:
            # Its folder is still read: the rest of the module is checked too.
            out.error(
                path, _item_line(lines, "modules", slug), _too_long(f"module slug '{slug}'", slug)
            )
        seen.add(slug)
        clean.append(slug)
    data["modules"] = clean
    return data, lines


def _read_media(root: Path, out: _Collector) -> dict[str, dict]:
    path = root / "media.toml"
    if not path.is_file():
        return {}
    data, lines = _load_toml(path, out)
    if data is None:
        return {}
    media: dict[str, dict] = {}
    for key, entry in data.items():
        line = _table_line(lines, key)
        if not MEDIA_KEY_RE.match(key):
            out.error(path, line, f"media key '{key}' must be lowercase letters, digits, dashes")
            continue
        if not isinstance(entry, dict):
            out.error(path, _key_line(lines, key), f"media '{key}' must be a table")
            continue
        kind = entry.get("type")
        if kind not in MEDIA_TYPES:
            out.error(path, line, f"media '{key}' has type {kind!r}; use audio, video or image")
            continue
        duration = entry.get("duration_s")
        if kind in ("audio", "video") and (
            isinstance(duration, bool) or not isinstance(duration, int) or duration <= 0
        ):
            out.error(path, line, f"media '{key}' ({kind}) needs duration_s in whole seconds")
            continue
        title = _localized(entry.get("title"), path, line, f"{key}.title", out)
        media[key] = {"type": kind, "duration_s": duration, "title": title}
    return media


# --- lesson files ------------------------------------------------------------------------------


def _parse_attributes(raw: str) -> tuple[dict[str, str], str | None]:
    """Returns the marker's key=value attributes, or an error message for what is left over."""
    attrs: dict[str, str] = {}
    position = 0
    raw = raw.rstrip()
    while position < len(raw):
        match = ATTR_RE.match(raw, position)
        if match is None:
            return attrs, f"cannot read the attributes {raw[position:].strip()!r} (use key=value)"
        key = match.group("key")
        if key in attrs:
            return attrs, f"attribute '{key}' is given twice"
        attrs[key] = (
            match.group("quoted") if match.group("quoted") is not None else match.group("bare")
        )
        position = match.end()
    return attrs, None


def _a(word: str) -> str:
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"


def _trim(lines: list[tuple[int, str]]) -> list[tuple[int, str]]:
    while lines and not lines[0][1].strip():
        lines = lines[1:]
    while lines and not lines[-1][1].strip():
        lines = lines[:-1]
    return lines


def _joined(lines: list[tuple[int, str]]) -> str:
    return "\n".join(text for _, text in _trim(lines)).strip("\n")


def _parse_exercise(
    block: dict, body: list[tuple[int, str]], path: Path, marker_line: int, out: _Collector
) -> None:
    body = _trim(body)
    if not body or not H2_RE.match(body[0][1]):
        out.error(
            path, body[0][0] if body else marker_line, "an exercise starts with a '## title' line"
        )
        return
    block["title"] = H2_RE.match(body[0][1]).group("title")
    intro: list[tuple[int, str]] = []
    outro: list[tuple[int, str]] = []
    steps: list[str] = []
    previous_blank = False
    for number, text in body[1:]:
        step = STEP_RE.match(text)
        if step and not outro:
            steps.append(step.group("text").strip())
        elif not steps:
            intro.append((number, text))
        elif not outro and text.strip() and (text.startswith((" ", "\t")) or not previous_blank):
            # An indented or directly following line continues the step above.
            steps[-1] = f"{steps[-1]} {text.strip()}"
        elif text.strip() or outro:
            outro.append((number, text))
        previous_blank = not text.strip()
    if len(steps) < 2:
        out.error(path, marker_line, "an exercise needs at least 2 numbered steps (1. … 2. …)")
    block["intro"] = _joined(intro)
    block["steps"] = steps
    block["outro"] = _joined(outro)


def _parse_block(
    kind: str,
    attrs: dict[str, str],
    body: list[tuple[int, str]],
    path: Path,
    marker_line: int,
    media: dict[str, dict],
    locale: str,
    out: _Collector,
) -> dict | None:
    block: dict = {"id": attrs.get("id"), "type": kind}
    if kind == "text":
        block["markdown"] = _joined(body)
        if not block["markdown"]:
            out.error(path, marker_line, f"text block '{block['id']}' is empty")
    elif kind == "exercise":
        raw = attrs.get("duration")
        if raw is None:
            out.error(path, marker_line, "an exercise needs duration=<seconds>")
        elif not raw.isdigit() or not MIN_EXERCISE_S <= int(raw) <= MAX_EXERCISE_S:
            out.error(
                path,
                marker_line,
                f"duration={raw} must be whole seconds from {MIN_EXERCISE_S} to {MAX_EXERCISE_S}",
            )
        else:
            block["duration_s"] = int(raw)
        _parse_exercise(block, body, path, marker_line, out)
    elif kind == "reflection":
        block["question"] = _joined(body)
        if not block["question"]:
            out.error(path, marker_line, f"reflection '{block['id']}' has no question")
    else:
        key = attrs.get("media")
        entry = media.get(key) if key else None
        if key is None:
            out.error(path, marker_line, f"{_a(kind)} block needs media=<key> from media.toml")
        elif entry is None:
            out.error(path, marker_line, f"media '{key}' is not in media.toml")
        elif entry["type"] != kind:
            out.error(path, marker_line, f"media '{key}' is {entry['type']}, not {kind}")
        else:
            block["media"] = {
                "key": key,
                "type": entry["type"],
                "duration_s": entry["duration_s"],
                "title": entry["title"].get(locale) or next(iter(entry["title"].values()), key),
            }
        text = _joined(body)
        if kind == "image":
            block["alt"] = text
            if not text:
                out.warning(
                    path, marker_line, "an image block should describe the image (alt text)"
                )
        else:
            block["caption"] = text
    return block


def parse_lesson(
    path: Path, locale: str, media: dict[str, dict], out: _Collector
) -> tuple[dict | None, list[tuple[str, str, int]]]:
    """Returns a lesson file's {title, blocks} and its (block id, type, line) in order."""
    text = _read_text(path, out)
    if text is None:
        return None, []
    lines = text.splitlines()
    numbered = list(enumerate(lines, start=1))
    first = next(((n, t) for n, t in numbered if t.strip()), None)
    if first is None:
        out.error(path, 1, "is empty: a lesson starts with '# Title'")
        return None, []
    title_match = H1_RE.match(first[1])
    if title_match is None:
        out.error(path, first[0], "a lesson starts with its title as a level-1 heading ('# Title')")
        return None, []
    title = title_match.group("title")
    blocks: list[dict] = []
    order: list[tuple[str, str, int]] = []
    seen_ids: dict[str, int] = {}
    current: tuple[int, str, dict[str, str]] | None = None
    body: list[tuple[int, str]] = []
    ok = True

    def finish() -> None:
        if current is None:
            return
        marker_line, kind, attrs = current
        block = _parse_block(kind, attrs, body, path, marker_line, media, locale, out)
        if block is not None:
            blocks.append(block)
            order.append((block["id"], kind, marker_line))

    skipping = False  # inside a block whose marker was refused: its lines are not checked
    for number, line in numbered[first[0] :]:
        marker = MARKER_RE.match(line)
        if marker is None and LOOSE_MARKER_RE.match(line):
            out.error(path, number, "malformed block marker (use '<!-- block: <type> id=<id> -->')")
            finish()
            current, body, skipping, ok = None, [], True, False
            continue
        if marker is None:
            if current is not None:
                body.append((number, line))
            elif line.strip() and not skipping:
                out.error(path, number, "text before the first block marker")
                ok = False
            continue
        finish()
        current, body, skipping = None, [], True
        kind = marker.group("type").lower()
        attrs, attr_error = _parse_attributes(marker.group("attrs"))
        if kind not in BLOCK_TYPES:
            out.error(
                path,
                number,
                f"unknown block type '{marker.group('type')}' (use {', '.join(BLOCK_TYPES)})",
            )
            ok = False
            continue
        if attr_error:
            out.error(path, number, attr_error)
            ok = False
            continue
        unknown = sorted(set(attrs) - BLOCK_ATTRIBUTES[kind])
        if unknown:
            out.error(path, number, f"{_a(kind)} block has no attribute '{unknown[0]}'")
            ok = False
        block_id = attrs.get("id")
        if not block_id:
            out.error(path, number, f"{_a(kind)} block needs id=<id>")
            ok = False
            continue
        if not BLOCK_ID_RE.match(block_id) or len(block_id) > MAX_ID_LENGTH:
            out.error(
                path, number, f"block id '{block_id}' must be lowercase letters, digits, dashes"
            )
            ok = False
            continue
        if block_id in seen_ids:
            out.error(
                path,
                number,
                f"block id '{block_id}' is used twice in this lesson (first on line {seen_ids[block_id]})",
            )
            ok = False
            continue
        seen_ids[block_id] = number
        current, skipping = (number, kind, attrs), False
    finish()
    if not order and ok:
        out.error(path, first[0], "a lesson needs at least one block")
    return {"title": title, "blocks": blocks}, order


def _compare_locales(
    lesson_slug: str,
    orders: dict[str, list[tuple[str, str, int]]],
    paths: dict[str, Path],
    out: _Collector,
) -> None:
    """Report where a translation's blocks differ from the Dutch file's (ids, order, types)."""
    reference_locale = LOCALES[0]
    reference = orders.get(reference_locale)
    if reference is None:
        return
    for locale in LOCALES[1:]:
        other = orders.get(locale)
        if other is None:
            continue
        ref_name = paths[reference_locale].name
        for index in range(max(len(reference), len(other))):
            ours = other[index] if index < len(other) else None
            theirs = reference[index] if index < len(reference) else None
            if ours is None:
                last_line = other[-1][2] if other else 1
                out.error(
                    paths[locale],
                    last_line,
                    f"block '{theirs[0]}' of {ref_name} is missing here (same ids in the same order)",
                )
                break
            if theirs is None:
                out.error(
                    paths[locale],
                    ours[2],
                    f"block '{ours[0]}' is not in {ref_name} (same ids in the same order)",
                )
                break
            if ours[0] != theirs[0]:
                out.error(
                    paths[locale],
                    ours[2],
                    f"block '{ours[0]}' where {ref_name} has '{theirs[0]}' (line {theirs[2]}): "
                    "both locales need the same block ids in the same order",
                )
                break
            if ours[1] != theirs[1]:
                out.error(
                    paths[locale],
                    ours[2],
                    f"block '{ours[0]}' is a {ours[1]} block here but a {theirs[1]} block in {ref_name}",
                )
                break


# --- modules -----------------------------------------------------------------------------------


def _read_module(
    root: Path,
    slug: str,
    position: int,
    programme_path: Path,
    programme_line: int,
    media: dict[str, dict],
    lesson_owner: dict[str, str],
    out: _Collector,
) -> ModuleDef | None:
    folder = root / slug
    if not folder.is_dir():
        out.error(programme_path, programme_line, f"module '{slug}' has no folder {slug}/")
        return None
    path = folder / "module.toml"
    if not path.is_file():
        out.error(path, 1, "is missing")
        return None
    data, lines = _load_toml(path, out)
    if data is None:
        return None
    if data.get("slug") != slug:
        out.error(
            path,
            _key_line(lines, "slug"),
            f"'slug' must be '{slug}' (the folder's name), not {data.get('slug')!r}",
        )
    process = data.get("process")
    if not isinstance(process, str) or not PROCESS_RE.match(process):
        out.error(
            path, _key_line(lines, "process"), "'process' must name the ACT process (e.g. defusion)"
        )
    elif len(process) > MAX_SLUG_LENGTH:
        out.error(path, _key_line(lines, "process"), _too_long("'process'", process))
    title = _localized(data.get("title"), path, _table_line(lines, "title"), "title", out)
    summary = _localized(data.get("summary"), path, _table_line(lines, "summary"), "summary", out)
    known = {"slug", "process", "lessons", "title", "summary"}
    for extra in sorted(set(data) - known):
        out.warning(path, _key_line(lines, extra), f"unknown key '{extra}' is ignored")
    lessons_line = _key_line(lines, "lessons")
    lesson_slugs = data.get("lessons")
    if not isinstance(lesson_slugs, list):
        out.error(path, lessons_line, "'lessons' must list the lesson slugs in order")
        lesson_slugs = []
    elif not MIN_LESSONS <= len(lesson_slugs) <= MAX_LESSONS:
        out.error(
            path,
            lessons_line,
            f"a module has {MIN_LESSONS} to {MAX_LESSONS} lessons, not {len(lesson_slugs)}",
        )
    module = ModuleDef(
        slug=slug,
        position=position,
        process=process if isinstance(process, str) else "",
        title=title,
        summary=summary,
    )
    listed: set[str] = set()
    for lesson_position, lesson_slug in enumerate(lesson_slugs, start=1):
        if not isinstance(lesson_slug, str) or not SLUG_RE.match(lesson_slug):
            out.error(path, lessons_line, f"lesson slug {lesson_slug!r} is not valid")
            continue
        line = _item_line(lines, "lessons", lesson_slug, 2 if lesson_slug in listed else 1)
        if lesson_slug in listed:
            out.error(path, line, f"lesson '{lesson_slug}' is listed twice")
            continue
        if len(lesson_slug) > MAX_SLUG_LENGTH:
            # Its files are still read (and not reported as unlisted): the rest is checked too.
            out.error(path, line, _too_long(f"lesson slug '{lesson_slug}'", lesson_slug))
        listed.add(lesson_slug)
        if lesson_slug in lesson_owner:
            out.error(
                path,
                line,
                f"lesson slug '{lesson_slug}' is already used in module '{lesson_owner[lesson_slug]}'",
            )
            continue
        lesson_owner[lesson_slug] = slug
        lesson = LessonDef(slug=lesson_slug, position=lesson_position, module_slug=slug)
        orders: dict[str, list] = {}
        paths: dict[str, Path] = {}
        for locale in LOCALES:
            lesson_path = folder / f"{lesson_slug}.{locale}.md"
            if not lesson_path.is_file():
                out.error(
                    path, line, f"lesson '{lesson_slug}' has no {locale} file {lesson_path.name}"
                )
                continue
            parsed, order = parse_lesson(lesson_path, locale, media, out)
            if parsed is not None:
                lesson.locales[locale] = parsed
                orders[locale] = order
                paths[locale] = lesson_path
        _compare_locales(lesson_slug, orders, paths, out)
        module.lessons.append(lesson)
    for file in sorted(folder.iterdir()):
        if file.name == "module.toml" or file.name.startswith("."):
            continue
        match = LESSON_FILE_RE.match(file.name)
        if match is None:
            if file.suffix == ".md":
                out.error(file, 1, "is not a lesson file name (<lesson-slug>.<nl|en>.md)")
            else:
                out.warning(file, 1, "is not part of the content and is ignored")
            continue
        if match.group("locale") not in LOCALES:
            out.error(file, 1, f"has an unknown locale '{match.group('locale')}' (nl or en)")
        elif match.group("slug") not in listed:
            out.error(file, 1, f"lesson '{match.group('slug')}' is not listed in module.toml")
    return module


def read_programme(root: Path | str) -> ValidationReport:
    """Returns the validated programme of a content folder, with every problem found."""
    root = Path(root)
    out = _Collector(root)
    if not root.is_dir():
        out.error(root, 1, "is not a folder")
        return ValidationReport(None, out.problems)
    programme = _read_programme_file(root, out)
    media = _read_media(root, out)
    if programme is None:
        return ValidationReport(None, out.problems)
    data, lines = programme
    programme_path = root / "programme.toml"
    modules: list[ModuleDef] = []
    lesson_owner: dict[str, str] = {}
    for position, slug in enumerate(data["modules"], start=1):
        module = _read_module(
            root,
            slug,
            position,
            programme_path,
            _item_line(lines, "modules", slug),
            media,
            lesson_owner,
            out,
        )
        if module is not None:
            modules.append(module)
    listed = set(data["modules"])
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if folder.name not in listed and (folder / "module.toml").exists():
            out.warning(
                folder / "module.toml", 1, "this module is not in programme.toml: not loaded"
            )
    report = ValidationReport(None, sorted(out.problems, key=lambda p: (p.path, p.line)))
    if report.ok:
        report.programme = ProgrammeDef(
            slug=data["slug"],
            title=data["title"],
            unlock_days_per_module=data["unlock_days_per_module"],
            modules=modules,
            media=media,
        )
    return report
