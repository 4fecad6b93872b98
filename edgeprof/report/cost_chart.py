"""The picture of a decision: $/day against requests/day for every target of a comparison.

`cost_chart` gathers the numbers (pure, tested directly); `cost_figure` draws them with
matplotlib's Agg canvas: a log volume axis, one line per target, the 95 % band of a device
target whose speeds have intervals, each break-even marked and labelled, the user's volume as
a line and one device's capacity as a wall (past it, the curve steps up: one more device).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edgeprof.report.formatting import format_count, short_label

if TYPE_CHECKING:
    from edgeprof.decision.compare import Comparison, DeviceTarget
    from edgeprof.decision.economics import BreakEven

N_POINTS = 240


@dataclass(frozen=True)
class Curve:
    name: str  # the full target name (the comparison's key)
    label: str  # as the legend says it
    side: str  # "device" | "cloud"
    cost_usd_per_day: tuple[float, ...]  # at each of CostChart.volumes
    # the device's $/day at the slow and the fast end of its speeds' 95 % intervals
    band_usd_per_day: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    capacity_requests_per_day: float | None = None  # one device; None for a cloud


@dataclass(frozen=True)
class Crossing:
    device: str
    cloud: str
    requests_per_day: float
    cost_usd_per_day: float


@dataclass(frozen=True)
class CostChart:
    volumes: tuple[float, ...]  # requests/day, log-spaced
    curves: tuple[Curve, ...]
    crossings: tuple[Crossing, ...]
    requests_per_day: float  # the user's volume
    title: str


def _device_costs(res: BreakEven, xs: Sequence[float], owned_devices: int) -> tuple[float, ...]:
    from edgeprof.decision.economics import device_cost_per_day_usd

    return tuple(
        device_cost_per_day_usd(
            v,
            res.device_fixed_usd_per_device_day,
            res.device_energy_cost_per_request_usd,
            res.device_capacity_requests_per_day,
            deployment=res.deployment,
            owned_devices=owned_devices,
        )
        for v in xs
    )


def _band(
    c: Comparison, d: DeviceTarget, xs: Sequence[float]
) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """The curve at both ends of the device's measured intervals: slow speeds cost more
    energy and capacity, fast ones less; None with one repetition (no interval)."""
    from edgeprof.decision.economics import break_even

    if d.bounds is None:
        return None
    cloud = next(t for t in c.clouds if any(p.device == d.name for p in c.pairs))
    ends = [break_even(c.workload, b, c.costs, cloud.price) for b in d.bounds]
    slow, fast = (_device_costs(e, xs, c.costs.owned_devices) for e in ends)
    low = tuple(min(a, b) for a, b in zip(slow, fast, strict=True))
    high = tuple(max(a, b) for a, b in zip(slow, fast, strict=True))
    return low, high


def _volumes(c: Comparison) -> tuple[float, ...]:
    """From a tenth of the smallest mark to ten times the largest: every crossing, capacity
    and the user's volume inside the plot."""
    marks = [c.workload.requests_per_day]
    for p in c.pairs:
        res = p.result
        marks += [res.break_even_requests_per_day or 0, res.device_capacity_requests_per_day]
    positive = [m for m in marks if m and m > 0 and math.isfinite(m)]
    lo, hi = math.log10(min(positive) / 10), math.log10(max(positive) * 10)
    return tuple(10 ** (lo + (hi - lo) * i / (N_POINTS - 1)) for i in range(N_POINTS))


def cost_chart(c: Comparison, names: Mapping[str, str] | None = None) -> CostChart:
    """The chart's numbers. A user-device target has no curve: the operator pays nothing."""
    names = names or {}
    xs = _volumes(c)
    first: dict[str, BreakEven] = {}
    for p in c.pairs:
        first.setdefault(p.device, p.result)
    curves = []
    for d in c.devices:
        res = first.get(d.name)
        if res is None or res.deployment == "user-device":
            continue
        curves.append(
            Curve(d.name, names.get(d.name, d.name), "device",
                  _device_costs(res, xs, c.costs.owned_devices), _band(c, d, xs),
                  res.device_capacity_requests_per_day)
        )  # fmt: skip
    for t in c.clouds:
        per_request = next(
            p.result.cloud_cost_per_request_usd for p in c.pairs if p.cloud == t.name
        )
        curves.append(
            Curve(t.name, names.get(t.name, t.name), "cloud", tuple(v * per_request for v in xs))
        )
    crossings = tuple(
        Crossing(p.device, p.cloud, be, be * p.result.cloud_cost_per_request_usd)
        for p in c.pairs
        if (be := p.result.break_even_requests_per_day)
        and p.result.break_even_status == "ok"
        and p.result.deployment != "user-device"
    )
    w = c.workload
    title = (
        f"Cost per day against volume, {w.input_tokens:,.0f} input and {w.output_tokens:,.0f} "
        "output tokens a request"
    )
    return CostChart(xs, tuple(curves), crossings, w.requests_per_day, title)


def _tex_safe(text: str) -> str:
    """Matplotlib reads $...$ as math; names like "$5/$15 per 1M" must stay literal."""
    return text.replace("$", r"\$")


def _draw_curves(ax: Any, chart: CostChart) -> dict[str, str]:
    colors: dict[str, str] = {}
    for i, curve in enumerate(chart.curves):
        color = colors[curve.name] = f"C{i % 10}"
        device = curve.side == "device"
        label = _tex_safe(f"{curve.side}: {short_label(curve.label, 40)}")
        ax.plot(chart.volumes, curve.cost_usd_per_day, color=color, lw=2 if device else 1.5,
                ls="-" if device else "--", label=label)  # fmt: skip
        if curve.band_usd_per_day is not None:
            low, high = curve.band_usd_per_day
            ax.fill_between(chart.volumes, low, high, color=color, alpha=0.18, lw=0)
        if curve.capacity_requests_per_day is not None:
            cap = curve.capacity_requests_per_day
            ax.axvline(cap, color=color, ls=":", lw=1.5)
            ax.annotate(f"capacity {format_count(cap)}/day", (cap, 0.98), color=color,
                        xycoords=("data", "axes fraction"), rotation=90, ha="right", va="top",
                        fontsize=8)  # fmt: skip
    return colors


def crossing_labels(chart: CostChart, within: float = 1.15) -> list[tuple[float, float, str]]:
    """One label per cluster of break-evens (those within a factor `within` of the cluster's
    first): two device targets that cost about the same cross each cloud at about the same
    volume, and one label "9,031–9,036/day" reads where two overlap. (x, y, text) each."""
    clusters: list[list[Crossing]] = []
    for x in sorted(chart.crossings, key=lambda x: x.requests_per_day):
        if clusters and x.requests_per_day <= clusters[-1][0].requests_per_day * within:
            clusters[-1].append(x)
        else:
            clusters.append([x])
    labels = []
    for group in clusters:
        low, high = (format_count(group[i].requests_per_day) for i in (0, -1))
        text = f"{low}/day" if low == high else f"{low}–{high}/day"
        labels.append((group[0].requests_per_day, group[0].cost_usd_per_day, text))
    return labels


def _draw_crossings(ax: Any, chart: CostChart) -> None:
    for x in chart.crossings:
        ax.plot([x.requests_per_day], [x.cost_usd_per_day], "o", color="black", ms=5, zorder=5)
    # Neighbours alternate above and below the line, and step further out every other time.
    for k, (vx, vy, text) in enumerate(crossing_labels(chart)):
        dy = (8 + 10 * (k // 2 % 2)) * (1 if k % 2 == 0 else -1) - (0 if k % 2 == 0 else 6)
        ax.annotate(text, (vx, vy), textcoords="offset points", xytext=(4, dy), fontsize=8,
                    bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none",
                          "alpha": 0.8})  # fmt: skip


def cost_figure(chart: CostChart, width_in: float = 9.0, height_in: float = 6.0) -> Any:
    """The chart on an Agg canvas; the legend sits under the axes, where it hides no line.
    Below 6 inches wide (a phone's copy) the title wraps and the legend takes one column."""
    import textwrap

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(width_in, height_in), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    _draw_curves(ax, chart)
    _draw_crossings(ax, chart)
    r = chart.requests_per_day
    ax.axvline(r, color="black", ls="-.", lw=1.2, label=f"your volume: {format_count(r)}/day")
    ax.set_xscale("log")
    ax.set_yscale("log", nonpositive="mask")
    ax.set_xlabel("requests per day")
    ax.set_ylabel("cost per day (USD)")
    narrow = width_in < 6
    title = f"{chart.title} (● break-even; shaded: 95% interval)"
    ax.set_title(textwrap.fill(title, 52 if narrow else 110), fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=1 if narrow else 2,
              frameon=False)  # fmt: skip
    return fig


__all__ = ["CostChart", "Crossing", "Curve", "cost_chart", "cost_figure", "crossing_labels"]
