"""Throttling: a Raspberry Pi's `vcgencmd get_throttled` (a fake vcgencmd) and Intel's
thermal-throttle counters (a fake sysfs)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from edgeprof.errors import SensorError
from edgeprof.samplers.base import Every, Reading, Sampler
from edgeprof.samplers.rpi import GROUP_FIX
from edgeprof.samplers.throttle import (
    CpuThrottleSampler,
    RpiThrottleSampler,
    describe_mask,
    parse_temp,
    parse_throttled,
    readings,
)
from tests.fakesys import FakeSys, make_fakesys


@pytest.fixture
def fs() -> Iterator[FakeSys]:
    yield from make_fakesys()


def first_readings(s: Sampler, timeout_s: float = 10.0) -> list[Reading]:
    """The first readings the sampler's thread hands over."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = s.read()
        if got:
            return got
        time.sleep(0.02)
    raise AssertionError("no readings within the timeout")


def test_bit_field_now_and_since_boot() -> None:
    mask = parse_throttled("throttled=0x50005\n")
    assert mask == 0x50005
    assert describe_mask(0x50005) == (
        "now: under-voltage, throttled; since boot: under-voltage, throttled (throttled=0x50005)"
    )
    assert describe_mask(0) == "now: none; since boot: none (throttled=0x0)"
    values = {r.metric: r.value for r in readings("throttle:rpi", 0x50005, None)}
    assert values == {"throttled": 1.0, "throttle_mask": float(0x50005)}


def test_only_past_events_are_not_throttling_now() -> None:
    values = {r.metric: r.value for r in readings("throttle:rpi", 0x80000, 51.0)}
    assert values == {"throttled": 0.0, "throttle_mask": float(0x80000), "temp_c": 51.0}
    assert "since boot: soft temperature limit" in describe_mask(0x80000)


@pytest.mark.parametrize(
    ("text", "temp_c"),
    [("temp=47.2'C\n", 47.2), ("temp=-5.0'C", -5.0), ("temp=999.0'C", None), ("error", None)],
)
def test_measure_temp_parsed_and_absurd_values_dropped(text: str, temp_c: float | None) -> None:
    assert parse_temp(text) == temp_c


def test_pi_with_a_thermal_zone_reads_throttling_only(fs: FakeSys) -> None:
    fs.thermal_zone(0, "cpu-thermal", 52_000)
    fs.vcgencmd(get_throttled="throttled=0x0\n", measure_temp="temp=52.0'C\n")
    (p,) = RpiThrottleSampler.probe(fs.env())
    assert p.available and p.sensor == "throttle:rpi" and "now: none" in p.reason
    (s,) = RpiThrottleSampler.discover(fs.env())
    try:
        assert (s.domain, s.metrics) == ("thermal", ("throttled", "throttle_mask"))
        got = {r.metric: r.value for r in first_readings(s)}
        assert got == {"throttled": 0.0, "throttle_mask": 0.0}
    finally:
        s.close()


def test_pi_without_a_thermal_zone_reads_measure_temp(fs: FakeSys) -> None:
    fs.vcgencmd(get_throttled="throttled=0x20002\n", measure_temp="temp=71.4'C\n")
    (p,) = RpiThrottleSampler.probe(fs.env())
    assert p.available and "measure_temp" in p.reason and "ARM clock capped" in p.reason
    (s,) = RpiThrottleSampler.discover(fs.env())
    try:
        assert s.metrics == ("throttled", "throttle_mask", "temp_c")
        got = {r.metric: r.value for r in first_readings(s)}
        assert got == {"throttled": 1.0, "throttle_mask": float(0x20002), "temp_c": 71.4}
    finally:
        s.close()


def test_vcgencmd_without_video_group_access(fs: FakeSys) -> None:
    fs.vcgencmd(get_throttled=("VCHI initialization failed\n", 255))
    (p,) = RpiThrottleSampler.probe(fs.env())
    assert not p.available and "VCHI initialization failed" in p.reason
    assert p.fix == GROUP_FIX
    assert RpiThrottleSampler.discover(fs.env()) == []


def test_vcgencmd_failing_mid_run_is_reported_by_read(fs: FakeSys) -> None:
    fs.vcgencmd(get_throttled="throttled=0x0\n")
    (s,) = RpiThrottleSampler.discover(fs.env())
    try:
        first_readings(s)
        fs.vcgencmd(get_throttled=('error=1 error_msg="Command not registered"\n', 1))
        deadline = time.monotonic() + 10
        with pytest.raises(SensorError, match="get_throttled failed"):
            while time.monotonic() < deadline:
                s.read()
                time.sleep(0.05)
    finally:
        s.close()


def test_not_a_pi(fs: FakeSys) -> None:
    (p,) = RpiThrottleSampler.probe(fs.env())
    assert not p.available and p.reason.startswith("vcgencmd not found")


def test_intel_throttle_counters_rising_read_as_throttled(
    fs: FakeSys, monkeypatch: pytest.MonkeyPatch
) -> None:
    for cpu in range(4):  # two packages of two CPUs
        fs.cpu_throttle(cpu, core_count=3, package_count=7, package=cpu // 2)
    (s,) = CpuThrottleSampler.discover(fs.env())
    assert isinstance(s, CpuThrottleSampler)
    # Every core's counter, each package's once.
    assert len(s.files) == 4 + 2 and (s.domain, s.metrics) == ("thermal", ("throttled",))
    monkeypatch.setattr(Every, "due", lambda self: True)  # every reading due from here
    assert [(r.sensor, r.metric, r.value) for r in s.read()] == [
        ("cpu_throttle:x86", "throttled", 0.0)  # counts since boot: the first says nothing
    ]
    assert s.read()[0].value == 0.0
    fs.cpu_throttle(3, core_count=4, package_count=7, package=1)
    assert s.read()[0].value == 1.0
    assert s.read()[0].value == 0.0  # no new event since


def test_intel_throttle_counters_read_at_most_once_a_second(fs: FakeSys) -> None:
    fs.cpu_throttle(0, core_count=0, package_count=0)
    (s,) = CpuThrottleSampler.discover(fs.env())
    assert s.read() and s.read() == []


def test_no_throttle_counters_says_why(fs: FakeSys) -> None:
    (p,) = CpuThrottleSampler.probe(fs.env())
    assert not p.available and "thermal_throttle" in p.reason and "Intel" in p.reason
    fs.cpu_throttle(0, core_count=0, package_count=0)
    fs.write("/sys/devices/system/cpu/cpu0/thermal_throttle/core_throttle_count", "")
    (p,) = CpuThrottleSampler.probe(fs.env())
    assert not p.available and p.reason.endswith("core_throttle_count does not hold a number")
    assert CpuThrottleSampler.discover(fs.env()) == []
