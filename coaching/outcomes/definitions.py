"""Questionnaire definitions, kept as data in `instruments/<key>.yaml`, and the checking of answers.

Each file holds the item codes (`link_id`s of INSTRUMENTS.md), answer types (`choice`, `integer`,
`text`) and ranges, Dutch and English text, the copyright statement and the names of the scores
the server computes. Wording under copyright is shipped as placeholders (`licensed_wording:
false`); the scoring is the same either way. A top-level `anchors` key is only there for YAML
anchors and is ignored.

`clean_answers()` checks a submitted `answers` object against a definition and returns only the
answered items; every problem names its item as `answers.<link_id>` so the app can point at it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from coaching.errors import ValidationFailed

INSTRUMENT_DIR = Path(__file__).parent / "instruments"
KEYS = ("odi", "nrs", "eq5d5l", "psfs", "cpaq8", "startback", "careuse")
LOCALES = ("nl", "en")
ITEM_TYPES = ("choice", "integer", "text")
SCORE_TYPES = ("integer", "number", "text")
TEXT_MAX_LENGTH = 200


class DefinitionError(ValueError):
    """A questionnaire file is not valid (the message names the file and the item)."""


@dataclass(frozen=True)
class Option:
    value: int | str
    label: dict[str, str]


@dataclass(frozen=True)
class Item:
    link_id: str
    type: str
    text: dict[str, str]
    required: bool
    options: tuple[Option, ...] = ()
    min: int | None = None
    max: int | None = None
    max_length: int | None = None

    def option_values(self) -> tuple:
        return tuple(o.value for o in self.options)


@dataclass(frozen=True)
class ScoreDef:
    name: str
    type: str
    label: dict[str, str]
    min: float | None = None
    max: float | None = None
    unit: str | None = None
    better: str | None = None  # lower | higher: which direction is improvement
    # Minimal important change (Ostelo et al. 2008): `absolute` points and/or
    # `relative_percent` improvement from baseline, judged separately.
    mic_absolute: float | None = None
    mic_relative_percent: float | None = None


@dataclass(frozen=True)
class Definition:
    key: str
    version: str
    title: dict[str, str]
    description: dict[str, str]
    copyright: dict[str, str]
    licensed_wording: bool
    items: tuple[Item, ...]
    scores: tuple[ScoreDef, ...]
    by_link_id: dict[str, Item] = field(default_factory=dict, compare=False, repr=False)

    def score(self, name: str) -> ScoreDef:
        return next(s for s in self.scores if s.name == name)


def _localized(value, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or set(value) != set(LOCALES):
        raise DefinitionError(f"{where}: needs exactly the locales {', '.join(LOCALES)}")
    for locale, text in value.items():
        if not isinstance(text, str) or not text.strip():
            raise DefinitionError(f"{where}.{locale}: empty text")
    return dict(value)


def _item(raw: dict, where: str) -> Item:
    link_id = raw.get("link_id")
    if not isinstance(link_id, str) or not link_id:
        raise DefinitionError(f"{where}: link_id missing")
    where = f"{where} ({link_id})"
    kind = raw.get("type")
    if kind not in ITEM_TYPES:
        raise DefinitionError(f"{where}: type must be one of {ITEM_TYPES}")
    options: tuple[Option, ...] = ()
    if kind == "choice":
        raw_options = raw.get("options") or []
        options = tuple(
            Option(value=o["value"], label=_localized(o.get("label"), f"{where} option"))
            for o in raw_options
        )
        values = [o.value for o in options]
        if len(values) < 2 or len(set(values)) != len(values):
            raise DefinitionError(f"{where}: a choice needs two or more distinct options")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values) and not all(
            isinstance(v, str) for v in values
        ):
            raise DefinitionError(f"{where}: option values must be all integers or all strings")
    elif "options" in raw:
        raise DefinitionError(f"{where}: only choice items have options")
    if kind == "integer" and not (
        isinstance(raw.get("min"), int) and isinstance(raw.get("max"), int)
    ):
        raise DefinitionError(f"{where}: an integer item needs min and max")
    return Item(
        link_id=link_id,
        type=kind,
        text=_localized(raw.get("text"), f"{where} text"),
        required=bool(raw.get("required", False)),
        options=options,
        min=raw.get("min"),
        max=raw.get("max"),
        max_length=raw.get("max_length", TEXT_MAX_LENGTH) if kind == "text" else None,
    )


def parse_definition(raw: dict, source: str) -> Definition:
    """Returns a definition built from a parsed YAML document, or raises DefinitionError."""
    if not isinstance(raw, dict):
        raise DefinitionError(f"{source}: not a mapping")
    allowed = {
        "key",
        "version",
        "title",
        "description",
        "copyright",
        "licensed_wording",
        "items",
        "scores",
        "anchors",
    }
    unknown = set(raw) - allowed
    if unknown:
        raise DefinitionError(f"{source}: unknown keys {sorted(unknown)}")
    items = tuple(_item(r, f"{source} item {n}") for n, r in enumerate(raw.get("items") or [], 1))
    if not items:
        raise DefinitionError(f"{source}: no items")
    by_link_id = {i.link_id: i for i in items}
    if len(by_link_id) != len(items):
        raise DefinitionError(f"{source}: duplicate link_id")
    scores = []
    for n, s in enumerate(raw.get("scores") or [], 1):
        if s.get("type") not in SCORE_TYPES:
            raise DefinitionError(f"{source} score {n}: type must be one of {SCORE_TYPES}")
        if s.get("better") not in (None, "lower", "higher"):
            raise DefinitionError(f"{source} score {n}: better must be lower or higher")
        mic = s.get("mic") or {}
        if mic and not s.get("better"):
            raise DefinitionError(f"{source} score {n}: a minimal important change needs better")
        scores.append(
            ScoreDef(
                name=s["name"],
                type=s["type"],
                label=_localized(s.get("label"), f"{source} score {s['name']}"),
                min=s.get("min"),
                max=s.get("max"),
                unit=s.get("unit"),
                better=s.get("better"),
                mic_absolute=mic.get("absolute"),
                mic_relative_percent=mic.get("relative_percent"),
            )
        )
    if not isinstance(raw.get("copyright"), dict):
        raise DefinitionError(f"{source}: every instrument keeps its copyright statement")
    return Definition(
        key=str(raw.get("key")),
        version=str(raw.get("version")),
        title=_localized(raw.get("title"), f"{source} title"),
        description=_localized(raw.get("description"), f"{source} description"),
        copyright=_localized(raw.get("copyright"), f"{source} copyright"),
        licensed_wording=bool(raw.get("licensed_wording")),
        items=items,
        scores=tuple(scores),
        by_link_id=by_link_id,
    )


@lru_cache(maxsize=1)
def definitions() -> dict[str, Definition]:
    """Returns every questionnaire definition by key, in the order of KEYS."""
    loaded = {}
    for key in KEYS:
        path = INSTRUMENT_DIR / f"{key}.yaml"
        definition = parse_definition(yaml.safe_load(path.read_text(encoding="utf-8")), path.name)
        if definition.key != key:
            raise DefinitionError(f"{path.name}: key {definition.key!r} does not match the file")
        loaded[key] = definition
    return loaded


def get(key: str) -> Definition | None:
    """Returns the definition of a questionnaire key, or None."""
    return definitions().get(key)


def pick(texts: dict[str, str], locale: str) -> str:
    """Returns the text in a locale, falling back to Dutch."""
    return texts.get(locale) or texts["nl"]


# --- checking answers ------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    # JSON true/false arrive as bool, which Python counts as int: they are not numbers here.
    return isinstance(value, int) and not isinstance(value, bool)


def item_problem(item: Item, value: Any) -> str | None:
    """Returns what is wrong with one answer to an item, or None when it is valid."""
    if item.type == "integer":
        if not _is_int(value):
            return "Not a whole number."
        if not item.min <= value <= item.max:
            return f"Must be from {item.min} to {item.max}."
        return None
    if item.type == "choice":
        values = item.option_values()
        if _is_int(values[0]) and not _is_int(value):
            return f"Must be one of {', '.join(map(str, values))}."
        if isinstance(values[0], str) and not isinstance(value, str):
            return f"Must be one of {', '.join(values)}."
        if value not in values:
            return f"Must be one of {', '.join(map(str, values))}."
        return None
    if not isinstance(value, str):
        return "Not a text."
    if not value.strip():
        return "Must not be empty."
    if len(value) > item.max_length:
        return f"Longer than {item.max_length} characters."
    return None


def clean_answers(definition: Definition, answers: dict) -> dict:
    """Returns the answered items (null means not answered), or raises ValidationFailed naming
    every unknown item, wrong value and missing required item."""
    errors: dict[str, list[str]] = {}
    cleaned: dict[str, Any] = {}
    for link_id, value in answers.items():
        item = definition.by_link_id.get(link_id)
        if item is None:
            errors[f"answers.{link_id}"] = [f"Unknown item for {definition.key}."]
            continue
        if value is None:
            continue
        problem = item_problem(item, value)
        if problem:
            errors[f"answers.{link_id}"] = [problem]
        else:
            cleaned[link_id] = value.strip() if isinstance(value, str) else value
    for item in definition.items:
        if (
            item.required
            and item.link_id not in cleaned
            and f"answers.{item.link_id}" not in errors
        ):
            errors[f"answers.{item.link_id}"] = ["Missing: this item is required."]
    if errors:
        raise validation_error(errors)
    return cleaned


def validation_error(errors: dict[str, list[str]]) -> ValidationFailed:
    """Returns a 422 error whose message names the first item."""
    first = next(iter(errors))
    return ValidationFailed(f"{first}: {errors[first][0]}", errors=errors)
