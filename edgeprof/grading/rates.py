"""Pass rates from stored grades: pure functions.

An answer passes when every one of its prompt's checks passes (or, with a per-test
threshold, their weighted score reaches it). A prompt asked several times (repetitions) is one
observation: its pass is the share of its answers that passed, so n counts prompts, not
requests, and repeated greedy answers do not narrow the interval. The interval is Wilson's
95% score interval (docs/quality.md).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from edgeprof.grading.assertions import GradeResult
from edgeprof.grading.checks import answer_passes
from edgeprof.grading.grades import PAIRWISE_INDEX, RULE, Expectations, Grade

Z_95 = 1.959963984540054


def wilson_interval(passed: float, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson's score interval for a proportion passed/n; (0, 1) when n is 0."""
    if n <= 0:
        return 0.0, 1.0
    p = passed / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class PassRate:
    n: int  # prompts graded
    passed: float  # prompts passed (fractional when repetitions disagree)
    rate: float
    low: float
    high: float

    @classmethod
    def of(cls, passed: float, n: int) -> PassRate:
        low, high = wilson_interval(passed, n)
        return cls(n, passed, passed / n if n else 0.0, low, high)

    def text(self) -> str:
        return f"{self.rate:.0%} [{self.low:.0%}–{self.high:.0%}], n={self.n}"


@dataclass(frozen=True)
class TaskQuality:
    run_id: str
    pass_rate: PassRate | None  # None: nothing graded
    per_type: Mapping[str, PassRate] = field(default_factory=dict)
    per_kind: Mapping[str, PassRate] = field(default_factory=dict)
    n_answers: int = 0  # requests graded
    answers_passed: int = 0
    judge_failures: int = 0
    unjudged: int = 0  # judged checks (llm-rubric) with no judge's grade yet
    pairwise: Mapping[str, int] = field(default_factory=dict)  # win / tie / loss
    suite: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _choose(grades: Sequence[Grade]) -> dict[int, Grade]:
    """One grade per assertion: the rule's, or for a judged one the latest judge's (run ids
    are ULIDs, so the largest is the latest)."""
    chosen: dict[int, Grade] = {}
    for g in grades:
        if g.assertion_index == PAIRWISE_INDEX:
            continue
        old = chosen.get(g.assertion_index)
        if old is None or (g.grader != RULE and old.grader != RULE and g.grader > old.grader):
            chosen[g.assertion_index] = g
    return chosen


def answer_outcome(grades: Sequence[Grade], exp: Expectations | None) -> tuple[bool, int]:
    """(passed, unjudged) for one answer from its grades."""
    chosen = _choose(grades)
    if exp is None:  # expectations gone: the grades alone decide
        return all(g.passed for g in chosen.values()), 0
    results, assertions, unjudged = [], [], 0
    for i, a in enumerate(exp.assertions):
        g = chosen.get(i)
        if g is None:
            unjudged += a.judged
            continue
        results.append(GradeResult(g.passed, g.score, g.reason))
        assertions.append(a)
    return answer_passes(results, assertions, exp.threshold), unjudged


def task_quality(
    run_id: str, grades: Sequence[Grade], expectations: Mapping[str, Expectations]
) -> TaskQuality:
    """A run's pass rates from its grades and its suite's expectations."""
    by_request: dict[str, list[Grade]] = defaultdict(list)
    for g in grades:
        by_request[g.request_id].append(g)
    per_prompt: dict[str, list[bool]] = defaultdict(list)
    unjudged = 0
    pairwise: dict[str, int] = {"win": 0, "tie": 0, "loss": 0}
    for request_grades in by_request.values():
        prompt = request_grades[0].prompt_id
        for g in request_grades:
            if g.assertion_index == PAIRWISE_INDEX and not g.judge_failed:
                pairwise[{1.0: "win", 0.5: "tie"}.get(g.score, "loss")] += 1
        if not any(g.assertion_index != PAIRWISE_INDEX for g in request_grades):
            continue
        ok, missing = answer_outcome(request_grades, expectations.get(prompt))
        per_prompt[prompt].append(ok)
        unjudged += missing
    if not per_prompt:
        return TaskQuality(run_id, None, pairwise=pairwise if any(pairwise.values()) else {})
    return TaskQuality(
        run_id,
        _rate(per_prompt),
        per_type=_per_type(grades),
        per_kind=_per_kind(per_prompt, expectations),
        n_answers=sum(len(v) for v in per_prompt.values()),
        answers_passed=sum(sum(v) for v in per_prompt.values()),
        judge_failures=sum(g.judge_failed for g in grades),
        unjudged=unjudged,
        pairwise=pairwise if any(pairwise.values()) else {},
    )


def _rate(per_prompt: Mapping[str, Sequence[bool]]) -> PassRate:
    return PassRate.of(sum(sum(v) / len(v) for v in per_prompt.values()), len(per_prompt))


def _per_type(grades: Sequence[Grade]) -> dict[str, PassRate]:
    """Each assertion type's pass rate over the prompts it checks (latest grader per check)."""
    by: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    by_request: dict[str, list[Grade]] = defaultdict(list)
    for g in grades:
        by_request[g.request_id].append(g)
    for request_grades in by_request.values():
        for i, g in _choose(request_grades).items():
            by[g.assertion_type][f"{g.prompt_id}:{i}"].append(g.passed)
    return {t: _rate(v) for t, v in sorted(by.items())}


def _per_kind(
    per_prompt: Mapping[str, Sequence[bool]], expectations: Mapping[str, Expectations]
) -> dict[str, PassRate]:
    by: dict[str, dict[str, Sequence[bool]]] = defaultdict(dict)
    for prompt, outcomes in per_prompt.items():
        exp = expectations.get(prompt)
        if exp is not None and exp.kind:
            by[exp.kind][prompt] = outcomes
    return {k: _rate(v) for k, v in sorted(by.items())}
