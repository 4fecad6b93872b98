"""The task-quality flags `compare` and `decide` share (`--min-pass-rate`, the suite), and how
their output states the pass rates (docs/quality.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from rich.table import Table

    from edgeprof.decision.task_quality import TaskQualityReport

MIN_PASS_RATE = typer.Option(
    None,
    "--min-pass-rate",
    help="Leave out targets, device and cloud alike, that pass fewer of the suite's checks "
    "than this share (0-1; graded runs of --prompts, docs/quality.md).",
)
SUITE = typer.Option(
    None,
    "--prompts",
    help="The suite whose grades count for --min-pass-rate and the pass-rate column "
    "(a bundled name such as tasks, or a file); default: any graded suite.",
)


def suite_name(spec: str | None) -> str | None:
    """The name a suite's runs record (runs.prompt_suite) for a --prompts value."""
    if spec is None:
        return None
    from edgeprof.measure.workload import load_suite

    return load_suite(spec)[0].suite


def task_table(report: TaskQualityReport) -> Table | None:
    """Each target's pass rate [95%], n, and $ and J per passing answer beside per request."""
    from rich.table import Table

    from edgeprof.report.formatting import DASH, j_per_token, usd_exact

    if not report.expectations:
        return None
    title = f"task quality on suite {report.suite or '(any)'}"
    if report.floor.min_pass_rate is not None:
        title += f", floor {report.floor.min_pass_rate:.0%}"
    table = Table(title=title, title_justify="left")
    for name in ("target", "pass rate [95%]", "n", "$/request", "$/passing answer",
                 "J/request", "J/passing answer", ""):  # fmt: skip
        table.add_column(name, justify="left" if name in ("target", "") else "right")
    left = dict(report.left_out)
    for t in report.targets:
        r = t.pass_rate
        rate = f"{r.rate:.0%} [{r.low:.0%}–{r.high:.0%}]" if r else "not measured"
        table.add_row(
            t.name, rate, str(r.n) if r else DASH, usd_exact(t.usd_per_request),
            usd_exact(t.usd_per_passing_answer), j_per_token(t.j_per_request),
            j_per_token(t.j_per_passing_answer), "left out" if t.name in left else "",
        )  # fmt: skip
    return table
