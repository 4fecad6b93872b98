"""Formatting figures for tables: one place decides how a number, a unit or a gap looks."""

from __future__ import annotations

from typing import Any

from rich.table import Table

DASH = "–"


def num(value: float | None, digits: int = 1) -> str:
    return DASH if value is None else f"{value:,.{digits}f}"


def mean_sd(mean: float | None, sd: float | None, digits: int = 1) -> str:
    if mean is None:
        return DASH
    return f"{mean:,.{digits}f} ± {sd:,.{digits}f}" if sd is not None else f"{mean:,.{digits}f}"


def pct(share: float | None) -> str:
    return DASH if share is None else f"{share:.0%}"


def ms(seconds: float | None) -> str:
    return DASH if seconds is None else f"{seconds * 1000:,.1f}"


def mib(n_bytes: float | None) -> str:
    return DASH if n_bytes is None else f"{n_bytes / 2**20:,.0f}"


def energy(j_per_token: float | None, method: str | None) -> str:
    if j_per_token is None:
        return DASH
    mark = " (est.)" if method and "estimated" in method else ""
    return f"{j_per_token:.3g}{mark}"


def usd(value: float | None) -> str:
    return DASH if value is None else f"${value:.6f}".rstrip("0").rstrip(".")


COLUMNS: list[tuple[str, Any]] = [
    ("run", lambda s: s["run_id"][-8:]),
    ("device", lambda s: s["device_label"] or DASH),
    ("backend", lambda s: s["backend"]),
    ("model", lambda s: s["target"]),
    ("quant", lambda s: s["quant"] or DASH),
    ("threads", lambda s: str(s["threads"] or DASH)),
    ("requests", lambda s: f"{s['n_requests']} (+{s['n_warmup']} warm-up)"),
    ("TTFT p50 ms", lambda s: ms(s["ttft_p50_s"])),
    ("prefill tok/s", lambda s: mean_sd(s["prefill_tps_mean"], s["prefill_tps_sd"])),
    ("decode tok/s", lambda s: mean_sd(s["decode_tps_mean"], s["decode_tps_sd"])),
    ("decode % of roofline", lambda s: pct(s.get("decode_roofline_share"))),
    ("ITL p50/p99 ms", lambda s: f"{ms(s['itl_p50_s'])} / {ms(s['itl_p99_s'])}"),
    ("peak RSS MiB", lambda s: mib(s["peak_rss_bytes"])),
    ("idle W", lambda s: num(s["idle_power_w"])),
    ("J/output token", lambda s: energy(s["j_per_output_token"], s["energy_method"])),
    ("$/request", lambda s: usd(s["cost_per_request_usd"])),
    ("status", lambda s: s["status"]),
]
WIDE_MIN_COLUMNS = 170  # below this, runs become columns and metrics rows


def runs_table(
    summaries: list[dict[str, Any]], title: str = "edgeprof runs", width: int = 80
) -> Table:
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
        table.add_column(s["run_id"][-8:], justify="right")
    for name, fmt in COLUMNS[1:]:
        table.add_row(name, *(fmt(s) for s in summaries))
    return table
