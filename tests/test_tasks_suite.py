"""The bundled `tasks` suite: every deterministic expectation passes a correct hand-written
answer and fails a plausible wrong one (answers in tests/data/tasks_answers.json)."""

from __future__ import annotations

import json
from pathlib import Path

from edgeprof.grading.checks import grade
from edgeprof.measure.workload import bundled_suites, load_suite

ANSWERS = json.loads((Path(__file__).parent / "data" / "tasks_answers.json").read_text("utf-8"))


def test_tasks_suite_shape() -> None:
    prompts = load_suite("tasks")
    assert "tasks" in bundled_suites() and ANSWERS["suite"] == "tasks"
    assert len(prompts) >= 60
    assert len({p.id for p in prompts}) == len(prompts) == len({p.name for p in prompts})
    kinds = {p.kind for p in prompts}
    assert {"classify", "extract", "qa", "math", "convert", "format", "summarize"} <= kinds
    assert all(p.assertions for p in prompts)
    rubric = [p for p in prompts if any(a.type == "llm-rubric" for a in p.assertions)]
    assert 3 <= len(rubric) <= 8
    # Short prompts: the demo model answers the suite in a few minutes on 2 cores.
    assert max(len(p.messages[-1]["content"]) for p in prompts) < 400


def test_every_deterministic_expectation_is_checked_by_hand() -> None:
    answers = ANSWERS["answers"]
    prompts = load_suite("tasks")
    assert {p.name for p in prompts} == set(answers)
    for p in prompts:
        rules = [a for a in p.assertions if not a.judged]
        assert rules, p.name
        good, bad = answers[p.name]["good"], answers[p.name]["bad"]
        for a in rules:
            result = grade(good, a)
            assert result.passed, f"{p.name}: correct answer fails {a.type}: {result.reason}"
        assert not all(grade(bad, a).passed for a in rules), f"{p.name}: wrong answer passes"
