"""The power timeline of one run: power per sensor (and the non-overlapping total that energy
figures come from) above output tokens per second, with each request's window shaded.

`timeline_data` gathers the numbers (tested directly); `plot_run_timeline` draws them with
matplotlib's Agg canvas, never pyplot, so it needs no display and keeps no global state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgeprof.energy import build_series, interpolate, power_points, select_domains
from edgeprof.errors import ProfileDBError, UsageError
from edgeprof.store.db import Store

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
    series = build_series(
        store.sensors(run_id), list(store.samples(run_id, metrics=("power_w", "energy_j")))
    )
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
