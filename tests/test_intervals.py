"""95 % confidence intervals, checked by hand: the t quantile, the interval of a mean, a first
pass unlike the rest, intervals per repetition in a run's summary, and what `compare`/`decide`
say when two targets' intervals overlap."""

from __future__ import annotations

import math
import statistics
from dataclasses import replace
from pathlib import Path

import pytest

from edgeprof.analysis.metrics import Interval, confidence_interval, first_differs, t95
from edgeprof.analysis.summary import summarize_run
from edgeprof.decision import economics as ec
from edgeprof.decision.compare import CloudTarget, Comparison, performance_bounds
from edgeprof.decision.economics import DevicePerformance
from edgeprof.store import Store
from tests.builders import add_run, device_row, request_row
from tests.test_verdict import DEDICATED, FAST, _cloud, _comparison, _device, _say


def test_t_quantiles_match_the_table_and_the_normal_limit() -> None:
    assert t95(1) == 12.706 and t95(2) == 4.303 and t95(30) == 2.042
    assert t95(40) == pytest.approx(2.021, abs=5e-4)  # statistics tables: 2.0211
    assert t95(120) == pytest.approx(1.980, abs=5e-4)  # 1.9799
    assert t95(10**6) == pytest.approx(1.95996, abs=1e-4)
    with pytest.raises(ValueError):
        t95(0)


def test_interval_of_three_values_by_hand() -> None:
    # mean 12, sample sd 2, n 3: half-width 4.303 x 2 / sqrt(3) = 4.9687
    ci = confidence_interval([10.0, 12.0, 14.0])
    assert ci is not None
    assert ci.n == 3 and ci.mean == 12.0
    assert ci.half_width == pytest.approx(4.303 * 2 / math.sqrt(3))
    assert ci.relative == pytest.approx(4.9687 / 12, abs=1e-4)
    assert (ci.low, ci.high) == pytest.approx((12 - 4.9687, 12 + 4.9687), abs=1e-4)
    assert confidence_interval([5.0]) is None and confidence_interval([]) is None
    assert confidence_interval([7.0, None, 7.0]) == Interval(7.0, 7.0, 7.0, 2)


def test_overlap_and_scaling() -> None:
    a, b, c = Interval(10, 9, 11, 3), Interval(11.5, 10.8, 12.2, 3), Interval(13, 12, 14, 3)
    assert a.overlaps(b) and b.overlaps(a) and b.overlaps(c)
    assert not a.overlaps(c)
    assert a.scaled(2) == Interval(20, 18, 22, 3)


def test_a_first_pass_outside_the_others_interval_is_flagged() -> None:
    rest = [68.1, 69.5, 68.8, 69.0]
    # the case: a first run 10 % below the others
    differs = first_differs([61.6, *rest])
    assert differs == pytest.approx((61.6 - statistics.fmean(rest)) / statistics.fmean(rest))
    assert first_differs([68.7, *rest]) is None  # inside the others' interval
    assert first_differs([61.6, 68.1]) is None  # one other value: no interval to be outside


def _run_with_passes(store: Store, decode_by_pass: list[list[float]]) -> str:
    """A run whose pass p has one request per value, with those decode tok/s."""
    device = device_row("box")
    run_id = add_run(store, device, n_requests=0, n_samples=0)
    seq = 0
    for rep, values in enumerate(decode_by_pass):
        for v in values:
            store.insert_request(
                request_row(run_id, seq, repetition=rep, decode_tps=v, energy_j=v / 10,
                            output_tokens=16)
            )  # fmt: skip
            seq += 1
    return run_id


def test_summary_intervals_count_complete_passes(tmp_path: Path) -> None:
    with Store(tmp_path / "p.db") as store:
        # three complete passes of two prompts, and a fourth cut short (a soak's clock)
        run_id = _run_with_passes(store, [[60, 80], [62, 82], [64, 84], [10]])
        s = summarize_run(store, run_id)
    means = [70.0, 72.0, 74.0]  # each complete pass's mean decode tok/s
    assert s.n_repetitions == 3
    assert s.decode_tps_ci is not None and s.decode_tps_ci.n == 3
    assert s.decode_tps_ci.mean == pytest.approx(72.0)
    half = 4.303 * statistics.stdev(means) / math.sqrt(3)
    assert s.decode_tps_ci.half_width == pytest.approx(half)
    # J/output token per pass: (v1 + v2) / 10 J over 32 tokens
    j = [(60 + 80) / 320, (62 + 82) / 320, (64 + 84) / 320]
    assert s.j_per_output_token_ci is not None
    assert s.j_per_output_token_ci.mean == pytest.approx(statistics.fmean(j))


def test_performance_bounds_move_speed_and_energy_per_token_together(tmp_path: Path) -> None:
    with Store(tmp_path / "p.db") as store:
        run_id = _run_with_passes(store, [[60, 80], [62, 82], [64, 84]])
        s = summarize_run(store, run_id)
    p = DevicePerformance(400.0, 72.0, 0.2, 0.02, idle_power_w=3.0)
    bounds = performance_bounds(p, s)
    assert bounds is not None and s.decode_tps_ci is not None
    slow, fast = bounds
    assert slow.decode_tps == pytest.approx(s.decode_tps_ci.low)
    assert fast.decode_tps == pytest.approx(s.decode_tps_ci.high)
    # the same power: J/token scales inversely with tok/s
    assert slow.j_per_output_token * slow.decode_tps == pytest.approx(0.2 * 72.0)
    assert slow.idle_power_w == fast.idle_power_w == 3.0
    one = replace(s, decode_tps_ci=None)
    assert performance_bounds(p, one) is None


def _with_cost_ci(c: Comparison, name: str, low: float, high: float) -> Comparison:
    pairs = tuple(
        replace(p, device_cost_per_day_ci_usd=(low, high)) if p.device == name else p
        for p in c.pairs
    )
    return replace(c, pairs=pairs)


def test_a_winner_inside_the_noise_is_not_called_a_winner() -> None:
    # a device at $x/day against a cloud 8 % dearer: beyond the 5 % close call, so without
    # intervals the device wins outright; with an interval reaching past the cloud's cost,
    # the verdict says the gap is inside the noise.
    device = _device("llama.cpp", 40, FAST)
    probe = _comparison([device], [_cloud("api", 1.0)], DEDICATED)
    device_day = probe.pairs[0].result.device_cost_per_day_usd
    cloud = _cloud_costing(1.08 * device_day, probe)
    c = _comparison([device], [cloud], DEDICATED)
    winner, text = _say(c)
    assert winner == "llama.cpp" and "inside the noise" not in text and "within 5%" not in text
    noisy = _with_cost_ci(c, "llama.cpp", 0.9 * device_day, 1.15 * device_day)
    winner, text = _say(noisy)
    assert "The 95% intervals of the two overlap" in text
    assert "inside the noise of the measurements, so this is no winner" in text
    narrow = _with_cost_ci(c, "llama.cpp", 0.97 * device_day, 1.03 * device_day)
    assert "intervals of the two overlap" not in _say(narrow)[1]


def test_two_device_targets_with_overlapping_intervals_are_a_tie() -> None:
    a, b = _device("llama.cpp", 40, FAST), _device("ONNX int4", 30, FAST, idle_w=6.0)
    c = _comparison([a, b], [_cloud("pricey", 60.0)], DEDICATED)
    day = {p.device: p.result.device_cost_per_day_usd for p in c.pairs}
    best, other = sorted(day, key=day.__getitem__)
    assert day[other] > 1.06 * day[best]  # apart by more than the 5 % close call
    assert "costs about the same" not in _say(c)[1]
    c = _with_cost_ci(c, best, 0.95 * day[best], 1.10 * day[best])
    c = _with_cost_ci(c, other, 0.90 * day[other], 1.05 * day[other])
    text = _say(c)[1]
    assert f"costs about the same as {best}" in text and "their 95% intervals overlap" in text


def _cloud_costing(usd_per_day: float, c: Comparison) -> CloudTarget:
    """A cloud whose bill at the comparison's workload is `usd_per_day`."""
    w = c.workload
    per_request = usd_per_day / w.requests_per_day
    out_usd_per_m = per_request / w.output_tokens * 1e6  # input priced at zero
    cloud = _cloud("api", out_usd_per_m, in_usd_per_m=0.0)
    assert ec.cloud_cost_per_day_usd(
        w.requests_per_day, ec.cloud_cost_per_request_usd(w, cloud.price)
    ) == pytest.approx(usd_per_day)
    return cloud
