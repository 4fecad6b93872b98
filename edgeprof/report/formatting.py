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


def sig(value: float | None, digits: int = 3) -> str:
    """`digits` significant digits in fixed notation, thousands separated: 103.8, 0.0123,
    12,346 (never 1.2e+04: a reader compares these by eye); at most six decimals, so fewer
    digits below 0.001, and powers of ten below a millionth."""
    if value is None:
        return DASH
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    if abs(value) < 5e-7:  # nothing left at six decimals
        return f"{value:.{digits - 1}e}"
    return f"{value:,.{min(decimals, 6)}f}"  # at most six decimals: 0.000123, not 0.0001235


def seconds(value: float | None) -> str:
    return DASH if value is None else f"{sig(value, 2)} s"


def per_day(value: float | None) -> str:
    return DASH if value is None else f"{format_usd(value)}/day"


def usd_range(low: float, high: float) -> str:
    return f"{format_usd(low)}–{format_usd(high)}"


def figure_value(value: float | str | None, unit: str) -> str:
    """An input as decide's tables show it: "$80", "$0.17/kWh", "100% of the day", "104
    tokens", "–" where none was given."""
    if value is None or value == "":
        return DASH
    if isinstance(value, str):
        return f"{value} {unit}".strip()
    v = float(value)
    if unit == "USD":
        return usd_compact(v)
    if unit.startswith("USD/"):
        return f"{usd_compact(v)}/{unit.removeprefix('USD/')}"
    if unit == "fraction of the day":
        return f"{pct(v)} of the day"
    text = f"{v:,.0f}" if v == int(v) and abs(v) < 1e15 else sig(v, 4)
    if v == 1:
        unit = _SINGULAR.get(unit, unit)
    return f"{text} {unit}".strip()


_SINGULAR = {"passes": "pass", "tokens": "token", "years": "year", "devices": "device"}


def short_label(text: str, limit: int = 24) -> str:
    """A long target name cut to `limit` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def usd_compact(value: float | None) -> str:
    """Dollars with at most six decimals: a page shows no $0.00000740. Amounts that small read
    better per 1,000 requests (the caller scales them); below $0.0001 they are rounded."""
    if value is None:
        return DASH
    if value != 0 and abs(value) < 1e-4:
        text = f"${abs(value):.6f}".rstrip("0")
        return ("-" if value < 0 else "") + (text if text != "$0." else "<$0.000001")
    return format_usd(value)
