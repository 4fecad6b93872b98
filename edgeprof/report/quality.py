"""Task quality in the terminal: pass rates with their intervals per run, and failing answers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.table import Table

from edgeprof.grading.rates import PassRate, TaskQuality


def rate_text(r: PassRate | None) -> str:
    return "–" if r is None else f"{r.rate:.0%} [{r.low:.0%}–{r.high:.0%}]"


def quality_table(summaries: Sequence[Any], quality: Mapping[str, TaskQuality]) -> Table | None:
    """One row per graded run: pass rate [95% Wilson], n prompts, per-type rates, judging."""
    graded = [(s, quality[s.run_id]) for s in summaries if quality.get(s.run_id)]
    graded = [(s, q) for s, q in graded if q.pass_rate is not None]
    if not graded:
        return None
    table = Table(title="task quality (docs/quality.md)", title_justify="left")
    for name in ("run", "model", "suite", "pass rate [95%]", "n", "by check", "judge"):
        table.add_column(name, justify="right" if name == "n" else "left")
    for s, q in graded:
        per_type = ", ".join(f"{t} {r.rate:.0%}" for t, r in q.per_type.items())
        table.add_row(
            s.run_id[-8:], str(s.target), q.suite,
            rate_text(q.pass_rate), str(q.pass_rate.n if q.pass_rate else 0), per_type,
            _judging(q),
        )  # fmt: skip
    return table


def _judging(q: TaskQuality) -> str:
    parts = []
    if q.judge_failures:
        parts.append(f"{q.judge_failures} judge failures")
    if q.unjudged:
        parts.append(f"{q.unjudged} llm-rubric unjudged (grade --judge)")
    if q.pairwise:
        parts.append("pairwise " + "/".join(f"{q.pairwise.get(k, 0)} {k}" for k in
                                            ("win", "tie", "loss")))  # fmt: skip
    return "; ".join(parts) or "–"


def failures_table(rows: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(title="failing answers", title_justify="left")
    for name in ("run", "prompt", "check", "why", "answer"):
        table.add_column(name)
    for r in rows:
        why = str(r["reason"]) + (" (judge failed)" if r["judge_failed"] else "")
        table.add_row(str(r["run_id"])[-8:], str(r["prompt"] or ""), str(r["assertion"]), why,
                      str(r["answer"]))  # fmt: skip
    return table
