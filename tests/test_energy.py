from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeprof.analysis.energy import (
    SensorSeries,
    build_series,
    counter_power,
    net_energy_j,
    select_domains,
    window_energy,
)
from edgeprof.samplers.rapl import RaplSampler
from tests.fakesys import FakeSys, make_fakesys

S = 1_000_000_000  # ns per second


@pytest.fixture
def fs() -> Iterator[FakeSys]:
    yield from make_fakesys()


def ser(
    sensor: str,
    domain: str,
    metric: str = "power_w",
    method: str = "measured",
    points: list[tuple[int, float]] | None = None,
) -> SensorSeries:
    return SensorSeries(sensor, domain, metric, method, points or [(0, 1.0), (10 * S, 1.0)])


def test_synthetic_request_window_within_one_percent(fs: FakeSys) -> None:
    """A real RAPL sampler reads a fake counter that wraps mid-window; DRAM is a sampled power
    curve; core must be ignored. Hand-computed: package ∫(10 + 5t)dt, dram ∫(2 + sin 3t)dt."""
    wrap_uj = 20_000_000  # 20 J: wraps during the window
    fs.rapl_zone("intel-rapl:0", "package-0", 0, max_range_uj=wrap_uj)
    fs.rapl_zone("intel-rapl:0:0", "core", 0, max_range_uj=wrap_uj)
    samplers = {s.sensor: s for s in RaplSampler.discover(fs.env())}
    pkg_pts, core_pts, dram_pts = [], [], []
    for k in range(31):
        t = k / 10
        e_uj = round((10 * t + 2.5 * t * t) * 1e6)
        fs.set_energy("intel-rapl:0", e_uj % wrap_uj)
        fs.set_energy("intel-rapl:0:0", (e_uj // 2) % wrap_uj)
        pkg_pts.append((k * S // 10, samplers["rapl:package-0"].read()[0].value))
        core_pts.append((k * S // 10, samplers["rapl:package-0/core"].read()[0].value))
        td = t + 0.03  # another sensor, sampled at other instants
        dram_pts.append((round(td * S), 2 + math.sin(3 * td)))
    series = [
        ser("rapl:package-0", "package", "energy_j", points=pkg_pts),
        ser("rapl:package-0/core", "core", "energy_j", points=core_pts),
        ser("hwmon:dimm:power1", "dram", points=dram_pts),
    ]
    t0, t1 = 0.55, 2.45
    hand_pkg = 10 * (t1 - t0) + 2.5 * (t1**2 - t0**2)
    hand_dram = 2 * (t1 - t0) + (math.cos(3 * t0) - math.cos(3 * t1)) / 3
    w = window_energy(series, round(t0 * S), round(t1 * S))
    assert w.sensors == ("rapl:package-0", "hwmon:dimm:power1")
    assert w.domains == ("dram", "package") and w.method == "measured"
    assert w.energy_j == pytest.approx(hand_pkg + hand_dram, rel=0.01)
    assert w.per_sensor_j["rapl:package-0"] == pytest.approx(hand_pkg, rel=0.01)
    assert w.avg_power_w == pytest.approx((hand_pkg + hand_dram) / (t1 - t0), rel=0.01)
    # peak of package (10 + 5t) + dram (2 + sin 3t) over the window, within the sampling grain
    peak = max(10 + 5 * t + 2 + math.sin(3 * t) for t in [t0 + i * 1e-3 for i in range(1901)])
    assert w.peak_power_w == pytest.approx(peak, rel=0.02)


def test_counter_power_is_interval_average() -> None:
    assert counter_power([(0, 0.0), (S // 2, 5.0), (S, 6.0)]) == [(S // 4, 10.0), (3 * S // 4, 2.0)]


def test_window_outside_samples_gives_none() -> None:
    w = window_energy([ser("rapl:package-0", "package")], 9 * S, 11 * S)
    assert w.energy_j is None and w.method is None


@given(
    watts=st.floats(0.1, 500),
    a=st.integers(0, 5 * S),
    length=st.integers(1, 5 * S),
)
def test_constant_power_integrates_to_power_times_time(watts: float, a: int, length: int) -> None:
    pts = [(k * S // 10, watts) for k in range(101)]
    w = window_energy([ser("hwmon:x:power1", "board", points=pts)], a, a + length)
    assert w.energy_j == pytest.approx(watts * length / S, rel=1e-9)


def names(series: list[SensorSeries]) -> list[str]:
    return [s.sensor for s in select_domains(series)]


def test_selection_rules() -> None:
    rapl = [
        ser("rapl:package-0", "package", "energy_j"),
        ser("rapl:package-0/core", "core", "energy_j"),
        ser("rapl:package-0/uncore", "uncore", "energy_j"),
        ser("rapl:package-0/dram", "dram", "energy_j"),
        ser("rapl:package-1", "package", "energy_j"),
    ]
    gpu = ser("nvml:gpu0", "gpu", "energy_j")
    est = ser("estimate:cpu", "package", method="estimated")
    assert names([*rapl, gpu, est]) == [
        "rapl:package-0",
        "rapl:package-1",
        "rapl:package-0/dram",
        "nvml:gpu0",
    ]
    assert names([*rapl, ser("rapl:psys", "psys", "energy_j"), gpu]) == ["rapl:psys", "nvml:gpu0"]
    assert names([*rapl, gpu, ser("battery:BAT0", "battery")]) == ["battery:BAT0"]
    assert names([*rapl, ser("jetson:VDD_IN", "board")]) == ["jetson:VDD_IN"]
    # hwmon amd_energy and RAPL both measure the package: one source only
    assert names([ser("hwmon:amd_energy:energy17", "package", "energy_j"), rapl[0]]) == [
        "rapl:package-0"
    ]
    assert names([ser("powermetrics:soc", "soc", "energy_j"), ser("hwmon:x:power1", "other")]) == [
        "powermetrics:soc"
    ]
    assert names([rapl[1], rapl[2]]) == []  # core/uncore alone never stand for the package
    assert names([est]) == ["estimate:cpu"]
    assert names([gpu]) == ["nvml:gpu0"]
    # one sensor with both metrics: the counter
    both = [ser("nvml:gpu0", "gpu"), gpu]
    assert [s.metric for s in select_domains(both)] == ["energy_j"]


def test_mixed_estimate_never_summed_with_measured() -> None:
    w = window_energy(
        [ser("estimate:cpu", "package", method="estimated"), ser("nvml:gpu0", "gpu")], 0, S
    )
    assert w.sensors == ("nvml:gpu0",) and w.method == "measured"
    w = window_energy([ser("estimate:cpu", "package", method="estimated")], 0, S)
    assert w.method == "estimated" and w.energy_j == pytest.approx(1.0)


def test_net_energy() -> None:
    assert net_energy_j(30.0, 8.0, 2.5) == pytest.approx(10.0)
    assert net_energy_j(10.0, 8.0, 2.5) == 0.0
    assert net_energy_j(None, 8.0, 2.5) is None


def test_build_series_from_store_rows() -> None:
    sensors = [
        {
            "sensor": "rapl:package-0",
            "metric": "energy_j",
            "domain": "package",
            "method": "measured",
        },
        {"sensor": "process", "metric": "rss_bytes", "domain": "process", "method": "measured"},
    ]
    samples = [
        {"sensor": "rapl:package-0", "metric": "energy_j", "t_ns": 2 * S, "value": 3.0},
        {"sensor": "rapl:package-0", "metric": "energy_j", "t_ns": S, "value": 1.0},
        {"sensor": "process", "metric": "rss_bytes", "t_ns": S, "value": 1e9},
    ]
    (s,) = build_series(sensors, samples)
    assert (s.sensor, s.domain, s.metric, list(s.points)) == (
        "rapl:package-0",
        "package",
        "energy_j",
        [(S, 1.0), (2 * S, 3.0)],
    )
