"""Each assertion type on hand-made answers: a right one passes, a wrong one fails."""

from __future__ import annotations

from typing import Any

import pytest

from edgeprof.errors import UsageError
from edgeprof.grading.assertions import ASSERTION_TYPES, GradeResult, make_assertion
from edgeprof.grading.checks import answer_passes, fuzzy_match, grade
from edgeprof.grading.numbers import numbers_in

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}

# (assertion, answer that passes, answer that fails)
CASES: list[tuple[dict[str, Any], str, str]] = [
    ({"type": "equals", "value": "Paris"}, " Paris\n", "paris"),
    ({"type": "equals", "value": {"a": 1}}, '```json\n{"a": 1}\n```', '{"a": 2}'),
    ({"type": "contains", "value": "Zürich"}, "It is Zürich.", "It is zürich."),
    ({"type": "icontains", "value": "ZÜRICH"}, "it is zürich", "It is Zurich"),
    ({"type": "contains-any", "value": ["cat", "dog"]}, "a dog", "a Dog"),
    ({"type": "icontains-any", "value": ["cat", "dog"]}, "a DOG", "a bird"),
    ({"type": "contains-all", "value": ["red", "blue"]}, "blue and red", "red only"),
    ({"type": "icontains-all", "value": ["red", "blue"]}, "BLUE, Red", "Red"),
    ({"type": "not-contains", "value": "sorry"}, "Here it is.", "I'm sorry, I can't."),
    ({"type": "not-icontains", "value": "sorry"}, "Here it is.", "SORRY"),
    ({"type": "regex", "value": r"^\d{4}-\d{2}-\d{2}$"}, "2024-03-01", "1 March 2024"),
    ({"type": "regex", "value": "colou?r", "flags": "i"}, "COLOR", "hue"),
    ({"type": "not-regex", "value": r"\bI\b"}, "We did it.", "I did it."),
    ({"type": "starts-with", "value": "Yes"}, "  Yes, it is.", "No. Yes."),
    ({"type": "is-json"}, '{"k": [1, 2]}', "k = 1, 2"),
    ({"type": "is-json", "value": PERSON}, '{"name": "Ada", "age": 36}', '{"name": "Ada"}'),
    (
        {"type": "is-json", "schema": PERSON},
        'Sure:\n```json\n{"name": "Ada", "age": 36}\n```',
        '```json\n{"name": "Ada", "age": "36"}\n```',
    ),
    ({"type": "is-json"}, "```\n[1, 2]\n```", 'Here: {"a": 1}'),
    ({"type": "contains-json"}, 'Here: {"a": 1} done', "Here: {a: 1}"),
    ({"type": "number", "value": 1234.5}, "About 1,234.5 km.", "About 1,243.5 km."),
    ({"type": "number", "value": -3}, "It is −3 °C tonight.", "It is 3 °C tonight."),
    ({"type": "number", "value": "5 km", "tolerance": 0.1}, "5.05 kilometres", "5.2 km"),
    ({"type": "number", "value": 100, "rel_tolerance": 0.02}, "101.5", "103"),
    ({"type": "number", "value": 42, "pick": "last"}, "6 times 7 is 42", "42 is 6 times 8"),
    ({"type": "number", "value": 1_000_000}, "1 000 000 (U+202F)", "1 000 000"),
    (
        {"type": "choice", "value": "negative", "labels": ["positive", "negative", "neutral"]},
        "Negative.",
        "Positive",
    ),
    (
        {"type": "choice", "value": "Négatif", "labels": ["Positif", "Négatif"]},
        "« NÉGATIF »",
        "négatif ou positif",
    ),
    (
        {"type": "choice", "value": "very positive", "labels": ["positive", "very positive"]},
        "Very positive!",
        "positive",
    ),
    ({"type": "max-words", "value": 5}, "one two three four five", "one two three four five six"),
    ({"type": "bullets", "value": 3}, "- a\n- b\n* c", "- a\n- b"),
    ({"type": "bullets", "min": 2, "max": 3}, "1. a\n2) b\n• c", "1. a\n2. b\n3. c\n4. d"),
    ({"type": "fuzzy", "value": "The Eiffel Tower"}, "eiffel tower!", "Louvre"),
    ({"type": "fuzzy", "value": ["4", "four"]}, "Four", "five"),
]
# The U+202F case above: write the narrow no-break space for real.
CASES[24] = (CASES[24][0], "1\u202f000\u202f000 people", "1 000 000 people")


@pytest.mark.parametrize(("spec", "good", "bad"), CASES, ids=[c[0]["type"] for c in CASES])
def test_each_type_passes_a_right_answer_and_fails_a_wrong_one(
    spec: dict[str, Any], good: str, bad: str
) -> None:
    a = make_assertion(spec, "test")
    right, wrong = grade(good, a), grade(bad, a)
    assert right.passed and right.score == 1.0, right.reason
    assert not wrong.passed and wrong.score == 0.0
    assert wrong.reason  # says why


def test_every_rule_type_has_a_case() -> None:
    covered = {c[0]["type"] for c in CASES}
    assert set(ASSERTION_TYPES) - covered == {"llm-rubric"}


def test_numbers_in_reads_separators_signs_and_units() -> None:
    assert numbers_in("1,234.5 km") == [1234.5]
    assert numbers_in("−3 °C and –4") == [-3.0, -4.0]
    assert numbers_in("1.5e3 W, .5 l") == [1500.0, 0.5]
    assert numbers_in("pages 2-3") == [2.0, 3.0]  # a range, not minus three
    assert numbers_in("CO2 at 400 ppm") == [400.0]  # a digit inside a word is no number
    assert numbers_in("1, 2") == [1.0, 2.0]  # comma-space is a list, not thousands


def test_choice_reasons_name_what_went_wrong() -> None:
    a = make_assertion({"type": "choice", "value": "a", "labels": ["a", "b"]}, "t")
    assert "none of the labels" in grade("c", a).reason
    assert "2 labels" in grade("a or b", a).reason
    assert grade("B", a).reason == "chose 'b', expected 'a'"


def test_json_schema_failure_names_the_field() -> None:
    a = make_assertion({"type": "is-json", "value": PERSON}, "t")
    r = grade('{"name": "Ada", "age": "x"}', a)
    assert not r.passed and "age" in r.reason


def test_fuzzy_match_follows_openai_evals() -> None:
    assert fuzzy_match("The answer is Paris.", "paris")
    assert fuzzy_match("paris", "Paris, France")
    assert not fuzzy_match("", "paris")
    assert not fuzzy_match("Lyon", "Paris")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"type": "similar", "value": "x"}, "unknown assertion type 'similar'"),
        ({"value": "x"}, "unknown assertion type None"),
        ({"type": "number"}, "number needs a numeric"),
        ({"type": "number", "value": "about ten"}, "number needs a numeric"),
        ({"type": "number", "value": 3, "tolerance": -1}, "tolerance must be"),
        ({"type": "regex", "value": "(unclosed"}, "invalid regex"),
        ({"type": "regex", "value": "a", "flags": "x"}, "flags"),
        ({"type": "is-json", "value": {"type": "strnig"}}, "invalid JSON Schema"),
        ({"type": "is-json", "value": "schema"}, "must be a JSON Schema object"),
        ({"type": "choice", "value": "a", "labels": ["a"]}, "at least two"),
        ({"type": "choice", "value": "c", "labels": ["a", "b"]}, "must be one of its labels"),
        ({"type": "max-words", "value": "five"}, "whole number"),
        ({"type": "bullets"}, "exact count"),
        ({"type": "icontains"}, "non-empty string"),
        ({"type": "contains-any", "value": "x"}, "list of strings"),
        ({"type": "icontains", "value": "x", "labels": []}, "does not take labels"),
        ({"type": "icontains", "value": "x", "weight": -1}, "weight"),
        ({"type": "llm-rubric", "value": "x", "threshold": 2}, "score from 0 to 1"),
        ("icontains", "an assertion is an object"),
    ],
)
def test_misuse_is_one_clear_line(spec: Any, message: str) -> None:
    with pytest.raises(UsageError, match=None) as e:
        make_assertion(spec, "suite.jsonl, line 3")
    text = str(e.value)
    assert message in text and "\n" not in text and text.startswith("suite.jsonl, line 3")


def test_llm_rubric_needs_a_judge() -> None:
    a = make_assertion({"type": "llm-rubric", "value": "is polite"}, "t")
    assert a.judged
    with pytest.raises(UsageError, match="--judge"):
        grade("hello", a)


def test_answer_passes_all_or_weighted_threshold() -> None:
    a = [
        make_assertion({"type": "icontains", "value": "x"}, "t"),
        make_assertion({"type": "icontains", "value": "y", "weight": 3}, "t"),
    ]
    one_fails = [GradeResult(False, 0.0, ""), GradeResult(True, 1.0, "")]
    assert not answer_passes(one_fails, a, None)
    assert answer_passes(one_fails, a, 0.75)  # (0*1 + 1*3) / 4 = 0.75
    assert not answer_passes(one_fails, a, 0.8)
    zero = [a[0], make_assertion({"type": "icontains", "value": "y", "weight": 0}, "t")]
    assert answer_passes([GradeResult(True, 1, ""), GradeResult(False, 0, "")], zero, None)
