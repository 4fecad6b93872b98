"""Task quality in the HTML report: pass rates with their intervals per run, and a chart of
pass rate against J per request (and $/day where a comparison priced the targets)."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from typing import Any

from edgeprof.analysis.summary import RunSummary
from edgeprof.grading.rates import TaskQuality
from edgeprof.store.db import Store


def task_quality_section(store: Store, summaries: Sequence[RunSummary], compare: Any) -> list[str]:
    """`<h2>Task quality</h2>`, its table and chart; [] when no run was graded."""
    from edgeprof.grading.grade_runs import quality_of_runs

    quality = quality_of_runs(store, [s.run_id for s in summaries])
    graded = [(s, quality[s.run_id]) for s in summaries if quality[s.run_id].pass_rate]
    if not graded:
        return []
    parts = ["<h2>Task quality</h2>", _table(graded),
             '<p class="meta">Pass rate: the share of the suite\'s prompts whose answers pass '
             "all their checks, with its 95% Wilson interval; n counts prompts, not repeated "
             "requests (docs/quality.md).</p>"]  # fmt: skip
    uri = _chart(graded, _usd_per_day(compare))
    if uri:
        alt = "pass rate against J per request and $ per day, per target"
        parts.append(f'<figure><img src="{uri}" alt="{alt}"><figcaption>{alt}; bars: 95% '
                     "intervals</figcaption></figure>")  # fmt: skip
    return parts


def _table(graded: Sequence[tuple[RunSummary, TaskQuality]]) -> str:
    head = "".join(f"<th>{h}</th>" for h in ("run", "target", "suite", "pass rate [95%]", "n",
                                             "by check", "judge failures", "unjudged"))  # fmt: skip
    rows = []
    for s, q in graded:
        r = q.pass_rate
        assert r is not None
        by = ", ".join(f"{t} {x.rate:.0%}" for t, x in q.per_type.items())
        cells = [s.run_id[:10], str(s.target or ""), q.suite,
                 f"{r.rate:.0%} [{r.low:.0%}–{r.high:.0%}]", str(r.n), by,
                 str(q.judge_failures), str(q.unjudged)]  # fmt: skip
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return f'<div class="scroll"><table><tr>{head}</tr>{"".join(rows)}</table></div>'


def _usd_per_day(compare: Any) -> dict[str, float]:
    """Run id -> $/day from a Comparison (its pairs), where one was given."""
    out: dict[str, float] = {}
    if compare is None or not hasattr(compare, "pairs"):
        return out
    runs = {d.name: d.run_id for d in compare.devices}
    runs.update({c.name: c.run_id for c in compare.clouds if c.run_id})
    for p in compare.pairs:
        if p.device in runs:
            out[runs[p.device]] = p.result.device_cost_per_day_usd
        if p.cloud in runs:
            out[str(runs[p.cloud])] = p.result.cloud_cost_per_day_usd
    return out


def _chart(graded: Sequence[tuple[RunSummary, TaskQuality]], usd: Mapping[str, float]) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    axes_data = [("J per request", {s.run_id: _j_per_request(s) for s, _ in graded})]
    if usd:
        axes_data.append(("$ per day", dict(usd)))
    fig = Figure(figsize=(5 * len(axes_data), 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    drawn = False
    for i, (label, xs) in enumerate(axes_data):
        ax = fig.add_subplot(1, len(axes_data), i + 1)
        for s, q in graded:
            x, r = xs.get(s.run_id), q.pass_rate
            if x is None or r is None:
                continue
            drawn = True
            err = [[(r.rate - r.low) * 100], [(r.high - r.rate) * 100]]
            ax.errorbar([x], [r.rate * 100], yerr=err, fmt="o", capsize=3)
            ax.annotate(str(s.target or s.run_id[:8])[:28], (x, r.rate * 100), fontsize=7,
                        xytext=(4, 4), textcoords="offset points")  # fmt: skip
        ax.set_xlabel(label)
        ax.set_ylabel("pass rate, %")
        ax.set_ylim(0, 105)
        ax.grid(alpha=0.3)
    if not drawn:
        return ""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _j_per_request(s: RunSummary) -> float | None:
    if s.j_per_output_token is None or s.mean_output_tokens is None:
        return None
    return float(s.j_per_output_token * s.mean_output_tokens)
