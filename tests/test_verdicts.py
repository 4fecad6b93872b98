"""Judges' verdicts, pairwise outcomes, agreement and pass-rate intervals: pure functions,
checked on hand-computed values."""

from __future__ import annotations

import math

import pytest

from edgeprof.grading.assertions import Assertion
from edgeprof.grading.grades import RULE, Expectations, Grade
from edgeprof.grading.rates import PassRate, task_quality, wilson_interval
from edgeprof.grading.verdicts import (
    agreement,
    cohen_kappa,
    pair_outcome,
    parse_pair,
    parse_verdict,
)


def test_wilson_interval_on_hand_computed_values() -> None:
    # 8 of 10, z = 1.96: centre (0.8 + 0.19208) / 1.38416 = 0.71676; half-width
    # 1.96 * sqrt(0.016 + 0.009604) / 1.38416 = 0.22665 -> [0.4902, 0.9433].
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    # 0 of 20: [0, 3.8416 / 23.8416] = [0, 0.16113]
    low, high = wilson_interval(0, 20)
    assert low == 0.0 and high == pytest.approx(0.16113, abs=1e-5)
    assert wilson_interval(5, 5)[1] == 1.0 and wilson_interval(0, 0) == (0.0, 1.0)
    # Symmetric: k of n and n-k of n mirror each other.
    lo, hi = wilson_interval(3, 13)
    assert (1 - hi, 1 - lo) == pytest.approx(wilson_interval(10, 13))
    assert PassRate.of(8, 10).text() == "80% [49%–94%], n=10"


def test_parse_verdict_accepts_only_the_schema() -> None:
    v = parse_verdict('{"pass": true, "score": 0.8, "reason": "ok"}')
    assert v is not None and v.passed and v.score == 0.8 and v.reason == "ok"
    assert parse_verdict('```json\n{"pass": false, "score": 0, "reason": "no"}\n```') is not None
    for bad in (
        "PASS",
        '{"pass": true}',
        '{"pass": "true", "score": 1, "reason": ""}',
        '{"pass": true, "score": 1.5, "reason": ""}',
        '{"pass": true, "score": 1, "reason": "", "extra": 1}',
        "[]",
    ):
        assert parse_verdict(bad) is None, bad
    assert parse_pair('{"winner": "B", "reason": "shorter"}') == "B"
    assert parse_pair('{"winner": "both", "reason": ""}') is None


@pytest.mark.parametrize(
    ("first", "second", "outcome"),
    [
        ("A", "B", "win"),  # device better in both orders
        ("B", "A", "loss"),
        ("A", "A", "tie"),  # the judge prefers whatever comes first: a flip, a tie
        ("B", "B", "tie"),
        ("tie", "B", "tie"),
        ("tie", "tie", "tie"),
        (None, "B", None),  # one judgement failed: no outcome
    ],
)
def test_pair_outcome_in_both_orders(first: str | None, second: str | None, outcome: str) -> None:
    assert pair_outcome(first, second) == outcome


def test_cohen_kappa_by_hand() -> None:
    # 10 items: both pass 4, both fail 3, A only 2, B only 1. p_o = 0.7; A passes 0.6, B 0.5;
    # p_e = 0.6*0.5 + 0.4*0.5 = 0.5; kappa = (0.7 - 0.5) / 0.5 = 0.4.
    a = [True] * 4 + [False] * 3 + [True] * 2 + [False]
    b = [True] * 4 + [False] * 3 + [False] * 2 + [True]
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert agreement(a, b) == (pytest.approx(0.7), pytest.approx(0.4))
    assert cohen_kappa([True, False], [True, False]) == pytest.approx(1.0)
    assert cohen_kappa([True, False], [False, True]) == pytest.approx(-1.0)
    assert cohen_kappa([True, True], [True, True]) is None  # chance agreement is already 1
    assert cohen_kappa([], []) is None and agreement([], []) == (None, None)


def _g(request: str, prompt: str, index: int, passed: bool, grader: str = RULE,
       kind: str = "icontains", failed: bool = False) -> Grade:  # fmt: skip
    return Grade("run", request, prompt, index, kind, grader, passed, float(passed), "",
                 judge_failed=failed)  # fmt: skip


def test_task_quality_counts_prompts_not_repetitions() -> None:
    rule = Assertion("icontains", "x")
    rubric = Assertion("llm-rubric", "good")
    exp = {
        "p1": Expectations("p1", "s", "qa", None, None, (rule,), "h1"),
        "p2": Expectations("p2", "s", "sum", None, None, (rule, rubric), "h2"),
    }
    grades = [
        # p1 asked twice: passes once, fails once -> half a pass
        _g("r1", "p1", 0, True), _g("r2", "p1", 0, False),
        # p2: rule passes; two judges, the later one (larger run id) decides: it fails
        _g("r3", "p2", 0, True), _g("r3", "p2", 1, True, "01JUDGEA", "llm-rubric"),
        _g("r3", "p2", 1, False, "01JUDGEB", "llm-rubric", failed=True),
    ]  # fmt: skip
    q = task_quality("run", grades, exp)
    assert q.pass_rate is not None and q.pass_rate.n == 2 and q.pass_rate.passed == 0.5
    assert q.pass_rate.rate == 0.25 and q.n_answers == 3 and q.answers_passed == 1
    assert q.judge_failures == 1 and q.unjudged == 0
    assert q.per_type["icontains"].n == 2 and q.per_type["llm-rubric"].rate == 0.0
    assert set(q.per_kind) == {"qa", "sum"}
    # Without any judge grade the rubric is unjudged and the rule alone decides p2.
    q2 = task_quality("run", grades[:3], exp)
    assert q2.unjudged == 1 and q2.pass_rate is not None and q2.pass_rate.passed == 1.5
    assert task_quality("run", [], exp).pass_rate is None
    assert math.isclose(q.pass_rate.low, wilson_interval(0.5, 2)[0])
