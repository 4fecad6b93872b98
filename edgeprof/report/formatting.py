"""How a figure looks, in one place: terminal tables, the HTML report and verdict text all
format numbers, units and gaps through these functions. No rich, no HTML: plain strings."""

from __future__ import annotations

import math
from typing import Any

DASH = "–"  # a figure that was not measured


def num(value: float | None, digits: int = 1) -> str:
    return DASH if value is None else f"{value:,.{digits}f}"


def mean_sd(mean: float | None, sd: float | None, digits: int = 1) -> str:
    if mean is None:
        return DASH
    return f"{mean:,.{digits}f} ± {sd:,.{digits}f}" if sd is not None else f"{mean:,.{digits}f}"


def interval(ci: Any, digits: int = 1, scale: float = 1.0) -> str:
    """A 95 % interval as `[low–high] n=N`; `n=1` alone where none exists (one repetition)."""
    if ci is None:
        return ""
    return f"[{ci.low * scale:,.{digits}f}–{ci.high * scale:,.{digits}f}] n={ci.n}"


def with_interval(value: str, ci: Any, digits: int = 1, scale: float = 1.0) -> str:
    """A figure followed by its interval (terminal and HTML alike)."""
    return f"{value} {interval(ci, digits, scale)}" if ci is not None and value != DASH else value


def pct(share: float | None) -> str:
    return DASH if share is None else f"{share:.0%}"


def ms(seconds: float | None) -> str:
    return DASH if seconds is None else f"{seconds * 1000:,.1f}"


def mib(n_bytes: float | None) -> str:
    return DASH if n_bytes is None else f"{n_bytes / 2**20:,.0f}"


def is_estimated(method: str | None) -> bool:
    return bool(method) and "estimated" in str(method)


def j_per_token(value: float | None, method: str | None = None, mark: str = " (est.)") -> str:
    """Joules per token, three significant digits, marked when the energy was estimated."""
    if value is None:
        return DASH
    return f"{value:.3g}{mark if is_estimated(method) else ''}"


def usd_exact(value: float | None, digits: int = 6) -> str:
    """Dollars to `digits` places with trailing zeros dropped: $0.000262, $1.5."""
    return DASH if value is None else f"${value:,.{digits}f}".rstrip("0").rstrip(".")


def count(value: float | None) -> str:
    return DASH if value is None else f"{value:,.0f}"


def format_count(value: float) -> str:
    return f"{value:,.0f}"


def format_usd(value: float) -> str:
    """Dollars with as many digits as a small per-request amount needs."""
    sign, v = ("-" if value < 0 else ""), abs(value)
    if v == 0:
        return "$0"
    if v >= 100:
        return f"{sign}${v:,.0f}"
    if v >= 1:
        return f"{sign}${v:,.2f}"
    if v < 1e-9:
        return f"{sign}${v:.2e}"
    # Three significant digits in fixed notation: $0.0000262 reads better than $2.62e-05.
    decimals = 2 - math.floor(math.log10(v))
    return f"{sign}${v:.{decimals}f}"
