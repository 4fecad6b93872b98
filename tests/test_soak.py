"""Soak analysis (edgeprof.analysis.soak) and its figure, on hand-made rows whose expected
figures are computed by hand in the comments. Nothing here depends on the instruction set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edgeprof.analysis.soak import (
    decode_mask,
    is_soak_run,
    load_soak,
    prorated_tokens,
    sustained_figures,
    throttle_events,
    window_bounds,
)
from edgeprof.errors import UsageError
from edgeprof.report.plots import plot_soak, soak_figure
from edgeprof.report.soak_text import soak_lines
from edgeprof.store.db import Store
from tests.builders import request_row

S = 1_000_000_000
RUN = "01JDSOAKRUN000000000000000"

# (start s, end s, output tokens, decode tok/s, energy J) relative to the run's t0.
# Window 0 = [10, 70) s, window 1 = [70, 130) s, then a partial [130, 168] s tail.
STRADDLER = (62, 78, 80, 90.0, 144.0)  # 16 s: half its tokens in window 0, half in window 1
REQUESTS = (
    [(10 + 10 * i, 18 + 10 * i, 80, d, 80.0) for i, d in enumerate((100, 102, 98, 100, 101))]
    + [STRADDLER]
    + [(80 + 10 * i, 88 + 10 * i, 60, d, 64.0) for i, d in enumerate((75, 76, 74, 75, 77))]
    + [(130 + 10 * i, 138 + 10 * i, 60, 74.0, 64.0) for i in range(4)]
)


def _sensor(sensor: str, metric: str, domain: str, method: str = "measured") -> dict[str, Any]:
    return {"run_id": RUN, "sensor": sensor, "metric": metric, "domain": domain, "unit": "",
            "method": method, "detail": ""}  # fmt: skip


def _throttled_at(t: int) -> bool:
    return 95 <= t < 105 or t >= 140


def _samples(thermal: bool) -> list[tuple[str, int, str, str, float]]:
    rows = []
    for t in range(0, 171):  # one sample a second, 0..170 s
        # 10 W through t = 70 s, 8 W from 71 s: a ramp from 70 to 71 s
        rows.append((RUN, t * S, "estimate", "power_w", 10.0 if t <= 70 else 8.0))
        if not thermal:
            continue
        rows += [
            (RUN, t * S, "thermal:cpu-thermal", "temp_c", 50 + 0.2 * t),
            (RUN, t * S, "cpufreq:policy0", "freq_hz", 2.4e9 if t < 100 else 1.8e9),
            (RUN, t * S, "cpufreq:policy4", "freq_hz", 1.0e9),  # a little cluster
            (RUN, t * S, "devfreq:gpu", "freq_hz", 0.5e9),  # not a CPU clock: ignored
            (RUN, t * S, "throttle:rpi", "throttled", float(_throttled_at(t))),
        ]
        mask = 0x50000 | ((0x6 if t < 120 else 0xC) if _throttled_at(t) else 0)
        rows.append((RUN, t * S, "throttle:rpi", "throttle_mask", float(mask)))
    return rows


def make_soak(tmp_path: Path, thermal: bool = True, requests: Any = REQUESTS) -> Store:
    store = Store(tmp_path / "soak.db")
    store.insert_run({"id": RUN, "backend": "llamacpp", "target": "demo.gguf",
                      "status": "complete", "t0_ns": 0})  # fmt: skip
    sensors = [_sensor("estimate", "power_w", "package", "estimated")]
    if thermal:
        sensors += [
            _sensor("thermal:cpu-thermal", "temp_c", "thermal"),
            _sensor("cpufreq:policy0", "freq_hz", "clock"),
            _sensor("cpufreq:policy4", "freq_hz", "clock"),
            _sensor("devfreq:gpu", "freq_hz", "clock"),
            _sensor("throttle:rpi", "throttled", "thermal"),
            _sensor("throttle:rpi", "throttle_mask", "thermal"),
        ]
    store.insert_sensors(sensors)
    store.insert_samples(_samples(thermal))
    # A warm-up request before the soak: never counted, never the soak's start.
    store.insert_request(request_row(RUN, 0, warmup=1, t_start_ns=0, t_end_ns=2 * S))
    for seq, (t0, t1, n, decode, energy) in enumerate(requests, start=1):
        store.insert_request(
            request_row(
                RUN,
                seq,
                t_start_ns=t0 * S,
                t_end_ns=t1 * S,
                output_tokens=n,
                decode_tps=decode,
                prefill_tps=400.0 + seq,
                ttft_s=0.01 * seq,
                energy_j=energy,
                e2e_s=float(t1 - t0),
            )
        )
    return store


def test_windows_from_the_first_measured_request(tmp_path: Path) -> None:
    soak = load_soak(make_soak(tmp_path), RUN)
    assert soak is not None and soak.is_soak
    assert soak.origin_ns == 10 * S  # the warm-up at 0-2 s is not the start
    assert [(w.t0_s, w.t1_s, w.partial) for w in soak.windows] == [
        (0.0, 60.0, False),
        (60.0, 120.0, False),
        (120.0, 158.0, True),
    ]
    w0, w1, tail = soak.windows
    # tokens: 5 × 80 + half the straddler's 80 = 440 in window 0; 40 + 5 × 60 = 340 in 1
    assert w0.output_tokens == pytest.approx(440)
    assert w0.output_tps == pytest.approx(440 / 60)
    assert w1.output_tps == pytest.approx(340 / 60)
    assert tail.output_tps == pytest.approx(240 / 38)
    # busy: 5 × 8 s + the straddler's 8 s in each of the first two windows
    assert w0.busy_share == pytest.approx(48 / 60)
    assert w1.busy_share == pytest.approx(48 / 60)
    # decode median of the requests finishing in the window: the straddler finishes in 1
    assert (w0.n_requests, w1.n_requests) == (5, 6)
    assert w0.decode_tps_median == 100
    assert w1.decode_tps_median == pytest.approx((75 + 76) / 2)
    # power integrated, not averaged: [10, 70] s at 10 W; 70-71 s a ramp (9 J), then 59 × 8 W
    assert w0.power_w == pytest.approx(10.0)
    assert w1.power_w == pytest.approx((9 + 59 * 8) / 60)
    assert w0.power_method == "estimated"


def test_temperature_clock_and_throttle_per_window(tmp_path: Path) -> None:
    soak = load_soak(make_soak(tmp_path), RUN)
    assert soak is not None
    w0, w1, _tail = soak.windows
    # samples at t = 10..69 s: 50 + 0.2 t has mean 50 + 0.2 × 39.5, max 50 + 0.2 × 69
    assert w0.temp_c_mean["thermal:cpu-thermal"] == pytest.approx(57.9)
    assert w0.temp_c_max["thermal:cpu-thermal"] == pytest.approx(63.8)
    assert w1.temp_c_mean["thermal:cpu-thermal"] == pytest.approx(69.9)
    # the big cluster's mean is the headline; the little cluster's 1 GHz is the lowest sample;
    # the GPU's devfreq clock is not a CPU clock
    assert w0.clock_hz == pytest.approx(2.4e9)
    assert w1.clock_hz == pytest.approx((30 * 2.4e9 + 30 * 1.8e9) / 60)
    assert w0.freq_hz_min == pytest.approx(1.0e9)
    assert set(w0.freq_hz_mean) == {"cpufreq:policy0", "cpufreq:policy4"}
    assert [w.throttle_events for w in soak.windows] == [0, 1, 1]
    first, second = soak.events
    assert (first.t_s, first.end_s, first.from_start) == (85.0, 95.0, False)
    assert first.mask == 0x50006
    assert first.reasons == ("ARM clock capped", "throttled")
    assert (second.t_s, second.end_s) == (130.0, None)  # still throttled at the end
    assert second.reasons == ("throttled", "soft temperature limit")


def test_first_vs_last_minute(tmp_path: Path) -> None:
    soak = load_soak(make_soak(tmp_path), RUN)
    assert soak is not None and soak.first_last is not None
    fl = soak.first_last
    assert (fl.first.index, fl.last.index) == (0, 1)  # the partial tail is never compared
    assert fl.output_tps_change_pct == pytest.approx((340 - 440) / 440 * 100)
    assert fl.decode_tps_change_pct == pytest.approx((75.5 - 100) / 100 * 100)
    assert fl.power_w_change_pct == pytest.approx(((481 / 60) - 10) / 10 * 100)
    assert fl.clock_hz_change_pct == pytest.approx(-12.5)
    assert fl.temp_c_change["thermal:cpu-thermal"] == pytest.approx(12.0)


def test_sustained_figures_are_the_later_half(tmp_path: Path) -> None:
    store = make_soak(tmp_path)
    s = sustained_figures(store, RUN)
    assert s is not None
    # two full windows: the later half is window 1, [60, 120) s into the soak
    assert (s.t0_s, s.t1_s, s.n_windows, s.n_requests) == (60.0, 120.0, 1, 6)
    assert s.output_tps == pytest.approx(340 / 60)
    assert s.burst_output_tps == pytest.approx(440 / 60)
    assert s.output_tps_change_pct == pytest.approx(-100 / 440 * 100)
    assert s.decode_tps_mean == pytest.approx((90 + 75 + 76 + 74 + 75 + 77) / 6)
    assert s.prefill_tps_mean == pytest.approx(400 + sum(range(6, 12)) / 6)  # seqs 6..11
    # request energy over busy time, as RunSummary: (144 + 5 × 64) J over 16 + 5 × 8 s
    assert s.avg_power_w == pytest.approx(464 / 56)
    assert s.j_per_output_token == pytest.approx(464 / 380)
    assert s.energy_method == "estimated"
    assert s.span_power_w == pytest.approx(481 / 60)
    assert s.drift_pct is None and s.steady is None  # one window: drift unknown


def test_sustained_drift_over_several_windows(tmp_path: Path) -> None:
    # 6 full windows of 10 s, one 10-token request a second, slowing down window by window
    reqs = [(10 + t, 11 + t, 10 if t < 30 else 10 - (t - 30) // 10, 50.0, 1.0)
            for t in range(60)]  # fmt: skip
    store = make_soak(tmp_path, thermal=False, requests=reqs)
    soak = load_soak(store, RUN, window_s=10)
    assert soak is not None and soak.sustained is not None
    s = soak.sustained
    # the later half of 6 windows is 3: tokens/s 10, 9, 8 in them (busy every second)
    assert (s.t0_s, s.t1_s, s.n_windows) == (30.0, 60.0, 3)
    assert s.output_tps == pytest.approx(9.0)
    assert s.drift_pct == pytest.approx(-20.0)
    assert s.steady is False
    assert any("still drifting (-20%" in line for line in soak_lines(soak))


def test_short_run_is_not_a_soak(tmp_path: Path) -> None:
    store = make_soak(tmp_path, requests=REQUESTS[:9])  # 10 s to 98 s: one full window
    assert not is_soak_run(store, RUN)
    assert sustained_figures(store, RUN) is None
    soak = load_soak(store, RUN)
    assert soak is not None
    assert not soak.is_soak and soak.first_last is None and soak.sustained is None
    lines = soak_lines(soak)
    assert len(lines) == 1 and "not a soak" in lines[0]


def test_soak_lines(tmp_path: Path) -> None:
    soak = load_soak(make_soak(tmp_path), RUN)
    assert soak is not None
    lines = soak_lines(soak)
    assert lines[0] == "soak 02:38 in 2 full 60 s windows + a 38 s tail (not compared)"
    assert lines[1] == (
        "first minute 7.3 tok/s, 10.0 W (estimated), 58 °C; last minute 5.7 tok/s (-23%), "
        "8.0 W (-20%), 70 °C (+12 °C, thermal:cpu-thermal)"
    )
    assert lines[2] == (
        "decode 100.0 -> 75.5 tok/s per request (-24%); "
        "clock 2.40 -> 2.10 GHz (-12%) (fastest CPU clock's mean)"
    )
    assert lines[3] == (
        "throttled 2 times at 01:25, 02:10 (ARM clock capped, soft temperature limit, throttled)"
    )
    assert lines[4].startswith("sustained (01:00-02:00, the later half of the full windows): 5.7")


def test_soak_lines_without_thermal_sensors(tmp_path: Path) -> None:
    soak = load_soak(make_soak(tmp_path, thermal=False), RUN)
    assert soak is not None
    lines = soak_lines(soak)
    assert "°C" not in lines[1]
    assert "throttling not recorded (no throttle sensor on this device)" in lines


def test_throttled_from_the_first_sample_and_unknown_masks() -> None:
    samples = [
        {"t_ns": t * S, "sensor": "board:x", "metric": "throttled", "value": v}
        for t, v in ((0, 1), (1, 1), (2, 0), (3, 0), (4, 1))
    ] + [{"t_ns": 0, "sensor": "board:x", "metric": "throttle_mask", "value": 6}]
    events = throttle_events(samples, origin_ns=5 * S)
    assert [(e.t_s, e.end_s, e.from_start) for e in events] == [(-5.0, -3.0, True),
                                                                 (-1.0, None, False)]  # fmt: skip
    assert events[0].reasons == ("mask 0x6",)  # a source whose bits are not known: raw
    assert events[1].mask is None and events[1].reasons == ()
    assert decode_mask("throttle:rpi", 0x150001) == ("under-voltage", "bits 0x100000")


def test_window_edges() -> None:
    assert window_bounds(0, 120 * S, 60) == [(0, 60 * S, False), (60 * S, 120 * S, False)]
    assert window_bounds(5, 5 + 30 * S, 60) == [(5, 5 + 30 * S, True)]
    reqs = [{"t_start_ns": 0, "t_end_ns": 4 * S, "output_tokens": 8}]
    assert prorated_tokens(reqs, 1 * S, 2 * S) == pytest.approx(2.0)
    assert prorated_tokens(reqs, 4 * S, 9 * S) == 0.0


def test_plot_has_a_panel_per_measured_quantity(tmp_path: Path) -> None:
    store = make_soak(tmp_path)
    out = plot_soak(store, RUN, tmp_path / "soak.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    soak = load_soak(store, RUN)
    fig = soak_figure(soak)
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert labels == ["tokens/s", "power (W) (estimated)", "temperature (°C)", "clock (GHz)"]
    # throttle events: one red dashed line per event on every panel
    for ax in fig.axes:
        at = [list(ln.get_xdata()) for ln in ax.get_lines()]
        assert at.count([85 / 60] * 2) == 1 and at.count([130 / 60] * 2) == 1
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "first minute" in texts and "last minute" in texts
    assert "throttled 2×" in fig.get_suptitle()


def test_plot_without_thermal_sensors_has_two_panels(tmp_path: Path) -> None:
    store = make_soak(tmp_path, thermal=False)
    soak = load_soak(store, RUN)
    fig = soak_figure(soak)
    assert [ax.get_ylabel() for ax in fig.axes] == ["tokens/s", "power (W) (estimated)"]
    with pytest.raises(UsageError, match=r"\.png"):
        plot_soak(store, RUN, tmp_path / "soak.txt")
