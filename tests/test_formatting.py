"""The one formatting layer: figures as the terminal and the HTML page show them."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeprof.report import formatting as f

LONG_DECIMALS = re.compile(r"\d\.\d{7,}")


@pytest.mark.parametrize(
    ("value", "unit", "shown"),
    [
        (103.83333333333333, "tokens/request", "103.8 tokens/request"),
        (2000.0, "requests/day", "2,000 requests/day"),
        (32, "tokens", "32 tokens"),
        (1.0, "fraction of the day", "100% of the day"),
        (0.25, "fraction of the day", "25% of the day"),
        (80.0, "USD", "$80.00"),
        (0.17, "USD/kWh", "$0.170/kWh"),
        (None, "s", f.DASH),
        ("dedicated", "", "dedicated"),
        (12345.678, "W", "12,346 W"),
        (0.000123456, "J/token", "0.000123 J/token"),  # six decimals at most
        (2e-8, "J/token", "2.000e-08 J/token"),
    ],
)
def test_figure_value(value: float | str | None, unit: str, shown: str) -> None:
    assert f.figure_value(value, unit) == shown


def test_sig_and_seconds() -> None:
    assert [f.sig(v) for v in (103.83333, 12345.6, 0.0123456, 0, None)] == [
        "104", "12,346", "0.0123", "0", f.DASH,
    ]  # fmt: skip
    assert f.seconds(5.06) == "5.1 s" and f.seconds(0.0504) == "0.050 s" and f.seconds(None) == "–"
    assert f.seconds(43.4) == "43 s" and f.seconds(1234.5) == "1,234 s"


def test_usd_compact_and_short_label() -> None:
    assert f.usd_compact(0.0773) == "$0.0773"
    assert f.usd_compact(0.0000074) == "$0.000007"  # not $0.00000740
    assert f.usd_compact(7e-10) == "<$0.000001" and f.usd_compact(0) == "$0"
    assert f.usd_compact(-3e-5) == "-$0.00003" and f.usd_compact(None) == f.DASH
    assert f.short_label("llama.cpp", 12) == "llama.cpp"
    assert f.short_label("onnxruntime:model.onnx", 12) == "onnxruntime…"
    assert len(f.short_label("x" * 40, 12)) == 12


finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)


@given(finite)
def test_no_figure_shows_more_than_six_decimals(v: float) -> None:
    for text in (f.sig(v), f.sig(v, 4), f.usd_compact(v), f.figure_value(v, "tokens"),
                 f.figure_value(abs(v), "USD/kWh"), f.seconds(abs(v))):  # fmt: skip
        assert not LONG_DECIMALS.search(text), text
        assert "None" not in text and "nan" not in text


def test_a_count_of_one_is_singular() -> None:
    from edgeprof.report.formatting import figure_value

    assert figure_value(1, "passes") == "1 pass"
    assert figure_value(2, "passes") == "2 passes"
    assert figure_value(1, "years") == "1 year"
