"""The runs table in the terminal (rich); how each figure looks is
`edgeprof.report.formatting`'s."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.markup import escape
from rich.table import Table

from edgeprof.analysis.summary import RunSummary, gpu_mem, prompt_format_is_news
from edgeprof.report.formatting import (
    DASH,
    j_per_token,
    mib,
    ms,
    num,
    pct,
    usd_exact,
    with_interval,
)

COLUMNS: list[tuple[str, Callable[[RunSummary], str]]] = [
    ("run", lambda s: s.run_id[-8:]),
    ("device", lambda s: s.device_label or DASH),
    ("backend", lambda s: s.backend),
    ("model", lambda s: s.target or DASH),
    ("quant", lambda s: s.quant or DASH),
    ("threads", lambda s: str(s.threads or DASH)),
    ("requests", lambda s: f"{s.requests_done} (+{s.n_warmup} warm-up)"),
    ("TTFT p50 ms [95% CI]", lambda s: with_interval(ms(s.ttft_p50_s), s.ttft_p50_ci, 1, 1000)),
    ("prefill tok/s [95% CI]", lambda s: with_interval(num(s.prefill_tps_mean), s.prefill_tps_ci)),
    ("decode tok/s [95% CI]", lambda s: with_interval(num(s.decode_tps_mean), s.decode_tps_ci)),
    ("decode % of roofline", lambda s: pct(s.decode_roofline_share)),
    ("ITL p50/p99 ms", lambda s: f"{ms(s.itl_p50_s)} / {ms(s.itl_p99_s)}"),
    ("peak RSS MiB", lambda s: mib(s.peak_rss_bytes)),
    ("peak GPU MiB", lambda s: gpu_mem(s)),
    ("idle W", lambda s: num(s.idle_power_w)),
    ("J/output token [95% CI]", lambda s: _j_per_token(s)),
    ("$/request", lambda s: usd_exact(s.cost_per_request_usd)),
    ("prompt format", lambda s: (s.prompt_format or DASH).split(" (")[0]),
    ("status", lambda s: s.status),
]
WIDE_MIN_COLUMNS = 200  # below this, runs become columns and metrics rows


def _columns(summaries: list[RunSummary]) -> list[tuple[str, Callable[[RunSummary], str]]]:
    """Every column, but the prompt format only when a run used one other than its GGUF's
    own template: then it is news (a family's built-in, a file, raw), else noise."""
    told = prompt_format_is_news(summaries)
    return [c for c in COLUMNS if told or c[0] != "prompt format"]


def runs_table(summaries: list[RunSummary], title: str = "edgeprof runs", width: int = 80) -> Table:
    table = Table(title=title, title_justify="left")
    columns = _columns(summaries)
    if width >= WIDE_MIN_COLUMNS:
        for name, _ in columns:
            table.add_column(
                name, justify="left" if name in ("run", "model", "status") else "right"
            )
        for s in summaries:
            table.add_row(*(fmt(s) for _, fmt in columns))
        return table
    table.add_column("")
    for s in summaries:
        table.add_column(s.run_id[-8:], justify="right")
    for name, fmt in columns[1:]:
        table.add_row(name, *(fmt(s) for s in summaries))
    return table


def _j_per_token(s: RunSummary) -> str:
    ci = s.j_per_output_token_ci
    value = j_per_token(s.j_per_output_token, s.energy_method)
    return f"{value} [{ci.low:.3g}–{ci.high:.3g}] n={ci.n}" if ci and value != DASH else value


def print_warnings(console: Any, summaries: list[RunSummary]) -> None:
    """Degenerate answers and suspected base models, in bold red: a table of healthy-looking
    figures over noise must not pass unnoticed."""
    from edgeprof.analysis.summary import answer_warnings

    for line in answer_warnings(summaries):
        console.print(f"[bold red]warning:[/] {escape(line)}", highlight=False)


def setup_text(s: RunSummary) -> str:
    """The setup that changes results: the power setup read from the system, the user's
    notes, and whether the model loaded cold (from storage) or warm (the page cache)."""
    parts = [f"{k.replace('_', ' ')} {v}" for k, v in s.power_setup.items()]
    parts += [f"{k}={v}" for k, v in s.notes.items()]
    cached = s.page_cache_fraction
    if cached is not None:
        how = "a cold start, from storage" if cached < 0.5 else "warm, from the page cache"
        parts.append(f"model file {cached:.0%} cached before the load ({how})")
    return "setup: " + "; ".join(parts) if parts else ""


def passes_note(s: RunSummary) -> str:
    """How an open-ended run ended: a soak's length, or the interval --target-ci reached."""
    p, head = s.passes, f"run {s.run_id[-8:]}"
    done = p.get("repetitions_done", s.n_repetitions)
    if "duration_s" in p:
        return f"{head}: a soak of {p['duration_s']:g} s, {done} passes over the suite"
    target, reached = p.get("target_ci"), p.get("ci_reached")
    width = "no interval" if reached is None else f"±{reached:.1%}"
    if p.get("stopped_by") == "target-ci":
        return f"{head}: --target-ci ±{target:.1%} reached ({width}) after {done} passes"
    return (
        f"{head}: --target-ci ±{target:.1%} NOT reached: {width} after {done} passes "
        f"(stopped by {p.get('stopped_by') or 'an interruption'}); the figures move more than "
        "asked: quieten the machine or raise --max-repetitions"
    )


def first_pass_note(run_id: str, differs: float) -> str:
    """A first pass unlike the others: slower is a warm-up too short; faster, a device that
    slowed down as it ran (heat, a governor, other load)."""
    head = (
        f"run {run_id[-8:]}: the first repetition's decode tok/s was {abs(differs):.0%} "
        f"{'below' if differs < 0 else 'above'} the others' mean, outside their 95% interval"
    )
    if differs < 0:
        return f"{head}: the warm-up was too short (raise --warmup)"
    return (
        f"{head}: the device slowed down as it ran (throttling, a power governor or other "
        "load; a soak, `run --duration 10m`, shows which)"
    )


def run_notes(summaries: list[RunSummary]) -> list[str]:
    """What a reader must know beside the table: runs shaped by rate limits, runs cut short,
    a first repetition unlike the rest."""
    notes = []
    for s in summaries:
        if s.passes:
            notes.append(passes_note(s))
        if setup := setup_text(s):
            notes.append(f"run {s.run_id[-8:]}: {setup}")
        # llama-bench's repetitions follow its own warm-up run: not edgeprof's --warmup to raise
        if s.first_repetition_differs is not None and not s.extra.get("imported"):
            notes.append(first_pass_note(s.run_id, s.first_repetition_differs))
        if s.rate_limited:
            notes.append(
                f"run {s.run_id[-8:]}: {s.retried_requests} request(s) were refused (429/5xx) "
                f"and retried, waiting {s.retry_wait_s_total:.1f} s in all: TTFT p50 is "
                f"{ms(s.ttft_p50_s)} ms as felt, {ms(s.ttft_final_attempt_p50_s)} ms from the "
                "attempt that answered"
            )
        if s.status in ("aborted", "failed") and s.error:
            notes.append(f"run {s.run_id[-8:]} {s.status} after {s.requests_done}: {s.error}")
        if imported := s.extra.get("imported"):
            notes.append(
                f"run {s.run_id[-8:]}: imported from {imported.get('tool')} "
                f"({imported.get('test')}: {num(imported.get('avg_ts'))} t/s as it counts), "
                "with its definitions (params.imported): no TTFT, no energy"
            )
    return notes


def pooled_tables(report: object) -> list[Table]:
    """`report --by device`: one table per comparable group (an
    `edgeprof.analysis.pooled.PooledReport`), one row per device, the fastest decode first."""
    from edgeprof.analysis.pooled import PooledReport

    assert isinstance(report, PooledReport)
    tables = []
    for g in report.groups:
        table = Table(title=g.title, title_justify="left")
        for name in ("device", "runs", "decode tok/s", "prefill tok/s", "TTFT p50 ms",
                     "J/output token", "W", "energy basis"):  # fmt: skip
            left = name in ("device", "energy basis")
            table.add_column(name, justify="left" if left else "right")
        for r in g.rows:
            table.add_row(
                r.name, str(r.n_runs), num(r.decode_tps), num(r.prefill_tps), ms(r.ttft_p50_s),
                j_per_token(r.j_per_output_token, r.energy_basis), num(r.avg_power_w),
                r.energy_basis or DASH,
            )  # fmt: skip
        tables.append(table)
    return tables
