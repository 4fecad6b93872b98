"""The runs table in the terminal (rich); how each figure looks is `edgeprof.formatting`'s."""

from __future__ import annotations

from collections.abc import Callable

from rich.table import Table

from edgeprof.formatting import DASH, j_per_token, mean_sd, mib, ms, num, pct, usd_exact
from edgeprof.summary import RunSummary, gpu_mem

COLUMNS: list[tuple[str, Callable[[RunSummary], str]]] = [
    ("run", lambda s: s.run_id[-8:]),
    ("device", lambda s: s.device_label or DASH),
    ("backend", lambda s: s.backend),
    ("model", lambda s: s.target or DASH),
    ("quant", lambda s: s.quant or DASH),
    ("threads", lambda s: str(s.threads or DASH)),
    ("requests", lambda s: f"{s.requests_done} (+{s.n_warmup} warm-up)"),
    ("TTFT p50 ms", lambda s: ms(s.ttft_p50_s)),
    ("prefill tok/s", lambda s: mean_sd(s.prefill_tps_mean, s.prefill_tps_sd)),
    ("decode tok/s", lambda s: mean_sd(s.decode_tps_mean, s.decode_tps_sd)),
    ("decode % of roofline", lambda s: pct(s.decode_roofline_share)),
    ("ITL p50/p99 ms", lambda s: f"{ms(s.itl_p50_s)} / {ms(s.itl_p99_s)}"),
    ("peak RSS MiB", lambda s: mib(s.peak_rss_bytes)),
    ("peak GPU MiB", lambda s: gpu_mem(s)),
    ("idle W", lambda s: num(s.idle_power_w)),
    ("J/output token", lambda s: j_per_token(s.j_per_output_token, s.energy_method)),
    ("$/request", lambda s: usd_exact(s.cost_per_request_usd)),
    ("status", lambda s: s.status),
]
WIDE_MIN_COLUMNS = 170  # below this, runs become columns and metrics rows


def runs_table(summaries: list[RunSummary], title: str = "edgeprof runs", width: int = 80) -> Table:
    table = Table(title=title, title_justify="left")
    if width >= WIDE_MIN_COLUMNS:
        for name, _ in COLUMNS:
            table.add_column(
                name, justify="left" if name in ("run", "model", "status") else "right"
            )
        for s in summaries:
            table.add_row(*(fmt(s) for _, fmt in COLUMNS))
        return table
    table.add_column("")
    for s in summaries:
        table.add_column(s.run_id[-8:], justify="right")
    for name, fmt in COLUMNS[1:]:
        table.add_row(name, *(fmt(s) for s in summaries))
    return table


def run_notes(summaries: list[RunSummary]) -> list[str]:
    """What a reader must know beside the table: runs shaped by rate limits, runs cut short."""
    notes = []
    for s in summaries:
        if s.rate_limited:
            notes.append(
                f"run {s.run_id[-8:]}: {s.retried_requests} request(s) were refused (429/5xx) "
                f"and retried, waiting {s.retry_wait_s_total:.1f} s in all: TTFT p50 is "
                f"{ms(s.ttft_p50_s)} ms as felt, {ms(s.ttft_final_attempt_p50_s)} ms from the "
                "attempt that answered"
            )
        if s.status in ("aborted", "failed") and s.error:
            notes.append(f"run {s.run_id[-8:]} {s.status} after {s.requests_done}: {s.error}")
    return notes
