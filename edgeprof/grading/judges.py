"""Judges: a registered backend grades what rules cannot (`llm-rubric`, pairwise comparison).

A judge's questions are a prompt suite of their own (suite `edgeprof-judge`), profiled by the
ordinary runner: its tokens, cost, latency and energy are a run of their own, and its replies
are that run's stored answers. Each question asks for a JSON verdict held to a schema
(`verdicts.py`); a reply that is not one is stored as a judge failure, never a pass. Judging
again with the same judge target replaces that judge's earlier grades.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeprof.errors import UsageError
from edgeprof.grading.grade_runs import JUDGE_SUITE, answers_of, run_suite
from edgeprof.grading.grades import PAIRWISE_INDEX, Grade
from edgeprof.grading.records import load_expectations, replace_grades
from edgeprof.grading.verdicts import (
    OUTCOME_SCORE,
    PAIR_SCHEMA,
    VERDICT_SCHEMA,
    agreement,
    pair_messages,
    pair_outcome,
    parse_pair,
    parse_verdict,
    rubric_messages,
)
from edgeprof.measure.prompt import prompt_id
from edgeprof.store.db import Store
from edgeprof.store.rows import RequestRow

JUDGE_MAX_TOKENS = 200


@dataclass(frozen=True)
class JudgeSpec:
    backend: str
    model: str
    settings: Mapping[str, Any] = field(default_factory=dict)  # base_url, api_key_env

    @property
    def label(self) -> str:
        return f"{self.backend}:{Path(self.model).name}"


def parse_judge(spec: str, settings: Mapping[str, Any] | None = None) -> JudgeSpec:
    """`BACKEND:MODEL` (openai:gpt-4o-mini with --base-url) or a .gguf path (llama.cpp)."""
    from edgeprof.backends import backend_names

    if spec.lower().endswith(".gguf"):
        return JudgeSpec("llamacpp", spec, {})
    backend, sep, model = spec.partition(":")
    if not sep or not model or backend not in backend_names():
        raise UsageError(
            f"`judge` {spec!r}: give BACKEND:MODEL (one of {', '.join(backend_names())}, e.g. "
            "openai:gpt-4o-mini with `base_url`) or a .gguf file"
        )
    remote = backend not in ("llamacpp", "onnx")
    if not remote:
        return JudgeSpec(backend, model, {})
    # A judge over HTTP is priced per token like a cloud, even on a loopback server (where a
    # target would be a device one): its bill is what grading costs.
    given = dict(settings or {})
    if "on_device" in _setting_names(backend):
        given = {"on_device": False, **given}
    return JudgeSpec(backend, model, given)


def _setting_names(backend: str) -> set[str]:
    import dataclasses

    from edgeprof.backends import backend_class

    settings = backend_class(backend).Settings
    return (
        {f.name for f in dataclasses.fields(settings)}
        if dataclasses.is_dataclass(settings)
        else set()
    )


@dataclass(frozen=True)
class Question:
    """One judge question and the grade its reply becomes."""

    messages: tuple[dict[str, str], ...]
    schema: Mapping[str, Any]

    @property
    def id(self) -> str:
        return prompt_id(self.messages)


@dataclass(frozen=True)
class JudgeResult:
    judge_run_id: str
    grades: int
    failures: int


def _rubric_questions(store: Store, run_id: str) -> list[tuple[RequestRow, int, Question]]:
    suite = run_suite(store, run_id)
    expectations = load_expectations(store, suite)
    prompts = _prompt_messages(store, {e for e in expectations})
    out = []
    for r in answers_of(store, run_id):
        exp = expectations.get(str(r["prompt_id"]))
        if exp is None:
            continue
        for i, a in enumerate(exp.assertions):
            if a.judged:
                messages = rubric_messages(
                    prompts[exp.prompt_id], str(r["output_text"] or ""), str(a.value),
                    exp.reference,
                )  # fmt: skip
                out.append((r, i, Question(messages, VERDICT_SCHEMA)))
    return out


def _prompt_messages(store: Store, ids: set[str]) -> dict[str, list[dict[str, str]]]:
    out = {}
    for pid in ids:
        row = store.db.execute("SELECT text FROM prompts WHERE id = ?", [pid]).fetchone()
        out[pid] = json.loads(row[0]) if row else []
    return out


def _run_judge(
    judge: JudgeSpec,
    questions: Sequence[Question],
    db: Path,
    threads: int | None,
    on_progress: Callable[[Any], None] | None = None,
) -> str:
    """Ask every distinct question once, as a run of the judge's own; its run id."""
    from edgeprof.measure.runner import RunConfig, profile

    unique = {q.id: q for q in questions}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{JUDGE_SUITE}.jsonl"
        with path.open("w", encoding="utf-8") as f:
            for q in unique.values():
                line = {"messages": list(q.messages), "response_schema": dict(q.schema)}
                f.write(json.dumps(line, ensure_ascii=False) + "\n")
        config = RunConfig(
            backend=judge.backend,
            model=judge.model,
            prompts=str(path),
            repetitions=1,
            warmup=0,
            max_tokens=JUDGE_MAX_TOKENS,
            threads=threads,
            idle_seconds=0.0,
            db=db,
            label=f"judge {judge.label}",
            settings=dict(judge.settings),
        )
        return profile(config, on_progress=on_progress)


def _replies(store: Store, judge_run_id: str) -> dict[str, str | None]:
    """Each question's reply by its id; None where the judge's request failed."""
    return {
        str(r["prompt_id"]): (None if r["error"] else str(r["output_text"] or ""))
        for r in store.requests(judge_run_id)
    }


def _earlier_runs_of(store: Store, judge: JudgeSpec, keep: str) -> list[str]:
    rows = store.db.execute(
        "SELECT id FROM runs WHERE prompt_suite = ? AND label = ? AND id != ?",
        [JUDGE_SUITE, f"judge {judge.label}", keep],
    ).fetchall()
    return [str(r[0]) for r in rows]


def judge_rubrics(
    store: Store,
    run_ids: Sequence[str],
    judge: JudgeSpec,
    threads: int | None = None,
    on_progress: Callable[[Any], None] | None = None,
) -> JudgeResult | None:
    """Grade the llm-rubric checks of these runs' answers with `judge`; None if they have none."""
    items = [(run_id, *item) for run_id in run_ids for item in _rubric_questions(store, run_id)]
    if not items:
        return None
    judge_run = _run_judge(judge, [q for *_, q in items], store.path, threads, on_progress)
    replies = _replies(store, judge_run)
    grades = []
    for run_id, r, index, q in items:
        reply = replies.get(q.id)
        verdict = parse_verdict(reply) if reply is not None else None
        if verdict is None:
            why = "judge failed: the judge's request failed" if reply is None else (
                f"judge failed: reply is not a valid JSON verdict: {reply[:80]!r}"
            )  # fmt: skip
            passed, score, reason, failed = False, 0.0, why, True
        else:
            passed, score, reason, failed = verdict.passed, verdict.score, verdict.reason, False
        grades.append(
            Grade(
                run_id, str(r["id"]), str(r["prompt_id"]), index, "llm-rubric", judge_run,
                passed, score, reason[:500], judge_failed=failed,
            )
        )  # fmt: skip
    request_ids = sorted({str(r["id"]) for _, r, _, _ in items})
    replace_grades(
        store, request_ids, [judge_run, *_earlier_runs_of(store, judge, judge_run)], grades
    )
    return JudgeResult(judge_run, len(grades), sum(g.judge_failed for g in grades))


def judge_pairwise(
    store: Store,
    run_id: str,
    against: str,
    judge: JudgeSpec,
    threads: int | None = None,
    on_progress: Callable[[Any], None] | None = None,
) -> JudgeResult:
    """Compare each answer of `run_id` with `against`'s answer to the same prompt, in both
    orders; a verdict that flips with the order is a tie. Stored as assertion index -1."""
    theirs = {str(r["prompt_id"]): r for r in answers_of(store, against)}
    pairs = [(r, theirs[str(r["prompt_id"])]) for r in answers_of(store, run_id)
             if str(r["prompt_id"]) in theirs]  # fmt: skip
    if not pairs:
        raise UsageError(
            f"runs {run_id[-8:]} and {against[-8:]} share no prompt; compare runs of one suite"
        )
    prompts = _prompt_messages(store, {str(r["prompt_id"]) for r, _ in pairs})
    asked = []
    for mine, other in pairs:
        q = prompts[str(mine["prompt_id"])]
        a, b = str(mine["output_text"] or ""), str(other["output_text"] or "")
        asked.append((Question(pair_messages(q, a, b), PAIR_SCHEMA),
                      Question(pair_messages(q, b, a), PAIR_SCHEMA)))  # fmt: skip
    questions = [q for pair in asked for q in pair]
    judge_run = _run_judge(judge, questions, store.path, threads, on_progress)
    replies = _replies(store, judge_run)
    grades = []
    for (mine, other), (first, second) in zip(pairs, asked, strict=True):
        r1, r2 = replies.get(first.id), replies.get(second.id)
        outcome = pair_outcome(
            parse_pair(r1) if r1 is not None else None, parse_pair(r2) if r2 is not None else None
        )
        reason = f"{outcome} against run {against[-8:]}" if outcome else "judge failed"
        grades.append(
            Grade(
                run_id, str(mine["id"]), str(mine["prompt_id"]), PAIRWISE_INDEX, "pairwise",
                judge_run, outcome == "win", OUTCOME_SCORE.get(outcome or "", 0.0), reason,
                judge_failed=outcome is None, against_request_id=str(other["id"]),
            )
        )  # fmt: skip
    request_ids = sorted({str(m["id"]) for m, _ in pairs})
    graders = [judge_run, *_earlier_runs_of(store, judge, judge_run)]
    replace_grades(store, request_ids, graders, grades, pairwise=True)
    return JudgeResult(judge_run, len(grades), sum(g.judge_failed for g in grades))


@dataclass(frozen=True)
class Agreement:
    judge_a: str  # judge run ids
    judge_b: str
    n: int  # checks both judged (judge failures aside)
    share: float | None  # identical verdicts
    kappa: float | None  # Cohen's κ


def judge_agreement(store: Store, judge_a: str, judge_b: str) -> Agreement:
    """How often two judges' runs gave the same pass/fail on the same checks."""
    rows = store.db.execute(
        "SELECT a.passed, b.passed FROM grades a JOIN grades b "
        "ON a.request_id = b.request_id AND a.assertion_index = b.assertion_index "
        "AND a.against_request_id = b.against_request_id "
        "WHERE a.grader = ? AND b.grader = ? AND NOT a.judge_failed AND NOT b.judge_failed "
        "ORDER BY a.request_id, a.assertion_index",
        [judge_a, judge_b],
    ).fetchall()
    share, kappa = agreement([bool(r[0]) for r in rows], [bool(r[1]) for r in rows])
    return Agreement(judge_a, judge_b, len(rows), share, kappa)
