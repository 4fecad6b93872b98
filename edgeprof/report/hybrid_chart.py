"""The hybrid frontier: $/day against pass rate for every routing policy and every threshold
a tuned policy tried (`edgeprof route --plot`, `decide --hybrid --plot`, the HTML report).

Small grey dots are the sweep (each candidate rule scored on every prompt: in-sample), the
large markers the policies as `route` reports them (held out where a rule was chosen), the
dashed line the frontier: no point both passes more and costs less than one on it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeprof.report.plots import pareto_front


@dataclass(frozen=True)
class FrontierPoint:
    label: str
    pass_rate: float
    usd_per_day: float
    held_out: bool


@dataclass(frozen=True)
class FrontierChart:
    title: str
    policies: tuple[FrontierPoint, ...]
    sweep: tuple[FrontierPoint, ...]
    frontier: tuple[FrontierPoint, ...]  # in order of cost
    min_pass_rate: float | None


def frontier_chart(report: Any, min_pass_rate: float | None = None) -> FrontierChart:
    """The chart's data from a `routing.replay.RouteReport`. Pure."""
    policies = tuple(
        FrontierPoint(p.label, p.pass_rate.rate, p.cost.usd_per_day, p.held_out)
        for p in report.policies
    )
    sweep = tuple(
        FrontierPoint(f"{s.policy}: {s.variant} {s.rule}", s.pass_rate, s.usd_per_day, False)
        for s in report.sweep
    )
    everything = [*policies, *sweep]
    # cost on x (lower is better), pass rate on y (higher is better)
    front = pareto_front([(p.usd_per_day, p.pass_rate) for p in everything], maximize_y=True)
    title = (
        f"{report.device_name} → {report.cloud_name}: {report.suite}, "
        f"{report.requests_per_day:,.0f} requests/day"
    )
    return FrontierChart(title, policies, sweep, tuple(everything[i] for i in front), min_pass_rate)


def frontier_figure(chart: FrontierChart, width_in: float = 9.0, height_in: float = 6.0) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    from edgeprof.report.plots import _tex_safe

    fig = MplFigure(figsize=(width_in, height_in), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    if chart.sweep:
        ax.scatter([p.pass_rate for p in chart.sweep], [p.usd_per_day for p in chart.sweep],
                   s=10, color="lightgray", label="every threshold tried (in-sample)")  # fmt: skip
    for i, p in enumerate(chart.policies):
        marker = "o" if p.held_out else "s"
        ax.scatter([p.pass_rate], [p.usd_per_day], s=70, marker=marker, color=f"C{i % 10}",
                   edgecolors="black", zorder=3, label=_tex_safe(p.label))  # fmt: skip
    if len(chart.frontier) > 1:
        ax.plot([p.pass_rate for p in chart.frontier], [p.usd_per_day for p in chart.frontier],
                color="gray", ls="--", lw=1, label="frontier", zorder=2)  # fmt: skip
    if chart.min_pass_rate is not None:
        ax.axvline(chart.min_pass_rate, color="red", ls=":", lw=1,
                   label=f"floor {chart.min_pass_rate:.0%}")  # fmt: skip
    ax.set_xlabel("pass rate (● held out, ■ scored on every prompt)")
    ax.set_ylabel("$ per day")
    ax.xaxis.set_major_formatter(_percent)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=7)
    ax.set_title(_tex_safe(chart.title), fontsize=10)
    return fig


def _percent(x: float, _pos: Any) -> str:
    return f"{x:.0%}"


def plot_frontier(chart: FrontierChart, path: Path | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frontier_figure(chart).savefig(path, dpi=110)
    return path
