"""Grading stored runs: the deterministic checks of every answer, and the pass rates of runs.

`grade_rules` runs at the end of `edgeprof run` and from `edgeprof grade`; it reads the answers
from the database, never generates. Judges (`judges.py`) add their grades beside these.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from edgeprof.errors import UsageError
from edgeprof.grading.assertions import GradeResult
from edgeprof.grading.checks import grade
from edgeprof.grading.grades import RULE, Expectations, Grade
from edgeprof.grading.rates import TaskQuality, task_quality
from edgeprof.grading.records import (
    grades_of_runs,
    load_expectations,
    replace_grades,
    save_expectations,
)
from edgeprof.measure.prompt import Prompt
from edgeprof.store.db import Store
from edgeprof.store.rows import RequestRow

JUDGE_SUITE = "edgeprof-judge"  # runs.prompt_suite of a judge's own runs


@dataclass(frozen=True)
class RuleGrading:
    run_id: str
    answers: int  # answers that have expectations
    grades: int  # rule grades stored
    judged_checks: int  # llm-rubric checks left for a judge


def gradable_run_ids(store: Store) -> list[str]:
    """Runs whose suite has stored expectations (judges' own runs aside), oldest first."""
    rows = store.db.execute(
        "SELECT id FROM runs WHERE prompt_suite != ? AND prompt_suite IN "
        "(SELECT DISTINCT suite FROM expectations) ORDER BY id",
        [JUDGE_SUITE],
    ).fetchall()
    return [str(r[0]) for r in rows]


def answers_of(store: Store, run_id: str) -> list[RequestRow]:
    """The run's measured answers (warm-ups aside): id, prompt_id, output_text, error."""
    return [r for r in store.requests(run_id) if not r["warmup"]]


def run_suite(store: Store, run_id: str) -> str:
    runs = store.runs([run_id])
    if not runs:
        raise UsageError(f"no run {run_id} in {store.path}; list runs with `edgeprof report`")
    return str(runs[0]["prompt_suite"])


def grade_rules(store: Store, run_id: str, prompts: Sequence[Prompt] | None = None) -> RuleGrading:
    """Grade every answer of a run by its prompt's deterministic checks, replacing the run's
    earlier rule grades. `prompts`: new expectations for the run's suite, stored first (the
    same prompts keep their ids, so changed expectations re-grade stored answers)."""
    suite = run_suite(store, run_id)
    if prompts is not None:
        save_expectations(store, prompts, suite)
    expectations = load_expectations(store, suite)
    answers = answers_of(store, run_id)
    grades: list[Grade] = []
    n_answers = judged = 0
    for r in answers:
        exp = expectations.get(str(r["prompt_id"]))
        if exp is None:
            continue
        n_answers += 1
        new, pending = _rule_grades(run_id, r, exp)
        grades += new
        judged += pending
    replace_grades(store, [str(r["id"]) for r in answers], [RULE], grades)
    return RuleGrading(run_id, n_answers, len(grades), judged)


def _rule_grades(run_id: str, request: RequestRow, exp: Expectations) -> tuple[list[Grade], int]:
    out, judged = [], 0
    answer = str(request["output_text"] or "")
    for i, a in enumerate(exp.assertions):
        if a.judged:
            judged += 1
            continue
        if request["error"] and not answer:
            # A request that failed has no answer to check: a failure, and it says why.
            result = GradeResult(False, 0.0, f"request failed: {str(request['error'])[:120]}")
        else:
            result = grade(answer, a)
        out.append(
            Grade(
                run_id, str(request["id"]), str(request["prompt_id"]), i, a.type, RULE,
                result.passed, result.score, result.reason, expectations_sha256=exp.sha256,
            )
        )  # fmt: skip
    return out, judged


def quality_of_runs(store: Store, run_ids: Sequence[str]) -> dict[str, TaskQuality]:
    """Each run's task quality from its stored grades (runs without grades: pass_rate None)."""
    grades = grades_of_runs(store, run_ids)
    suites = {r["id"]: str(r["prompt_suite"]) for r in store.runs(list(run_ids))}
    cache: dict[str, dict[str, Expectations]] = {}
    out = {}
    for run_id in run_ids:
        suite = suites.get(run_id, "")
        if suite not in cache:
            cache[suite] = load_expectations(store, suite)
        q = task_quality(run_id, [g for g in grades if g.run_id == run_id], cache[suite])
        out[run_id] = dataclasses.replace(q, suite=suite)
    return out


def suite_has_expectations(store: Store, run_id: str) -> bool:
    row = store.db.execute(
        "SELECT 1 FROM expectations WHERE suite = (SELECT prompt_suite FROM runs WHERE id = ?) "
        "LIMIT 1",
        [run_id],
    ).fetchone()
    return row is not None


def failures(store: Store, run_ids: Sequence[str], limit: int = 50) -> list[dict[str, object]]:
    """Failing checks with an excerpt of the answer and the reason, newest run first."""
    if not run_ids:
        return []
    marks = ",".join("?" for _ in run_ids)
    rows = store.db.execute(
        "SELECT g.run_id, p.name, g.assertion_type, g.grader, g.reason, g.judge_failed, "
        "r.output_text FROM grades g JOIN requests r ON r.id = g.request_id "
        "LEFT JOIN prompts p ON p.id = g.prompt_id "
        f"WHERE g.run_id IN ({marks}) AND g.passed = 0 AND g.assertion_index >= 0 "
        "ORDER BY g.run_id DESC, r.seq, g.assertion_index LIMIT ?",
        [*run_ids, limit],
    ).fetchall()
    keys = ("run_id", "prompt", "assertion", "grader", "reason", "judge_failed", "answer")
    out = []
    for row in rows:
        item = dict(zip(keys, row, strict=True))
        text = " ".join(str(item["answer"] or "").split())
        item["answer"] = text if len(text) <= 100 else text[:99] + "…"
        item["judge_failed"] = bool(item["judge_failed"])
        out.append(item)
    return out
