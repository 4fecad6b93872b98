"""Every chart edgeprof draws, with matplotlib's Agg canvas (never pyplot: no display, no
global state).

- `plot_run_timeline`: one run's power per sensor (and the non-overlapping total that energy
  figures come from) above output tokens per second, each request's window shaded;
  `timeline_data` gathers its numbers (tested directly).
- `plot_costs`: cost per day against requests per day for every target of a comparison.
- `plot_quality` (`quality_figure`): a sweep's KL divergence against J per output token and
  against decode tok/s, the Pareto front joined.
- `plot_concurrency`: a throughput curve: aggregate tok/s and p95 TTFT per concurrency level,
  J/token below.
- `plot_soak` (`soak_figure`): a soak over time in 60 s windows, one panel per quantity, with
  throttle events.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeprof.analysis.energy import build_series, interpolate, power_points, select_domains
from edgeprof.errors import ProfileDBError, UsageError
from edgeprof.power import POWER_METRICS
from edgeprof.store.db import Store

if TYPE_CHECKING:
    from edgeprof.decision.compare import Comparison

XY = list[tuple[float, float]]


@dataclass
class Timeline:
    title: str
    power_w: dict[str, XY] = field(default_factory=dict)  # "sensor (domain, method)" -> (t_s, W)
    total_w: XY = field(default_factory=list)
    total_label: str = ""
    tokens_per_s: XY = field(default_factory=list)  # a step function: value holds until next t
    windows: list[tuple[float, float, str]] = field(default_factory=list)  # t0_s, t1_s, kind


def aggregate_rate(intervals: list[tuple[float, float, float]]) -> XY:
    """Σ of per-interval rates as a step function; intervals are (t0, t1, count)."""
    events: list[tuple[float, float]] = []
    for t0, t1, n in intervals:
        if t1 > t0 and n > 0:
            rate = n / (t1 - t0)
            events += [(t0, rate), (t1, -rate)]
    events.sort()
    steps: XY = []
    level = 0.0
    for t, delta in events:
        level += delta
        level = 0.0 if abs(level) < 1e-9 else level
        if steps and steps[-1][0] == t:
            steps[-1] = (t, level)
        else:
            steps.append((t, level))
    return steps


def timeline_data(store: Store, run_id: str) -> Timeline:
    runs = store.runs([run_id])
    if not runs:
        raise ProfileDBError(f"no run {run_id!r} in {store.path}; list runs with `edgeprof report`")
    run = runs[0]
    series = build_series(store.sensors(run_id), list(store.samples(run_id, metrics=POWER_METRICS)))
    tl = Timeline(title=f"run {run_id[:12]} · {run.get('backend') or ''} {run.get('target') or ''}")
    chosen = select_domains(series)
    chosen_names = {s.sensor for s in chosen}
    for s in sorted(series, key=lambda s: s.sensor):
        # A sensor with both metrics: draw the one energy figures use (the counter).
        if s.metric == "power_w" and any(
            o.sensor == s.sensor and o.metric == "energy_j" for o in series
        ):
            continue
        pts = [(t / 1e9, w) for t, w in power_points(s)]
        if pts:
            tl.power_w[f"{s.sensor} ({s.domain}, {s.method})"] = pts
    if chosen:
        curves = [power_points(s) for s in chosen]
        grid = sorted({t for c in curves for t, _ in c})
        for t in grid:
            values = [interpolate(c, t) for c in curves]
            if all(v is not None for v in values):
                tl.total_w.append((t / 1e9, sum(v for v in values if v is not None)))
        method = "estimated" if any(s.method != "measured" for s in chosen) else "measured"
        tl.total_label = f"total: {' + '.join(sorted(chosen_names))} ({method})"
    intervals = []
    for r in store.requests(run_id):
        if r.get("t_start_ns") is None or r.get("t_end_ns") is None:
            continue
        t0, t1 = r["t_start_ns"] / 1e9, r["t_end_ns"] / 1e9
        kind = "error" if r.get("error") else "warmup" if r.get("warmup") else "request"
        tl.windows.append((t0, t1, kind))
        intervals.append((t0, t1, float(r.get("output_tokens") or 0)))
    tl.tokens_per_s = aggregate_rate(intervals)
    return tl


SHADE = {"request": ("tab:blue", 0.12), "warmup": ("0.5", 0.15), "error": ("tab:red", 0.2)}


def plot_run_timeline(store: Store, run_id: str, path: Path | str) -> Path:
    """Write the run's power/throughput timeline as an image (format from the suffix)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    out = Path(path)
    if out.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise UsageError(f"cannot write a plot to {out}; use a .png, .svg or .pdf path")
    tl = timeline_data(store, run_id)
    fig = Figure(figsize=(11, 6.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax_w, ax_t = fig.subplots(2, 1, sharex=True, height_ratios=(2, 1))
    for label, pts in tl.power_w.items():
        ax_w.plot([t for t, _ in pts], [w for _, w in pts], lw=1, label=label)
    if tl.total_w and len(tl.power_w) > 1:
        ax_w.plot(
            [t for t, _ in tl.total_w],
            [w for _, w in tl.total_w],
            color="black",
            lw=1.6,
            ls="--",
            label=tl.total_label,
        )
    if not tl.power_w:
        ax_w.text(0.5, 0.5, "no power samples in this run", ha="center", transform=ax_w.transAxes)
    if tl.tokens_per_s:
        ax_t.step(
            [t for t, _ in tl.tokens_per_s],
            [v for _, v in tl.tokens_per_s],
            where="post",
            color="tab:green",
            lw=1.2,
        )
    for ax in (ax_w, ax_t):
        for t0, t1, kind in tl.windows:
            color, alpha = SHADE[kind]
            ax.axvspan(t0, t1, color=color, alpha=alpha, lw=0)
        ax.grid(True, alpha=0.3)
    kinds = sorted({k for _, _, k in tl.windows})
    handles, labels = ax_w.get_legend_handles_labels()
    handles += [Patch(color=SHADE[k][0], alpha=SHADE[k][1] + 0.1) for k in kinds]
    labels += [f"{k} window" for k in kinds]
    if handles:
        ax_w.legend(handles, labels, fontsize=7, loc="upper right")
    top = max((w for pts in [*tl.power_w.values(), tl.total_w] for _, w in pts), default=1.0)
    ax_w.set_ylim(0, top * 1.35 or 1.0)  # from zero, with room for the legend above the lines
    ax_w.set_ylabel("power (W)")
    ax_w.set_title(tl.title + (f"\n{tl.total_label}" if tl.total_label else ""), fontsize=9)
    ax_t.set_ylabel("output tok/s")
    ax_t.set_xlabel("time since run start (s)")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return out


def plot_costs(
    comparison: Comparison, path: Path | str, names: dict[str, str] | None = None
) -> Path:
    """Cost per day against requests per day for every target (`edgeprof.report.cost_chart`):
    break-evens marked, the volume and each device's capacity drawn."""
    from edgeprof.report.cost_chart import cost_chart, cost_figure

    path = Path(path)
    fig = cost_figure(cost_chart(comparison, names))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def _tex_safe(text: str) -> str:
    """Matplotlib reads $...$ as math; target names like "$5/$15 per 1M" must stay literal."""
    return text.replace("$", r"\$")


@dataclass(frozen=True)
class QualityPoint:
    """One variant on the quality/cost chart."""

    name: str
    kld_mean: float  # 0 for the reference itself
    j_per_output_token: float | None
    decode_tps: float | None
    size_bytes: int | None
    energy_estimated: bool = False


def pareto_front(points: list[tuple[float, float]], maximize_y: bool = False) -> list[int]:
    """Indices of the points no other point beats on both axes (lower x, and lower y or higher
    y with `maximize_y`), in order of x."""
    sign = -1.0 if maximize_y else 1.0
    order = sorted(range(len(points)), key=lambda i: (points[i][0], sign * points[i][1]))
    front: list[int] = []
    best = math.inf
    for i in order:
        y = sign * points[i][1]
        if y < best:
            front.append(i)
            best = y
    return front


def quality_figure(points: list[QualityPoint]) -> object:
    """Two panels sharing the quality axis: KL divergence from the reference against J per
    output token, and against decode tok/s; marker area grows with file size; the Pareto
    front (nothing both better and cheaper/faster) is joined by a line."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(11, 4.8), layout="constrained")
    FigureCanvasAgg(fig)
    sizes = [p.size_bytes or 0 for p in points]
    biggest = max(sizes) or 1
    smallest_kld = min((p.kld_mean for p in points if p.kld_mean > 0), default=1e-3)
    panels = (
        ("j_per_output_token", "J per output token", False),
        ("decode_tps", "decode tokens/s", True),
    )
    estimated = any(p.energy_estimated for p in points)
    for k, (attr, label, maximize) in enumerate(panels):
        ax = fig.add_subplot(1, 2, k + 1)
        shown = [p for p in points if getattr(p, attr) is not None]
        xy = [(p.kld_mean, float(getattr(p, attr))) for p in shown]
        for i, (p, (x, y)) in enumerate(zip(shown, xy, strict=True)):
            area = 40 + 460 * (p.size_bytes or 0) / biggest
            ax.scatter([x], [y], s=area, color=f"C{i % 10}", alpha=0.75, edgecolors="black")
            ax.annotate(_tex_safe(p.name), (x, y), textcoords="offset points", xytext=(6, 6),
                        fontsize=8)  # fmt: skip
        front = pareto_front(xy, maximize_y=maximize)
        if len(front) > 1:
            ax.plot([xy[i][0] for i in front], [xy[i][1] for i in front], color="gray",
                    ls="--", lw=1, label="Pareto front")  # fmt: skip
            ax.legend(loc="best", fontsize=8)
        # symlog: the reference sits at KLD 0, the variants spread over decades above it
        ax.set_xscale("symlog", linthresh=smallest_kld / 2)
        ax.set_xlabel("mean KL divergence from the reference (nats; lower is better)")
        est = " (estimated)" if estimated and attr == "j_per_output_token" else ""
        ax.set_ylabel(label + est)
        ax.grid(True, alpha=0.3)
    fig.suptitle("Quality lost against cost: marker area = file size")
    return fig


def plot_quality(points: list[QualityPoint], path: Path | str) -> Path:
    if not points:
        raise UsageError("no variant has both a profile and a quality score to plot")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    quality_figure(points).savefig(path, dpi=110)  # type: ignore[attr-defined]
    return path


@dataclass(frozen=True)
class ConcurrencyPoint:
    concurrency: int
    run_id: str
    aggregate_tps: float | None  # output tokens per second, all requests together
    requests_per_s: float | None
    decode_tps: float | None  # as one request saw it
    ttft_p95_s: float | None
    j_per_output_token: float | None
    energy_estimated: bool


def concurrency_points(summaries: list[Any]) -> list[ConcurrencyPoint]:
    """One point per run (RunSummary), in order of concurrency."""
    return sorted(
        (
            ConcurrencyPoint(
                s.concurrency,
                s.run_id,
                s.output_tps_aggregate,
                s.requests_per_s,
                s.decode_tps_mean,
                s.ttft_p95_s,
                s.j_per_output_token,
                s.energy_estimated,
            )
            for s in summaries
        ),
        key=lambda p: p.concurrency,
    )


def plot_concurrency(points: list[ConcurrencyPoint], path: Path | str) -> Path:
    """Aggregate tok/s and p95 TTFT against concurrency; J/token in a second panel."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = MplFigure(figsize=(11, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    xs = [p.concurrency for p in points]

    def ys(attr: str) -> list[float]:
        return [math.nan if getattr(p, attr) is None else float(getattr(p, attr)) for p in points]

    ax = fig.add_subplot(1, 2, 1)
    ax.plot(xs, ys("aggregate_tps"), "o-", color="C0", label="aggregate tok/s")
    ax.set_xlabel("requests decoded together (concurrency)")
    ax.set_ylabel("aggregate output tokens/s", color="C0")
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [str(x) for x in xs])
    ttft = ax.twinx()
    ttft.plot(xs, ys("ttft_p95_s"), "s--", color="C3", label="TTFT p95")
    ttft.set_ylabel("time to first token, p95 (s)", color="C3")
    ax.grid(True, alpha=0.3)
    ax2 = fig.add_subplot(1, 2, 2)
    est = " (estimated)" if any(p.energy_estimated for p in points) else ""
    ax2.plot(xs, ys("j_per_output_token"), "o-", color="C2")
    ax2.set_xscale("log", base=2)
    ax2.set_xticks(xs, [str(x) for x in xs])
    ax2.set_xlabel("requests decoded together (concurrency)")
    ax2.set_ylabel("J per output token" + est)
    ax2.grid(True, alpha=0.3)
    fig.suptitle("Device capacity under load")
    fig.savefig(path, dpi=110)
    return path


# -- soak (sustained performance) ------------------------------------------------------------

SOAK_MARKS = {"first": ("tab:blue", "first minute"), "last": ("tab:orange", "last minute")}


def soak_figure(soak: Any) -> Any:
    """A soak (`edgeprof.analysis.soak.Soak`) over time, one panel each: output tok/s per
    window (and each request's decode tok/s), power per window, then temperature and CPU clock when
    sampled. Throttle events are red vertical lines across every panel; the first and last
    full windows are shaded; the partial tail window is drawn lighter. Minutes on the x axis
    since the first measured request."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    has_temp = any(w.temp_c_mean for w in soak.windows)
    has_clock = any(w.clock_hz is not None for w in soak.windows)
    n = 2 + has_temp + has_clock
    fig = MplFigure(figsize=(11, 2.3 * n + 1), layout="constrained")
    FigureCanvasAgg(fig)
    axes = list(fig.subplots(n, 1, sharex=True, squeeze=False)[:, 0])
    _soak_tps_panel(axes[0], soak)
    _soak_window_steps(axes[1], soak, lambda w: w.power_w, "tab:red", "mean W per window")
    est = " (estimated)" if soak.power_method == "estimated" else ""
    axes[1].set_ylabel(f"power (W){est}")
    # from zero, as the run timeline: a drop looks its real size; room above a flat line
    top = max((w.power_w for w in soak.windows if w.power_w is not None), default=1.0)
    axes[1].set_ylim(0, top * 1.2 or 1.0)
    if not any(w.power_w is not None for w in soak.windows):
        axes[1].text(0.5, 0.5, "no power samples in this run", ha="center",
                     transform=axes[1].transAxes)  # fmt: skip
    k = 2
    if has_temp:
        _soak_temp_panel(axes[k], soak)
        k += 1
    if has_clock:
        _soak_window_steps(axes[k], soak, lambda w: w.clock_hz and w.clock_hz / 1e9,
                           "tab:purple", "fastest CPU clock, mean")  # fmt: skip
        _soak_window_steps(axes[k], soak, lambda w: w.freq_hz_min and w.freq_hz_min / 1e9,
                           "tab:purple", "lowest sample", ls=":")  # fmt: skip
        axes[k].set_ylabel("clock (GHz)")
        axes[k].legend(fontsize=7, loc="lower left")
    for ax in axes:
        _soak_marks(ax, soak)
        ax.grid(True, alpha=0.3)
    axes[-1].set_xlabel("minutes since the first measured request")
    fig.suptitle(_soak_title(soak), fontsize=9)
    return fig


def _soak_title(soak: Any) -> str:
    title = f"soak of run {soak.run_id[:12]}: {len(soak.full_windows)} full windows of "
    title += f"{soak.window_s:.0f} s"
    fl = soak.first_last
    if fl is not None and fl.output_tps_change_pct is not None:
        title += f"; last minute {fl.output_tps_change_pct:+.0f}% tok/s against the first"
    if soak.events:
        title += f"; throttled {len(soak.events)}×"
    return title


def _soak_window_steps(
    ax: Any, soak: Any, value: Any, color: str, label: str, ls: str = "-"
) -> None:
    """One horizontal segment per window at its value; the partial tail lighter."""
    labelled = False
    for w in soak.windows:
        v = value(w)
        if v is None:
            continue
        ax.hlines(v, w.t0_s / 60, w.t1_s / 60, colors=color, lw=2, ls=ls,
                  alpha=0.35 if w.partial else 1.0, label=None if labelled else label)  # fmt: skip
        labelled = True


def _soak_tps_panel(ax: Any, soak: Any) -> None:
    _soak_window_steps(ax, soak, lambda w: w.output_tps, "tab:green",
                       "output tok/s per window (all requests, wall time)")  # fmt: skip
    if soak.request_points:
        ax.plot([t / 60 for t, _ in soak.request_points], [v for _, v in soak.request_points],
                ".", ms=3, color="0.45", label="decode tok/s, each request")  # fmt: skip
        _soak_window_steps(ax, soak, lambda w: w.decode_tps_median, "0.3",
                           "decode tok/s, window median", ls=":")  # fmt: skip
    s = soak.sustained
    if s is not None:
        ax.hlines(s.output_tps, s.t0_s / 60, s.t1_s / 60, colors="black", ls="--", lw=1.2,
                  label=f"sustained {s.output_tps:.1f} tok/s ({s.definition})")  # fmt: skip
    ax.set_ylim(bottom=0)
    ax.set_ylabel("tokens/s")
    ax.legend(fontsize=7, loc="best")


def _soak_temp_panel(ax: Any, soak: Any) -> None:
    for sensor, pts in sorted(soak.temp_points.items()):
        ax.plot([t / 60 for t, _ in pts], [c for _, c in pts], lw=1, label=_tex_safe(sensor))
    ax.set_ylabel("temperature (°C)")
    ax.legend(fontsize=7, loc="lower right")


def _soak_marks(ax: Any, soak: Any) -> None:
    fl = soak.first_last
    if fl is not None:
        for key, w in (("first", fl.first), ("last", fl.last)):
            color, text = SOAK_MARKS[key]
            ax.axvspan(w.t0_s / 60, w.t1_s / 60, color=color, alpha=0.08, lw=0)
            if ax is ax.figure.axes[0]:
                ax.text((w.t0_s + w.t1_s) / 120, 1.01, text, color=color, fontsize=8,
                        ha="center", va="bottom", transform=ax.get_xaxis_transform())  # fmt: skip
    for e in soak.events:
        ax.axvline(e.t_s / 60, color="tab:red", ls="--", lw=1)
        if ax is ax.figure.axes[0]:
            why = ", ".join(e.reasons) or "throttled"
            ax.text(e.t_s / 60, 0.02, f" {why}", color="tab:red", fontsize=7, rotation=90,
                    va="bottom", transform=ax.get_xaxis_transform())  # fmt: skip


def plot_soak(store: Store, run_id: str, path: Path | str) -> Path:
    """Write a soak run's figure (format from the suffix); `report --plot` on a soak run."""
    from edgeprof.analysis.soak import load_soak

    out = Path(path)
    if out.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise UsageError(f"cannot write a plot to {out}; use a .png, .svg or .pdf path")
    soak = load_soak(store, run_id)
    if soak is None:
        raise UsageError(f"run {run_id[:12]} has no measured requests to plot over time")
    out.parent.mkdir(parents=True, exist_ok=True)
    soak_figure(soak).savefig(out, dpi=110)
    return out
