"""The scoring rules of INSTRUMENTS.md as pure functions: published examples, every boundary, and
property tests over the whole answer space (in range, monotone where the instrument is)."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coaching.errors import ValidationFailed
from coaching.outcomes import definitions, scoring
from coaching.outcomes.definitions import clean_answers

PROPERTY = settings(max_examples=200, deadline=None)
RISK_ORDER = {"low": 0, "medium": 1, "high": 2}
BAND_ORDER = {band: n for n, band in enumerate(scoring.ODI_BAND_ORDER)}


# --- published examples and boundaries -------------------------------------------------------------


def test_odi_published_example():
    answers = dict(zip(scoring.ODI_ITEMS, [2, 1, 3, 2, 1, 2, 1, 0, 2, 2], strict=True))
    assert scoring.score_odi(answers) == {"odi_percent": 32.0, "band": "moderate"}


def test_odi_missing_sections_divide_by_the_sections_answered():
    answers = {f"odi{n}": 3 for n in range(1, 10)}  # odi10 left out
    assert scoring.score_odi(answers)["odi_percent"] == 60.0
    answers = {f"odi{n}": 1 for n in range(1, 11) if n != 8}
    assert scoring.score_odi(answers)["odi_percent"] == 20.0
    # 7/45 is not a round number: stored as the nearest double, never rounded to 15.6.
    nine = {f"odi{n}": v for n, v in zip(range(1, 10), [1, 1, 1, 1, 1, 1, 1, 0, 0], strict=True)}
    assert scoring.score_odi(nine)["odi_percent"] == float(Fraction(700, 45))


def test_odi_refuses_fewer_than_eight_sections_naming_the_missing_ones():
    answers = {f"odi{n}": 2 for n in range(1, 8)}
    with pytest.raises(ValidationFailed) as caught:
        scoring.score_odi(answers)
    assert set(caught.value.errors) == {"answers.odi8", "answers.odi9", "answers.odi10"}


@pytest.mark.parametrize(
    ("percent", "band"),
    [
        (Fraction(0), "minimal"),
        (Fraction(20), "minimal"),
        (Fraction(2001, 100), "moderate"),
        (Fraction(40), "moderate"),
        (Fraction(60), "severe"),
        (Fraction(80), "crippled"),
        (Fraction(8001, 100), "bed_bound"),
        (Fraction(100), "bed_bound"),
    ],
)
def test_odi_bands_on_the_unrounded_value(percent, band):
    assert scoring.odi_band(percent) == band


def test_odi_band_uses_the_unrounded_value_not_the_displayed_one():
    # 9 sections summing to 9: 100 × 9 / 45 = 20.0 → minimal; sum 10 over 9 sections = 22.2…
    nine = dict.fromkeys([f"odi{n}" for n in range(1, 10)], 1)
    assert scoring.score_odi(nine) == {"odi_percent": 20.0, "band": "minimal"}
    # 8 sections, sum 8 → 20 exactly; 9 sections sum 9 → 20 exactly; 40.0 boundary too.
    forty = {f"odi{n}": 2 for n in range(1, 11)}
    assert scoring.score_odi(forty) == {"odi_percent": 40.0, "band": "moderate"}
    # 9 sections summing to 19 → 42.2… (would display as 42): severe.
    above = {f"odi{n}": v for n, v in zip(range(1, 10), [3, 2, 2, 2, 2, 2, 2, 2, 2], strict=True)}
    assert scoring.score_odi(above)["band"] == "severe"


def test_eq5d_anchors_and_a_mixed_state():
    full_health = dict.fromkeys(scoring.EQ5D_DIMENSIONS, 1) | {"vas": 90}
    worst = dict.fromkeys(scoring.EQ5D_DIMENSIONS, 5) | {"vas": 0}
    assert scoring.score_eq5d5l(full_health) == {"state": "11111", "index": 1.0, "vas": 90}
    assert scoring.score_eq5d5l(worst) == {"state": "55555", "index": -0.446, "vas": 0}
    mixed = dict(zip(scoring.EQ5D_DIMENSIONS, [2, 1, 3, 3, 2], strict=True)) | {"vas": 55}
    # 1 − 0.047 − 0.035 − 0.087 − 0.092 − 0.070
    assert scoring.score_eq5d5l(mixed)["index"] == 0.669


def test_eq5d_single_dimension_decrements():
    for dimension, decrements in scoring.EQ5D_DECREMENTS.items():
        for level, decrement in zip((2, 3, 4, 5), decrements, strict=True):
            levels = tuple(level if d == dimension else 1 for d in scoring.EQ5D_DIMENSIONS)
            expected = 1 - scoring.EQ5D_CONSTANT - decrement
            assert scoring.eq5d_index(levels) == expected


def test_psfs_mean_of_the_ratings_given():
    answers = {"activity1": "a", "rating1": 3, "activity2": "b", "rating2": 4, "activity3": "c"}
    answers["rating3"] = 4
    assert scoring.score_psfs(answers) == {"mean": float(Fraction(11, 3))}
    answers |= {"activity4": "d", "rating4": 10, "activity5": "e", "rating5": 0}
    assert scoring.score_psfs(answers) == {"mean": 4.2}


def test_psfs_needs_three_pairs_and_whole_pairs():
    with pytest.raises(ValidationFailed) as caught:
        scoring.score_psfs({"activity1": "a", "rating1": 3, "activity2": "b", "rating2": 4})
    assert "answers" in caught.value.errors
    with pytest.raises(ValidationFailed) as caught:
        scoring.score_psfs(
            {"activity1": "a", "rating1": 1, "activity2": "b", "rating2": 1, "activity3": "c"}
        )
    assert "answers.rating3" in caught.value.errors


def test_cpaq8_subscales():
    answers = {f"cpaq{n}": 6 for n in range(1, 9)}
    assert scoring.score_cpaq8(answers) == {
        "total": 24,
        "activity_engagement": 24,
        "pain_willingness": 0,
    }
    answers = {f"cpaq{n}": v for n, v in zip(range(1, 9), [3, 4, 2, 3, 4, 3, 2, 4], strict=True)}
    # engagement 3+4+2+3 = 12; willingness (6−3)+(6−4)+(6−2)+(6−4) = 11
    assert scoring.score_cpaq8(answers) == {
        "total": 23,
        "activity_engagement": 12,
        "pain_willingness": 11,
    }


@pytest.mark.parametrize(
    ("items", "sbt9", "expected"),
    [
        ([0] * 8, 0, (0, 0, "low")),
        ([1, 1, 1, 0, 0, 0, 0, 0], 2, (3, 0, "low")),
        ([1, 1, 1, 0, 0, 0, 0, 0], 3, (4, 1, "medium")),  # sbt9 ≥ 3 counts one point
        ([0, 0, 0, 0, 1, 1, 1, 0], 4, (4, 4, "high")),
        ([1, 1, 1, 1, 1, 1, 1, 0], 2, (7, 3, "medium")),
        ([1] * 8, 4, (9, 5, "high")),
        ([0, 0, 0, 1, 1, 1, 1, 1], 0, (5, 4, "high")),
        ([1, 1, 1, 1, 1, 1, 1, 1], 1, (8, 4, "high")),
    ],
)
def test_startback_total_psychosocial_and_risk(items, sbt9, expected):
    answers = {f"sbt{n}": v for n, v in zip(range(1, 9), items, strict=True)} | {"sbt9": sbt9}
    scores = scoring.score_startback(answers)
    assert (scores["total"], scores["psychosocial"], scores["risk"]) == expected


def test_nrs_and_careuse_are_as_given():
    assert scoring.score_nrs({"back_pain": 7, "leg_pain": 0}) == {"back_pain": 7, "leg_pain": 0}
    answers = {
        "gp_visits": 2,
        "physio_visits": 10,
        "specialist_visits": 1,
        "other_visits": 3,
        "imaging": 0,
        "medication": "opioid",
        "work_status": "working",
        "sick_leave_days": 5,
    }
    assert scoring.score_careuse(answers) == answers | {"total_visits": 16}


# --- the definitions --------------------------------------------------------------------------


def test_every_definition_has_the_item_codes_of_instruments_md():
    defs = definitions.definitions()
    expected = {
        "odi": [f"odi{n}" for n in range(1, 11)],
        "nrs": ["back_pain", "leg_pain"],
        "eq5d5l": [*scoring.EQ5D_DIMENSIONS, "vas"],
        "psfs": [f"{kind}{n}" for n in range(1, 6) for kind in ("activity", "rating")],
        "cpaq8": [f"cpaq{n}" for n in range(1, 9)],
        "startback": [f"sbt{n}" for n in range(1, 10)],
        "careuse": [
            "gp_visits",
            "physio_visits",
            "specialist_visits",
            "other_visits",
            "imaging",
            "medication",
            "work_status",
            "sick_leave_days",
        ],
    }
    assert list(defs) == list(expected)
    for key, link_ids in expected.items():
        assert [i.link_id for i in defs[key].items] == link_ids, key
        for locale in ("nl", "en"):
            assert defs[key].copyright[locale].strip()
            assert all(i.text[locale].strip() for i in defs[key].items)


def test_copyrighted_instruments_ship_placeholders_only():
    defs = definitions.definitions()
    for key in ("odi", "eq5d5l", "cpaq8", "startback"):
        assert defs[key].licensed_wording is False
        assert "licen" in defs[key].copyright["en"].lower()
    assert defs["odi"].by_link_id["odi3"].text["en"] == "ODI section 3 — lifting"
    for key in ("nrs", "psfs", "careuse"):
        assert defs[key].licensed_wording is True


def test_score_names_match_the_contract():
    names = {k: [s.name for s in d.scores] for k, d in definitions.definitions().items()}
    assert names["odi"] == ["odi_percent", "band"]
    assert names["nrs"] == ["back_pain", "leg_pain"]
    assert names["eq5d5l"] == ["state", "index", "vas"]
    assert names["psfs"] == ["mean"]
    assert names["cpaq8"] == ["total", "activity_engagement", "pain_willingness"]
    assert names["startback"] == ["total", "psychosocial", "risk"]


def test_a_broken_definition_names_the_file_and_item():
    raw = {
        "key": "x",
        "version": "1",
        "title": {"nl": "x", "en": "x"},
        "description": {"nl": "x", "en": "x"},
        "copyright": {"nl": "x", "en": "x"},
        "items": [{"link_id": "q1", "type": "slider", "text": {"nl": "x", "en": "x"}}],
    }
    with pytest.raises(definitions.DefinitionError, match=r"x.yaml item 1 \(q1\)"):
        definitions.parse_definition(raw, "x.yaml")
    raw["items"][0] |= {"type": "integer", "min": 0, "max": 3, "text": {"nl": "x"}}
    with pytest.raises(definitions.DefinitionError, match="locales"):
        definitions.parse_definition(raw, "x.yaml")


# --- property tests over the whole answer space ---------------------------------------------------

# Every combination of levels with up to two sections left out (the most ODI allows).
odi_answers = st.tuples(
    st.fixed_dictionaries({i: st.integers(0, 5) for i in scoring.ODI_ITEMS}),
    st.sets(st.sampled_from(scoring.ODI_ITEMS), max_size=2),
).map(lambda t: {k: (None if k in t[1] else v) for k, v in t[0].items()})
eq_levels = st.tuples(*[st.integers(1, 5)] * 5)
cpaq_answers = st.fixed_dictionaries({f"cpaq{n}": st.integers(0, 6) for n in range(1, 9)})
sbt_answers = st.fixed_dictionaries(
    {f"sbt{n}": st.integers(0, 1) for n in range(1, 9)} | {"sbt9": st.integers(0, 4)}
)
psfs_ratings = st.lists(st.integers(0, 10), min_size=3, max_size=5)


def _psfs(ratings):
    answers = {}
    for n, rating in enumerate(ratings, 1):
        answers[f"activity{n}"] = f"activity {n}"
        answers[f"rating{n}"] = rating
    return answers


@PROPERTY
@given(odi_answers, st.data())
def test_odi_in_range_and_monotone(answers, data):
    scores = scoring.score_odi(answers)
    assert 0 <= scores["odi_percent"] <= 100
    given_levels = [v for v in answers.values() if v is not None]
    exact = Fraction(100 * sum(given_levels), 5 * len(given_levels))
    assert scores["odi_percent"] == float(exact)
    assert scores["band"] == scoring.odi_band(exact)
    answered = [k for k, v in answers.items() if v is not None and v < 5]
    if answered:
        item = data.draw(st.sampled_from(answered))
        worse = scoring.score_odi(answers | {item: answers[item] + 1})
        assert worse["odi_percent"] > scores["odi_percent"]
        assert BAND_ORDER[worse["band"]] >= BAND_ORDER[scores["band"]]


@PROPERTY
@given(eq_levels, st.integers(0, 4))
def test_eq5d_in_range_and_monotone(levels, dimension):
    index = scoring.eq5d_index(levels)
    assert -0.446 <= float(index) <= 1
    assert (index == 1) == (levels == (1, 1, 1, 1, 1))
    if levels[dimension] < 5:
        worse = list(levels)
        worse[dimension] += 1
        assert scoring.eq5d_index(tuple(worse)) <= index


@PROPERTY
@given(psfs_ratings, st.data())
def test_psfs_in_range_and_monotone(ratings, data):
    mean = scoring.score_psfs(_psfs(ratings))["mean"]
    assert 0 <= mean <= 10
    assert mean == float(Fraction(sum(ratings), len(ratings)))
    lower = [n for n, r in enumerate(ratings) if r < 10]
    if lower:
        n = data.draw(st.sampled_from(lower))
        better = list(ratings)
        better[n] += 1
        assert scoring.score_psfs(_psfs(better))["mean"] > mean


@PROPERTY
@given(cpaq_answers, st.integers(1, 8))
def test_cpaq8_in_range_and_monotone(answers, n):
    scores = scoring.score_cpaq8(answers)
    assert 0 <= scores["activity_engagement"] <= 24
    assert 0 <= scores["pain_willingness"] <= 24
    assert scores["total"] == scores["activity_engagement"] + scores["pain_willingness"]
    item = f"cpaq{n}"
    if answers[item] < 6:
        higher = scoring.score_cpaq8(answers | {item: answers[item] + 1})
        if item in scoring.CPAQ_ACTIVITY_ENGAGEMENT:
            assert higher["activity_engagement"] == scores["activity_engagement"] + 1
        else:
            assert higher["pain_willingness"] == scores["pain_willingness"] - 1


@PROPERTY
@given(sbt_answers, st.integers(1, 9))
def test_startback_in_range_and_monotone(answers, n):
    scores = scoring.score_startback(answers)
    assert 0 <= scores["total"] <= 9
    assert 0 <= scores["psychosocial"] <= 5
    assert scores["psychosocial"] <= scores["total"]
    item = f"sbt{n}"
    top = 4 if item == "sbt9" else 1
    if answers[item] < top:
        higher = scoring.score_startback(answers | {item: answers[item] + 1})
        assert higher["total"] >= scores["total"]
        assert higher["psychosocial"] >= scores["psychosocial"]
        assert RISK_ORDER[higher["risk"]] >= RISK_ORDER[scores["risk"]]


@PROPERTY
@given(
    st.fixed_dictionaries(
        {
            "gp_visits": st.integers(0, 99),
            "physio_visits": st.integers(0, 99),
            "specialist_visits": st.integers(0, 99),
            "other_visits": st.integers(0, 99),
            "imaging": st.sampled_from([0, 1]),
            "medication": st.sampled_from(["none", "simple", "opioid"]),
            "work_status": st.sampled_from(
                ["working", "sick_leave", "not_working", "retired", "student"]
            ),
            "sick_leave_days": st.integers(0, 92),
        }
    )
)
def test_careuse_answers_are_accepted_and_summed(answers):
    cleaned = clean_answers(definitions.get("careuse"), answers)
    scores = scoring.score_careuse(cleaned)
    assert 0 <= scores["total_visits"] <= 396
    assert scores["total_visits"] == sum(answers[k] for k in scoring.CAREUSE_VISITS)


# Anything a client could send as an answer value.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.floats() | st.text(max_size=250),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=5,
)


@PROPERTY
@given(
    st.sampled_from(definitions.KEYS),
    st.dictionaries(st.text(min_size=1, max_size=12), json_values, max_size=12),
)
def test_any_answers_are_scored_in_range_or_refused_naming_items(key, answers):
    definition = definitions.get(key)
    # Mix real item codes in so that valid and invalid values of known items are drawn too.
    try:
        cleaned = clean_answers(definition, answers)
        scores = scoring.score(key, cleaned)
    except ValidationFailed as error:
        assert error.errors
        for field in error.errors:
            assert field == "answers" or field.startswith("answers.")
        return
    for score_def in definition.scores:
        value = scores[score_def.name]
        if score_def.type == "text":
            assert isinstance(value, str)
        else:
            assert score_def.min - 1e-12 <= value <= score_def.max + 1e-12


@PROPERTY
@given(
    st.sampled_from(definitions.KEYS).flatmap(
        lambda key: st.tuples(
            st.just(key),
            st.dictionaries(
                st.sampled_from([i.link_id for i in definitions.get(key).items]),
                json_values,
                max_size=10,
            ),
        )
    )
)
def test_answers_to_known_items_are_valid_or_refused_naming_those_items(case):
    key, answers = case
    definition = definitions.get(key)
    try:
        scoring.score(key, clean_answers(definition, answers))
    except ValidationFailed as error:
        for field in error.errors:
            assert field == "answers" or field.removeprefix("answers.") in definition.by_link_id
