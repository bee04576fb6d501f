"""The published scoring rules of every instrument (INSTRUMENTS.md), as pure functions.

Each `score_<key>(answers)` takes answers already checked by `definitions.clean_answers` and
returns `{score name: value}`. Arithmetic is exact (fractions and decimals) and converted to float
only at the end, so a stored score is the nearest double to the published value and is never
rounded: `odi_percent` 32.0, EQ-5D-5L index 55555 → -0.446. Bands and groups are decided on the
exact value. Rules the item definitions cannot express (at least 8 ODI sections, PSFS in pairs)
raise ValidationFailed naming the items.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from coaching.outcomes.definitions import validation_error

ODI_ITEMS = tuple(f"odi{n}" for n in range(1, 11))
ODI_MIN_SECTIONS = 8
ODI_BANDS = ((20, "minimal"), (40, "moderate"), (60, "severe"), (80, "crippled"))
ODI_BAND_ORDER = ("minimal", "moderate", "severe", "crippled", "bed_bound")

EQ5D_DIMENSIONS = (
    "mobility",
    "self_care",
    "usual_activities",
    "pain_discomfort",
    "anxiety_depression",
)
# Versteegh et al. 2016, Dutch EQ-5D-5L value set: decrement per dimension for levels 2..5.
EQ5D_DECREMENTS: dict[str, tuple[Decimal, ...]] = {
    "mobility": (Decimal("0.035"), Decimal("0.057"), Decimal("0.166"), Decimal("0.203")),
    "self_care": (Decimal("0.038"), Decimal("0.061"), Decimal("0.168"), Decimal("0.168")),
    "usual_activities": (Decimal("0.039"), Decimal("0.087"), Decimal("0.192"), Decimal("0.192")),
    "pain_discomfort": (Decimal("0.066"), Decimal("0.092"), Decimal("0.360"), Decimal("0.415")),
    "anxiety_depression": (Decimal("0.070"), Decimal("0.145"), Decimal("0.356"), Decimal("0.421")),
}
EQ5D_CONSTANT = Decimal("0.047")  # subtracted once when any dimension is above level 1

PSFS_MAX_PAIRS = 5
PSFS_MIN_PAIRS = 3

CPAQ_ACTIVITY_ENGAGEMENT = ("cpaq1", "cpaq2", "cpaq3", "cpaq6")
CPAQ_PAIN_WILLINGNESS = ("cpaq4", "cpaq5", "cpaq7", "cpaq8")  # reverse scored: 6 − x

STARTBACK_RISKS = ("low", "medium", "high")

CAREUSE_VISITS = ("gp_visits", "physio_visits", "specialist_visits", "other_visits")


def odi_band(percent: Fraction | float) -> str:
    """Returns the ODI band of a percentage, decided on the unrounded value."""
    for upper, band in ODI_BANDS:
        if percent <= upper:
            return band
    return "bed_bound"


def score_odi(answers: dict) -> dict:
    """Returns `odi_percent` = 100 × sum / (5 × sections answered) and its `band`."""
    answered = [answers[i] for i in ODI_ITEMS if answers.get(i) is not None]
    if len(answered) < ODI_MIN_SECTIONS:
        missing = [i for i in ODI_ITEMS if answers.get(i) is None]
        message = (
            f"Missing: at least {ODI_MIN_SECTIONS} of the 10 sections must be answered "
            f"({len(answered)} were)."
        )
        raise validation_error({f"answers.{i}": [message] for i in missing})
    percent = Fraction(100 * sum(answered), 5 * len(answered))
    return {"odi_percent": float(percent), "band": odi_band(percent)}


def score_nrs(answers: dict) -> dict:
    """Returns the back and leg pain ratings as given."""
    return {"back_pain": answers["back_pain"], "leg_pain": answers["leg_pain"]}


def eq5d_index(levels: tuple[int, ...]) -> Decimal:
    """Returns the exact Dutch EQ-5D-5L index of five levels (mobility … anxiety/depression)."""
    index = Decimal(1)
    if any(level > 1 for level in levels):
        index -= EQ5D_CONSTANT
    for dimension, level in zip(EQ5D_DIMENSIONS, levels, strict=True):
        if level > 1:
            index -= EQ5D_DECREMENTS[dimension][level - 2]
    return index


def score_eq5d5l(answers: dict) -> dict:
    """Returns the five-digit `state`, its Dutch `index` and the `vas` as given."""
    levels = tuple(answers[d] for d in EQ5D_DIMENSIONS)
    return {
        "state": "".join(str(level) for level in levels),
        "index": float(eq5d_index(levels)),
        "vas": answers["vas"],
    }


def psfs_pairs(answers: dict) -> list[tuple[int, str, int]]:
    """Returns the (number, activity, rating) pairs given, or raises naming a half pair."""
    errors: dict[str, list[str]] = {}
    pairs = []
    for n in range(1, PSFS_MAX_PAIRS + 1):
        activity, rating = answers.get(f"activity{n}"), answers.get(f"rating{n}")
        if activity is None and rating is None:
            continue
        if activity is None:
            errors[f"answers.activity{n}"] = [f"Missing: rating{n} needs its activity."]
        elif rating is None:
            errors[f"answers.rating{n}"] = [f"Missing: activity{n} needs its rating."]
        else:
            pairs.append((n, activity, rating))
    if not errors and len(pairs) < PSFS_MIN_PAIRS:
        errors["answers"] = [f"Give at least {PSFS_MIN_PAIRS} activities with their ratings."]
    if errors:
        raise validation_error(errors)
    return pairs


def score_psfs(answers: dict) -> dict:
    """Returns the `mean` of the ratings given (3 to 5 activity–rating pairs)."""
    ratings = [rating for _, _, rating in psfs_pairs(answers)]
    return {"mean": float(Fraction(sum(ratings), len(ratings)))}


def score_cpaq8(answers: dict) -> dict:
    """Returns `activity_engagement`, `pain_willingness` (reverse scored) and their `total`."""
    engagement = sum(answers[i] for i in CPAQ_ACTIVITY_ENGAGEMENT)
    willingness = sum(6 - answers[i] for i in CPAQ_PAIN_WILLINGNESS)
    return {
        "total": engagement + willingness,
        "activity_engagement": engagement,
        "pain_willingness": willingness,
    }


def startback_risk(total: int, psychosocial: int) -> str:
    """Returns the STarT Back risk group: total ≤ 3 low; else psychosocial ≥ 4 high; else medium."""
    if total <= 3:
        return "low"
    if psychosocial >= 4:
        return "high"
    return "medium"


def score_startback(answers: dict) -> dict:
    """Returns the STarT Back `total` (0–9), `psychosocial` subscore (0–5) and `risk` group."""
    bothersome = 1 if answers["sbt9"] >= 3 else 0
    total = sum(answers[f"sbt{n}"] for n in range(1, 9)) + bothersome
    psychosocial = sum(answers[f"sbt{n}"] for n in range(5, 9)) + bothersome
    return {
        "total": total,
        "psychosocial": psychosocial,
        "risk": startback_risk(total, psychosocial),
    }


def score_careuse(answers: dict) -> dict:
    """Returns every care-use answer as given plus `total_visits`."""
    scores = {name: answers[name] for name in CAREUSE_VISITS}
    scores["total_visits"] = sum(scores.values())
    for name in ("imaging", "medication", "work_status", "sick_leave_days"):
        scores[name] = answers[name]
    return scores


SCORERS = {
    "odi": score_odi,
    "nrs": score_nrs,
    "eq5d5l": score_eq5d5l,
    "psfs": score_psfs,
    "cpaq8": score_cpaq8,
    "startback": score_startback,
    "careuse": score_careuse,
}


def score(key: str, answers: dict) -> dict:
    """Returns the scores of checked answers to a questionnaire."""
    return SCORERS[key](answers)
