"""Reading numbers out of model answers: thousands separators, Unicode minus signs and units.

Pure functions; `assertions.py` grades `number` expectations with them.
"""

from __future__ import annotations

import re

# Minus signs people and models write: ASCII hyphen-minus, U+2212 minus, en dash.
_MINUS = "-\u2212\u2013"
# Thousands groups: comma, narrow no-break space, no-break space, thin space, apostrophe
# (Swiss). A plain space is left out: "between 1 100 and 2" would merge two numbers.
_GROUP = ",\u202f\u00a0\u2009'"
_NUMBER = re.compile(
    rf"(?<![\w.])([{_MINUS}+]?)"  # a sign only where no word or number runs into it
    rf"(\d{{1,3}}(?:[{_GROUP}]\d{{3}})+(?:\.\d+)?"  # 1,234,567.89
    r"|\d+(?:\.\d+)?"  # 1234.5
    r"|\.\d+)"  # .5
    r"(?:[eE]([+-]?\d+))?"  # 1.5e3
)


def numbers_in(text: str) -> list[float]:
    """Every number in `text`, in order, with units and separators stripped:
    "1,234.5 km" -> [1234.5], "−3 °C" -> [-3.0], "1.5e3 W" -> [1500.0]."""
    out: list[float] = []
    for m in _NUMBER.finditer(text):
        sign, digits, exponent = m.group(1), m.group(2), m.group(3)
        for g in _GROUP:
            digits = digits.replace(g, "")
        value = float(digits) * (10 ** int(exponent) if exponent else 1)
        out.append(-value if sign and sign in _MINUS else value)
    return out


def parse_expected(value: object) -> float | None:
    """An expected value as a number: 42, 42.0, "42", "1,234.5 km". None when not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        found = numbers_in(value)
        return found[0] if len(found) == 1 else None
    return None


def within(actual: float, expected: float, *, abs_tol: float, rel_tol: float) -> bool:
    """True when `actual` is within either tolerance of `expected` (both 0: exact)."""
    diff = abs(actual - expected)
    return diff <= abs_tol or diff <= rel_tol * abs(expected) or diff == 0.0
