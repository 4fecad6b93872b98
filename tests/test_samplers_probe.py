from __future__ import annotations

from collections.abc import Iterator

import pytest

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
