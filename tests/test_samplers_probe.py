from __future__ import annotations

from collections.abc import Iterator

import pytest

from edgeprof.analysis.energy import SensorSeries, select_domains
from edgeprof.errors import UsageError
from edgeprof.samplers import discover, probe_all, sampler_sources
from edgeprof.samplers.base import SensorEnv
from tests.fakesys import FakeSys, make_fakesys


@pytest.fixture
def fs() -> Iterator[FakeSys]:
    yield from make_fakesys()


def test_probe_order() -> None:
    assert sampler_sources("power") == [
        "rapl",
        "hwmon",
        "battery",
        "nvml",
        "jetson",
        "rpi",
        "powermetrics",
        "estimate",
    ]


def test_no_sensors_every_source_unavailable_with_reason(fs: FakeSys) -> None:
    results = probe_all(fs.env())  # an empty tree and PATH: a machine without sensors
    assert [r.source for r in results] == sampler_sources("power")
    for r in results[:-1]:
        assert not r.available and r.reason, r
    est = results[-1]
    assert est.available and est.method == "estimated" and "estimated" in est.reason
    power = [s for s in discover(fs.env()) if s.domain != "process"]
    assert [(s.source, s.method) for s in power] == [("estimate", "estimated")]


def test_this_machine_every_unavailable_source_says_why() -> None:
    results = probe_all(SensorEnv.from_environ())
    assert {r.source for r in results} == set(sampler_sources("power"))
    assert all(r.reason for r in results)
    assert all(r.available for r in results if r.source == "estimate")


def test_measured_source_replaces_estimate(fs: FakeSys) -> None:
    fs.rapl_zone("intel-rapl:0", "package-0", 1)
    power = [s for s in discover(fs.env()) if s.domain != "process"]
    assert [(s.sensor, s.method) for s in power] == [("rapl:package-0", "measured")]
    with pytest.raises(UsageError, match="not available here"):
        discover(fs.env(), ["battery"])


def test_context_sources_are_resources_not_power() -> None:
    context = ["thermal", "cpufreq", "devfreq", "throttle", "cpu_throttle"]
    assert sampler_sources("resource") == ["process", *context]
    assert not set(context) & set(sampler_sources("power"))


def test_no_context_sensors_every_source_says_why(fs: FakeSys) -> None:
    results = [r for r in probe_all(fs.env(), role="resource") if r.source != "process"]
    assert [r.source for r in results] == [
        "thermal",
        "cpufreq",
        "devfreq",
        "throttle",
        "cpu_throttle",
    ]
    assert all(not r.available and r.reason for r in results), results


def test_this_machine_context_sensors_available_or_say_why() -> None:
    """On this VM (no thermal zones, no cpufreq driver) each says why; on a device, each is
    available or names its reason."""
    env = SensorEnv.from_environ()
    results = probe_all(env, role="resource")
    assert all(r.available or r.reason for r in results), results
    thermal = [r for r in results if r.source == "thermal"]
    if not any(env.path("/sys/class/thermal").glob("thermal_zone*")):
        assert not thermal[0].available and "no /sys/class/thermal" in thermal[0].reason


def test_temperatures_and_clocks_are_recorded_but_never_summed_as_energy(fs: FakeSys) -> None:
    fs.rapl_zone("intel-rapl:0", "package-0", 1)
    fs.thermal_zone(0, "x86_pkg_temp", 60_000)
    fs.cpufreq_policy(0, "0 1", 3_000_000)
    samplers = discover(fs.env())
    try:
        by_source = {s.source: s for s in samplers}
        assert {"rapl", "thermal", "cpufreq", "process"} <= set(by_source)
        series = [
            SensorSeries(s.sensor, s.domain, m, s.method, [(0, 1.0), (10**9, 2.0)])
            for s in samplers
            for m in s.metrics
        ]
        assert [s.sensor for s in select_domains(series)] == ["rapl:package-0"]
    finally:
        for s in samplers:
            s.close()
