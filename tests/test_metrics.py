"""Metric definitions checked against numbers computed by hand."""

import pytest

from edgeprof.analysis.metrics import (
    inter_token_latencies_s,
    mean_sd,
    percentile,
    request_metrics,
    token_times_ns,
)

MS = 1_000_000  # ns per millisecond


def test_request_metrics_hand_computed() -> None:
    # Start at 0; first token at 200 ms, then tokens at 250, 300, 400 ms; 100 prompt tokens.
    events = [(200 * MS, 1), (250 * MS, 1), (300 * MS, 1), (400 * MS, 1)]
    m = request_metrics(0, events, 410 * MS, input_tokens=100, output_tokens=4)
    assert m.ttft_s == pytest.approx(0.2)
    assert m.prefill_tps == pytest.approx(500.0)  # 100 tokens / 0.2 s
    assert m.decode_tps == pytest.approx(15.0)  # (4 - 1) tokens / 0.2 s
    assert m.tpot_s == pytest.approx(1 / 15)
    assert m.e2e_s == pytest.approx(0.4)  # last event, not the generator's return
    # gaps 50, 50, 100 ms: p50 = 50 ms, p99 = 50 + 0.98 * 50 ms
    assert m.itl_p50_s == pytest.approx(0.05)
    assert m.itl_p99_s == pytest.approx(0.099)


def test_multi_token_chunk_gap_is_split() -> None:
    # A 3-token chunk 90 ms after the previous token: three 30 ms gaps, not one 90 ms gap.
    events = [(100 * MS, 1), (190 * MS, 3)]
    assert token_times_ns(events) == [100 * MS, 130 * MS, 160 * MS, 190 * MS]
    assert inter_token_latencies_s(events) == pytest.approx([0.03, 0.03, 0.03])
    m = request_metrics(0, events, 190 * MS, input_tokens=10, output_tokens=4)
    assert m.decode_tps == pytest.approx(3 / 0.09)


def test_first_chunk_with_several_tokens_counts_them_at_ttft() -> None:
    events = [(100 * MS, 2), (200 * MS, 1)]
    m = request_metrics(0, events, 200 * MS, input_tokens=10, output_tokens=3)
    assert m.ttft_s == pytest.approx(0.1)
    assert m.decode_tps == pytest.approx(1 / 0.1)  # only the token after the first chunk


def test_no_tokens_gives_no_rates() -> None:
    m = request_metrics(0, [], 50 * MS, input_tokens=10, output_tokens=0)
    assert (m.ttft_s, m.decode_tps, m.prefill_tps) == (None, None, None)
    assert m.e2e_s == pytest.approx(0.05)


def test_single_token_has_ttft_but_no_decode_rate() -> None:
    m = request_metrics(0, [(30 * MS, 1)], 30 * MS, input_tokens=6, output_tokens=1)
    assert m.ttft_s == pytest.approx(0.03)
    assert m.decode_tps is None


def test_percentile_matches_linear_interpolation() -> None:
    assert percentile([1, 2, 3, 4], 50) == pytest.approx(2.5)
    assert percentile([10], 99) == 10
    assert percentile([], 50) is None
    assert percentile([0, 10], 90) == pytest.approx(9.0)


def test_mean_sd_uses_sample_stddev() -> None:
    s = mean_sd([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0])
    assert s.mean == pytest.approx(5.0)
    assert s.sd == pytest.approx(2.138089935)  # N-1 in the denominator
    assert mean_sd([3.0]).sd is None
    assert mean_sd([None, 1.0]).n == 1
