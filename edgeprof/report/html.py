"""A self-contained HTML report: one file that opens anywhere, with no network.

CSS is inline and every chart is a PNG drawn with matplotlib's Agg canvas and embedded as a
base64 data URI, so the page can be mailed or attached to an issue as it is.
"""

from __future__ import annotations

import base64
import html
import tempfile
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeprof.analysis.summary import RunSummary, gpu_mem, gpu_mem_notes, prompt_format_is_news
from edgeprof.errors import ProfileDBError
from edgeprof.report import formatting as f
from edgeprof.report.decision_section import CSS as DECISION_CSS
from edgeprof.report.decision_section import DecisionView, decision_section
from edgeprof.report.formatting import DASH
from edgeprof.report.images import img as _img
from edgeprof.report.images import png_uri as _png_uri
from edgeprof.report.quality_html import task_quality_section
from edgeprof.report.tables import CSS as TABLE_CSS
from edgeprof.report.tables import Column, name, table
from edgeprof.store.db import Store
from edgeprof.store.rows import RunRow

if TYPE_CHECKING:
    from edgeprof.decision.compare import Comparison

MAX_TIMELINES = 12  # newest runs first; a page with hundreds of plots helps no one
EST_MARK = ' <span class="est" title="estimated, not measured">(est.)</span>'

CSS = (
    """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:1200px;padding:0 1rem;color:#1d2330}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem;
border-bottom:1px solid #d8dce3;padding-bottom:.2rem}h3{font-size:1rem;margin:1.4rem 0 .2rem}
p,div,figcaption{overflow-wrap:break-word}
.meta{color:#5b6472;margin-top:0}
th{position:sticky;top:0}
.est{color:#a25a00}.status-complete{color:#1a7f37}.status-failed,.status-aborted{color:#b42318}
.warn{background:#fff4f2;border-left:4px solid #b42318;padding:.5rem .9rem;margin:.5rem 0}
.verdict{background:#f0f6ff;border-left:4px solid #2f6feb;padding:.6rem .9rem;margin:.5rem 0}
.decision{font-size:1rem;background:#eef8f0;border-left-color:#1a7f37}
figure{margin:1rem 0}figure img{display:block;box-sizing:border-box;max-width:100%;
height:auto;border:1px solid #e6e8ec}
figcaption{color:#5b6472;font-size:.8rem}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(420px,100%),1fr));gap:1rem}
@media (max-width:720px){body{margin:1rem auto;padding:0 .6rem}}
"""
    + TABLE_CSS
    + DECISION_CSS
)

# (heading, summary key, formatter, css class)
RUN_COLUMNS: list[tuple[str, str, str, str]] = [
    ("run", "run_id", "id", "t"),
    ("device", "device_label", "text", "t"),
    ("backend", "backend", "text", "t"),
    ("target", "target", "path", "t"),
    ("quant", "quant", "text", "t"),
    ("label", "label", "text", "t"),
    ("status", "status", "status", "t"),
    ("prompt format", "prompt_format", "text", "t"),
    ("requests", "requests_done", "text", ""),
    ("errors", "n_errors", "int", ""),
    ("TTFT p50 ms", "ttft_p50_s", "ms", ""),
    ("prefill tok/s [95% CI]", "prefill_tps_mean", "prefill", ""),
    ("decode tok/s [95% CI]", "decode_tps_mean", "decode", ""),
    ("J/token [95% CI]", "j_per_output_token", "jpt", ""),
    ("tokens/J", "tokens_per_j", "num2", ""),
    ("avg W", "avg_power_w", "num", ""),
    ("peak RSS MiB", "peak_rss_bytes", "mib", ""),
    ("peak GPU MiB", "peak_gpu_mem_bytes", "gpu_mib", ""),
    ("$/request", "cost_per_request_usd", "usd", ""),
]


def _fmt(kind: str, s: RunSummary, key: str) -> str:
    """One cell; every string that came from the database is escaped."""
    v = getattr(s, key)
    if kind == "gpu_mib":
        return html.escape(gpu_mem(s))
    if v is None or v == "":
        return DASH
    if kind == "id":
        return f'<code title="{html.escape(str(v))}">{html.escape(str(v)[:10])}</code>'
    if kind == "path":
        return name(str(v), Path(str(v)).name, 24)
    if kind == "status":
        return f'<span class="status-{html.escape(str(v))}">{html.escape(str(v))}</span>'
    numbers = {
        "int": lambda: f.count(v),
        "ms": lambda: f.ms(v),
        "num": lambda: f.num(v),
        "num2": lambda: f.num(v, 2),
        "prefill": lambda: f.num(v) + _sub(f.interval(s.prefill_tps_ci)),
        "decode": lambda: f.num(v) + _sub(f.interval(s.decode_tps_ci)),
        "jpt": lambda: (
            f.j_per_token(v, s.energy_method, mark=EST_MARK)
            + _sub(f.interval(s.j_per_output_token_ci, 3))
        ),
        "mib": lambda: f.mib(v),
        "usd": lambda: f.usd_exact(v),
    }
    return numbers[kind]() if kind in numbers else html.escape(str(v))


def _sub(text: str) -> str:
    """A figure's interval, on its own line under it: the column stays narrow."""
    return f'<span class="sub">{html.escape(text)}</span>' if text else ""


def _quality_chart(store: Store, runs: Sequence[RunRow], summaries: Sequence[RunSummary]) -> str:
    """The sweep's Pareto chart for the runs whose target has a quality score (newest row per
    target, as `compare` uses it); "" when none has."""
    from edgeprof.quality.store import quality_of
    from edgeprof.report.plots import QualityPoint, quality_figure

    points = []
    for run, s in zip(runs, summaries, strict=True):
        row = quality_of(store, run.get("model_sha256"), str(run["backend"]), run.get("quant"))
        reference = row is None and _is_reference(store, run)
        kld = 0.0 if reference else (row["kld_mean"] if row else None)
        if kld is None:
            continue
        name = f"{s.backend}:{s.quant or Path(str(s.target)).name} ({_group_label(s, False)})"
        points.append(
            QualityPoint(name, float(kld), s.j_per_output_token, s.decode_tps_mean,
                         s.model_size_bytes, s.energy_estimated)
        )  # fmt: skip
    if not points:
        return ""
    uri = _png_uri(quality_figure(points))
    alt = "KL divergence from the reference against J per output token and decode tok/s"
    return _img(uri, alt, alt + "; marker area is the file size")


def _is_reference(store: Store, run: RunRow) -> bool:
    """The run profiled the file other variants were scored against (its KLD is 0)."""
    sha = run.get("model_sha256")
    return run.get("backend") == "llamacpp" and bool(
        sha and store.quality("reference_sha256 = ?", [sha])
    )


def _run_notes(summaries: list[RunSummary]) -> list[str]:
    """The same notes `edgeprof report` prints under its table: why a GPU figure is missing,
    and what differs between runs set side by side."""
    from edgeprof.analysis.comparability import comparability_notes

    return [*gpu_mem_notes(summaries), *comparability_notes(summaries)]


def _figure(w: float, h: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _group_label(s: RunSummary, with_target: bool) -> str:
    label = f"{s.device_label or str(s.device_id or '?')[:8]} · {s.backend}"
    return f"{label} · {Path(str(s.target or '?')).name}" if with_target else label


def _bar_chart(
    summaries: Sequence[RunSummary], key: str, sd_key: str | None, title: str, unit: str
) -> str | None:
    """Mean of `key` per device and backend (and model, when runs differ in it)."""
    with_target = len({s.target for s in summaries}) > 1
    groups: dict[str, list[float]] = {}
    for s in summaries:
        if getattr(s, key) is not None:
            groups.setdefault(_group_label(s, with_target), []).append(float(getattr(s, key)))
    if not groups:
        return None
    labels = sorted(groups)
    means = [sum(groups[g]) / len(groups[g]) for g in labels]
    # Spread across runs of the group where there are several, else the run's own sd.
    errs = []
    for g in labels:
        vals = groups[g]
        if len(vals) > 1:
            m = sum(vals) / len(vals)
            errs.append((sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) ** 0.5)
        else:
            sds = [
                getattr(s, sd_key)
                for s in summaries
                if sd_key and _group_label(s, with_target) == g
            ]
            errs.append(float(sds[0]) if sds and sds[0] is not None else 0.0)
    fig = _figure(6.0, 0.55 * len(labels) + 1.2)
    ax = fig.add_subplot()
    ax.barh(labels, means, xerr=errs, color="#2f6feb", alpha=0.85, capsize=3)
    for y, (m, e) in enumerate(zip(means, errs, strict=True)):
        ax.text(m + e, y, f" {m:.3g}", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(unit)
    ax.set_title(title, fontsize=10)
    ax.grid(True, axis="x", alpha=0.3)
    return _png_uri(fig)


def _timeline(store: Store, run_id: str) -> str | None:
    try:
        from edgeprof.report.plots import plot_run_timeline
    except ImportError:
        return _simple_timeline(store, run_id)
    with tempfile.TemporaryDirectory() as tmp:
        png = Path(tmp) / "timeline.png"
        plot_run_timeline(store, run_id, png)
        return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


def _simple_timeline(store: Store, run_id: str) -> str | None:
    series: dict[str, list[tuple[float, float]]] = {}
    for r in store.samples(run_id, metrics=("power_w",)):
        series.setdefault(str(r["sensor"]), []).append((r["t_ns"] / 1e9, float(r["value"])))
    if not series:
        return None
    fig = _figure(10, 3.2)
    ax = fig.add_subplot()
    for sensor, pts in sorted(series.items()):
        ax.plot([t for t, _ in pts], [w for _, w in pts], lw=1, label=sensor)
    for req in store.requests(run_id):
        if req["t_start_ns"] is not None and req["t_end_ns"] is not None:
            ax.axvspan(req["t_start_ns"] / 1e9, req["t_end_ns"] / 1e9, color="tab:blue", alpha=0.1)
    ax.set_xlabel("time since run start (s)")
    ax.set_ylabel("power (W)")
    ax.legend(fontsize=7)
    ax.grid(True, alpha=0.3)
    return _png_uri(fig)


def _runs_table(summaries: Sequence[RunSummary]) -> str:
    told = prompt_format_is_news(summaries)
    shown = [c for c in RUN_COLUMNS if told or c[1] != "prompt_format"]
    columns = [Column(h, text=c == "t") for h, _, _, c in shown]
    body = [[_fmt(k, s, key) for _, key, k, _ in shown] for s in summaries]
    attrs = [f'data-run-id="{html.escape(s.run_id)}"' for s in summaries]
    return table(columns, body, "runs", attrs, cards="cards-wide")


def _runs_section(summaries: list[RunSummary]) -> list[str]:
    from edgeprof.analysis.summary import answer_warnings

    parts = ["<h2>Runs</h2>"]
    # above the table: figures measured over noise must not be read without this
    parts += [f'<p class="warn"><b>Warning:</b> {html.escape(w)}</p>'
              for w in answer_warnings(summaries)]  # fmt: skip
    parts.append(_runs_table(summaries))
    if any(s.energy_estimated for s in summaries):
        parts.append('<p class="meta"><span class="est">(est.)</span>: energy estimated from '
                     "TDP and CPU load, not measured by a power sensor.</p>")  # fmt: skip
    return parts + [f'<p class="meta">{html.escape(n)}</p>' for n in _run_notes(summaries)]


def _servers_section(store: Store, summaries: Sequence[RunSummary]) -> list[str]:
    """Each local server's process and its own figures beside edgeprof's, as `report`."""
    from edgeprof.analysis.server_side import describe_process, local_servers

    found = local_servers(store, [s.run_id for s in summaries])
    if not found:
        return []
    parts = ["<h2>Local servers</h2>"]
    for run_id, server in found.items():
        process = server["process"] or {}
        problem = [process["problem"]] if process.get("problem") else []
        lines = [describe_process(run_id, process), *server["timings"].lines(), *problem]
        parts.append('<p class="meta">' + "<br>".join(html.escape(x) for x in lines) + "</p>")
    return parts


def _by_device_section(store: Store, summaries: Sequence[RunSummary]) -> str:
    """`report --by device` as HTML: one table per comparable group, its notes under it."""
    from edgeprof.analysis.pooled import pooled_report

    report = pooled_report(store, summaries=summaries)
    parts = ["<h2>By device</h2>",
             '<p class="meta">One row per device for each group of comparable runs (same model, '
             "prompts, max tokens, backend, quant, threads, offload and build); each figure is "
             "the median of the device's runs.</p>"]  # fmt: skip
    columns = [Column(h, text=h in ("device", "energy basis"))
               for h in ("device", "runs", "decode tok/s", "prefill tok/s", "TTFT p50 ms",
                         "J/token", "W", "energy basis")]  # fmt: skip
    for g in report.groups:
        rows = [
            [html.escape(r.name), f.count(r.n_runs), f.num(r.decode_tps), f.num(r.prefill_tps),
             f.ms(r.ttft_p50_s), f.j_per_token(r.j_per_output_token, r.energy_basis, mark=EST_MARK),
             f.num(r.avg_power_w), html.escape(r.energy_basis or DASH)]
            for r in g.rows
        ]  # fmt: skip
        parts += [
            f"<h3>{html.escape(g.title)}</h3>",
            table(columns, rows, extra=f'by-device data-group="{html.escape(str(g.key.key_id))}"'),
            *(f'<p class="meta">{html.escape(n)}</p>' for n in g.notes),
        ]
    parts += [f'<p class="meta">{html.escape(n)}</p>' for n in report.notes]
    return "\n".join(parts)


def _decision_view(compare: Comparison | DecisionView, headline: str | None) -> DecisionView:
    if isinstance(compare, DecisionView):
        return compare
    return DecisionView(compare, verdict=headline)


def _head(store: Store, summaries: Sequence[RunSummary]) -> list[str]:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    devices = len({s.device_id for s in summaries})
    return [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>edgeprof report: {html.escape(store.path.name)}</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>edgeprof report</h1>",
        f'<p class="meta">{html.escape(store.path.name)} · {len(summaries)} run(s) on '
        f"{devices} device(s) · generated {now}</p>",
    ]


def _top(compare: Comparison | DecisionView | None, headline: str | None) -> list[str]:
    """The decision section when there is a comparison; else decide's paragraph alone."""
    if compare is not None:
        return [decision_section(_decision_view(compare, headline))]
    if headline:
        return [f'<div class="verdict decision"><b>Verdict.</b> {html.escape(headline)}</div>']
    return []


def _charts(
    store: Store, runs: Sequence[RunRow], summaries: list[RunSummary], compare: Any = None
) -> list[str]:
    parts = []
    charts = [
        _bar_chart(summaries, "decode_tps_mean", "decode_tps_sd", "Decode speed", "tokens/s"),
        _bar_chart(summaries, "j_per_output_token", None, "Energy per output token", "J/token"),
    ]
    alts = ("decode tokens per second per device and backend", "joules per output token")
    imgs = [_img(uri, alt, alt) for uri, alt in zip(charts, alts, strict=True) if uri]
    if imgs:
        parts += ["<h2>Per device and backend</h2>", f'<div class="charts">{"".join(imgs)}</div>']
    parts += task_quality_section(store, summaries, compare)
    quality = _quality_chart(store, runs, summaries)
    if quality:
        parts += ["<h2>Quality against cost</h2>", quality]
    timelines = []
    for s in sorted(summaries, key=lambda s: s.run_id, reverse=True)[:MAX_TIMELINES]:
        uri = _timeline(store, s.run_id)
        if uri:
            caption = f"run {s.run_id} · {_group_label(s, True)}"
            timelines.append(_img(uri, f"power timeline of run {s.run_id}", caption))
    if timelines:
        parts += ["<h2>Power timelines</h2>", *timelines]
    return parts


def render_html_report(
    store: Store,
    run_ids: Sequence[str] | None = None,
    compare: Comparison | DecisionView | None = None,
    headline: str | None = None,
) -> str:
    """The page as a string (see `write_html_report`)."""
    from edgeprof.analysis.summary import summarize_run

    runs = store.runs(list(run_ids) if run_ids else None)
    if not runs:
        raise ProfileDBError(f"{store.path} holds no runs to report; add one with `edgeprof run`")
    summaries = [summarize_run(store, str(r["id"])) for r in runs]
    parts = [*_head(store, summaries), *_top(compare, headline), *_runs_section(summaries)]
    parts += _servers_section(store, summaries)
    if len({s.device_id for s in summaries}) > 1:
        parts.append(_by_device_section(store, summaries))
    comparison = compare.comparison if isinstance(compare, DecisionView) else compare
    parts += _charts(store, runs, summaries, comparison)
    parts.append("</body></html>")
    return "\n".join(parts)


def write_html_report(
    store: Store,
    path: Path | str,
    run_ids: Sequence[str] | None = None,
    compare: Comparison | DecisionView | None = None,
    headline: str | None = None,
) -> Path:
    """Write one self-contained HTML page: runs table, per-device charts, power timelines and,
    when `compare` is given (an `edgeprof.decision.compare.Comparison`, or a
    `edgeprof.report.decision_section.DecisionView` with decide's rows and names), the
    decision section on top: verdict, cost chart, break-even matrix, cost and latency per
    target, inputs. `headline` (decide's paragraph) opens it."""
    out = Path(path)
    text = render_html_report(store, run_ids, compare, headline)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return out
