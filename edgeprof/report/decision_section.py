"""The decision section at the top of `decide --html` and `compare --html`: what a product team
reads first.

In order: the verdict paragraph, the cost-against-volume chart (`edgeprof.report.cost_chart`),
the break-even matrix (device target × cloud), each target's cost and latency at the user's
volume, the inputs, formatted. Every value goes through `edgeprof.report.formatting`; every
string is escaped. Decision rows are read through `_cell` alone, so that a row may be a dict
or a dataclass with the same names.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edgeprof.report import formatting as f
from edgeprof.report.formatting import DASH
from edgeprof.report.images import img, png_uri
from edgeprof.report.tables import Column, name, table

if TYPE_CHECKING:
    from edgeprof.decision.compare import Comparison, Figure, Latency


# The wide chart on a laptop, the narrow one on a phone (the tables' cards start there too).
CSS = """
.narrow-only{display:none}
@media (max-width:720px){.wide-only{display:none}.narrow-only{display:block}}
"""


@dataclass(frozen=True)
class DecisionView:
    """What the section shows. `rows` are decide's decision rows (computed from the
    comparison when empty); `names` are the short names the verdict uses."""

    comparison: Comparison
    verdict: str | None = None
    names: Mapping[str, str] = field(default_factory=dict)
    rows: Sequence[Any] = ()
    max_ttft_s: float | None = None
    notes: Sequence[str] | None = None  # decide's (probe and comparison); None: the comparison's
    # decide's task quality (edgeprof.decision.task_quality.TaskQualityReport), when graded
    task_quality: Any = None
    # decide --hybrid: each pair's best cascade (edgeprof.decision.hybrid.HybridTarget)
    hybrids: Sequence[Any] = ()
    min_pass_rate: float | None = None


def _cell(row: Any, key: str) -> Any:
    """One figure of a decision row: a dict today, a dataclass with the same names later."""
    return row[key] if isinstance(row, Mapping) else getattr(row, key)


def _rows(view: DecisionView) -> Sequence[Any]:
    if view.rows:
        return view.rows
    from edgeprof.decision.verdict import decision_rows

    return decision_rows(view.comparison, view.max_ttft_s)


def _names(view: DecisionView) -> dict[str, str]:
    """Short names: the verdict's where given, else a cloud's name without its run id."""
    names = {t.name: t.name.split(" [")[0] for t in view.comparison.clouds}
    return {**names, **view.names}


def _first_by(rows: Sequence[Any], side: str) -> dict[str, Any]:
    """The first row of each device (or cloud) target: its own figures repeat in every pair."""
    out: dict[str, Any] = {}
    for row in rows:
        out.setdefault(_cell(row, side), row)
    return out


# -- the break-even matrix -----------------------------------------------------------------


def _payback(row: Any, life_months: float) -> str:
    months = _cell(row, "payback_months")
    if months is None:
        return ""
    past = f", past its {f.count(life_months)}-month life" if months > life_months else ""
    return f'<span class="sub">payback {f.num(months)} months{past}</span>'


def _break_even_cell(row: Any, life_months: float) -> str:
    """Where the device starts to save against this cloud, in words a cell can hold; the
    pair's whole verdict is its hover text."""
    be, status = _cell(row, "break_even_requests_per_day"), _cell(row, "break_even_status")
    if _cell(row, "deployment") == "user-device":
        text = 'from request 1<span class="sub">the users pay the energy</span>'
    elif status == "energy_exceeds_cloud":
        text = 'never<span class="sub">energy alone costs more</span>'
    elif status == "exceeds_capacity":
        text = f'over capacity<span class="sub">needs {f.count(be)}/day</span>'
    elif not be:
        text = f"from request 1{_payback(row, life_months)}"
    else:
        text = f"{f.count(be)}/day{_payback(row, life_months)}"
    title = html.escape(str(_cell(row, "verdict") or ""))
    return f'<span title="{title}">{text}</span>'


def matrix_html(view: DecisionView) -> str:
    """Device targets down, clouds across: the break-even volume and the payback at the
    user's volume; then one device's capacity and the devices the volume needs."""
    rows, names = _rows(view), _names(view)
    devices = _first_by(rows, "device")
    clouds = list(_first_by(rows, "cloud"))
    by_pair = {(_cell(r, "device"), _cell(r, "cloud")): r for r in rows}
    columns = [Column("device target", text=True)]
    columns += [Column(f.short_label(names.get(c, c).split(":")[-1], 18), title=c) for c in clouds]
    columns += [Column("capacity/device"), Column("devices needed")]
    life_months = view.comparison.costs.lifetime_years * 12
    body = []
    for d, first in devices.items():
        cells = [name(d, names.get(d))]
        cells += [
            _break_even_cell(by_pair[(d, c)], life_months) if (d, c) in by_pair else DASH
            for c in clouds
        ]
        cells += [
            f"{f.count(_cell(first, 'device_capacity_requests_per_day'))}/day",
            f.count(_cell(first, "devices_needed")),
        ]
        body.append(cells)
    clouds_line = ", ".join(name(c, names.get(c), 40) for c in clouds)
    return (
        "<h3>Break-even against each cloud</h3>"
        '<p class="meta">Requests/day above which the device target costs less than the cloud '
        f"({clouds_line}), and the payback at your volume; hover a cell for the whole "
        "sentence.</p>" + table(columns, body, "break-even")
    )


# -- cost and latency per target -----------------------------------------------------------

# Each target's columns at the user's volume; where the suite's answers were graded, its pass
# rate and what a passing answer costs come after $/day (hybrid policies would add rows).
QUALITY_COLUMNS = (Column("pass rate [95%]"), Column("$ per 1,000 passing answers"))
TARGET_COLUMNS = (
    Column("target", text=True),
    Column("$/day [95% interval]"),
    Column("$ per 1,000 requests"),
    Column("TTFT p50"),
    Column("TTFT p99"),
    Column("answer p50"),
    Column("answer p99"),
    Column("decode tok/s"),
)


def _target_columns(graded: bool) -> tuple[Column, ...]:
    if not graded:
        return TARGET_COLUMNS
    return (*TARGET_COLUMNS[:3], *QUALITY_COLUMNS, *TARGET_COLUMNS[3:])


def _latency(view: DecisionView, side: str, key: str) -> Latency | None:
    c = view.comparison
    targets = c.devices if side == "device" else c.clouds
    return next((t.latency for t in targets if t.name == key), None)


def _cost_cells(row: Any, side: str) -> list[str]:
    if side == "device" and _cell(row, "deployment") == "user-device":
        energy = _cell(row, "device_energy_net_j_per_request")
        user = f.usd_compact(1000 * _cell(row, "user_energy_cost_per_request_usd"))
        users = f"users: {f.sig(energy)} J a request, {user} per 1,000"
        return [f'$0 for you<span class="sub">{users}</span>', "$0"]
    day = f.per_day(_cell(row, f"{side}_cost_per_day_usd"))
    ci = _cell(row, "device_cost_per_day_ci_usd") if side == "device" else None
    if ci:
        day += f'<span class="sub">[{f.usd_range(*ci)}]</span>'
    elif side == "cloud":
        day += '<span class="sub">list price</span>'
    per_request = _cell(row, f"{side}_cost_per_request_usd")
    return [day, f.usd_compact(None if per_request is None else 1000 * per_request)]


def _latency_cells(lat: Latency | None) -> list[str]:
    if lat is None:
        return [f'{DASH}<span class="sub">not measured</span>', DASH, DASH, DASH, DASH]
    return [
        f.seconds(lat.ttft_p50_s),
        f.seconds(lat.ttft_p99_s),
        f.seconds(lat.e2e_p50_s),
        f.seconds(lat.e2e_p99_s),
        f.num(lat.decode_tps),
    ]


def _task_quality(view: DecisionView) -> dict[str, Any]:
    """Target name (as the comparison names it) -> its `TargetTaskQuality`, where one was
    graded; {} when no target was."""
    report = view.task_quality
    if report is None or not any(t.pass_rate for t in report.targets):
        return {}
    c = view.comparison
    by_run = {t.run_id: t for t in report.targets if t.run_id}
    out = {t.name: t for t in report.targets}
    targets: list[Any] = [*c.devices, *c.clouds]
    for target in targets:
        found = by_run.get(getattr(target, "run_id", None) or "")
        if found is not None:
            out[target.name] = found
    return out


def _quality_cells(q: Any) -> list[str]:
    if q is None or q.pass_rate is None:
        return [f'{DASH}<span class="sub">not graded</span>', DASH]
    r = q.pass_rate
    rate = f'{f.pct(r.rate)}<span class="sub">[{f.pct(r.low)}–{f.pct(r.high)}] n={r.n}</span>'
    usd = q.usd_per_passing_answer
    return [rate, f.usd_compact(None if usd is None else 1000 * usd)]


def targets_html(view: DecisionView) -> str:
    rows, names = _rows(view), _names(view)
    quality = _task_quality(view)
    body, attrs = [], []
    for side in ("device", "cloud"):
        for key, row in _first_by(rows, side).items():
            meets = _cell(row, f"{side}_meets_max_ttft")
            late = ' <span class="sub">slower than the TTFT limit</span>' if meets is False else ""
            cells = [f"{side}: {name(key, names.get(key))}{late}"]
            cells += _cost_cells(row, side)
            cells += _quality_cells(quality.get(key)) if quality else []
            cells += _latency_cells(_latency(view, side, key))
            body.append(cells)
            attrs.append(f'data-side="{side}"')
    volume = f.count(view.comparison.workload.requests_per_day)
    return (
        f"<h3>Cost and latency at {volume} requests/day</h3>"
        '<p class="meta">TTFT: time to the first token; answer: the whole answer; p50 the '
        "median, p99 the slowest 1 % of the requests measured.</p>"
        + table(_target_columns(bool(quality)), body, "targets", attrs)
    )


# -- inputs --------------------------------------------------------------------------------


def inputs_html(figures: Sequence[Figure]) -> str:
    columns = [Column("input", text=True), Column("value"), Column("kind", text=True),
               Column("source", text=True, long=True)]  # fmt: skip
    body = [
        [html.escape(x.name), html.escape(f.figure_value(x.value, x.unit)),
         html.escape(x.provenance), html.escape(x.source)]
        for x in figures
    ]  # fmt: skip
    return "<h3>Inputs (measured, estimated or assumed)</h3>" + table(columns, body, "assumptions")


# -- the section ---------------------------------------------------------------------------


def hybrid_html(view: DecisionView) -> str:
    """Each device × cloud pair's cascades: the frontier chart, and the best cascade's line."""
    if not view.hybrids:
        return ""
    from edgeprof.decision.hybrid import curve_text, hybrid_sentence
    from edgeprof.report.hybrid_chart import frontier_chart, frontier_figure

    parts = ["<h3>Hybrid: device first, cloud when unsure</h3>"]
    for h in view.hybrids:
        parts.append(f"<p>{html.escape(hybrid_sentence(h, view.min_pass_rate))}</p>")
        parts.append(f'<p class="meta">{html.escape(curve_text(h))}</p>')
        chart = frontier_chart(h.report, view.min_pass_rate)
        caption = (
            "$ per day against pass rate: large markers are the policies (● held out), grey "
            "dots every threshold a tuned policy tried (scored on every prompt), the dashed "
            "line the frontier; " + h.report.protocol_text
        )
        parts.append(img(png_uri(frontier_figure(chart), dpi=90), f"Hybrid frontier, {h.name}",
                         caption))  # fmt: skip
    return "\n".join(parts)


def chart_html(view: DecisionView) -> str:
    from edgeprof.report.cost_chart import cost_chart, cost_figure

    chart = cost_chart(view.comparison, _names(view))
    if not chart.curves:
        return ""
    alt = "Cost per day against requests per day for each device target and each cloud"
    caption = (
        "Each device target a solid line (shaded: its 95% interval where the runs have one), "
        "each cloud a dashed line; ● marks a break-even, the dash-dotted line your volume and "
        "the dotted lines one device's capacity (past it, one more device is bought)."
    )
    # A phone gets its own copy, narrow and tall, rather than a wide one shrunk past reading.
    wide = img(png_uri(cost_figure(chart), dpi=100), alt, caption)
    narrow = img(png_uri(cost_figure(chart, 4.6, 7.0), dpi=100), alt, caption)
    return f'<div class="wide-only">{wide}</div><div class="narrow-only">{narrow}</div>'


def decision_section(view: DecisionView) -> str:
    """The section's HTML, verdict first."""
    c = view.comparison
    w = c.workload
    parts = ['<section id="decision">', "<h2>Decision: device or cloud?</h2>"]
    if view.verdict:
        parts.append(
            f'<div class="verdict decision"><b>Verdict.</b> {html.escape(view.verdict)}</div>'
        )
    parts.append(
        f'<p class="meta">At {f.count(w.requests_per_day)} requests/day of '
        f"{f.count(w.input_tokens)} input and {f.count(w.output_tokens)} output tokens each, "
        f"{html.escape(c.costs.deployment)} deployment.</p>"
    )
    # No pair (a quality floor left every device target out): no chart, no matrix.
    if c.pairs:
        parts.append(chart_html(view))
        # The cost-quality frontier (issues 20 and 21) goes here, beside the cost chart.
        parts += [matrix_html(view), targets_html(view)]
    parts.append(hybrid_html(view))
    parts.append(inputs_html(c.assumptions))
    notes = c.notes if view.notes is None else view.notes
    parts += [f'<p class="meta">{html.escape(str(n))}</p>' for n in notes]
    parts.append("</section>")
    return "\n".join(p for p in parts if p)


__all__ = ["CSS", "TARGET_COLUMNS", "DecisionView", "decision_section"]
