from __future__ import annotations

from collections.abc import Iterator

import pytest

from edgeprof.samplers import discover
from edgeprof.samplers.battery import BatterySampler
from tests.fakesys import DENIED, FakeSys, as_unprivileged, make_fakesys


@pytest.fixture
def fs() -> Iterator[FakeSys]:
    yield from make_fakesys()


def test_power_now_in_microwatts_while_discharging(fs: FakeSys) -> None:
    fs.write("/sys/class/power_supply/AC/type", "Mains")
    fs.battery("BAT1", "Discharging", power_now=12_345_000, energy_now=40_000_000)
    (s,) = BatterySampler.discover(fs.env())
    assert (s.sensor, s.domain) == ("battery:BAT1", "battery")
    assert s.read()[0].value == pytest.approx(12.345)


def test_current_times_voltage_takes_absolute_current(fs: FakeSys) -> None:
    fs.battery("BAT0", "Discharging", current_now=-1_500_000, voltage_now=11_400_000)
    (s,) = BatterySampler.discover(fs.env())
    assert s.read()[0].value == pytest.approx(1.5 * 11.4)


def test_on_ac_is_unavailable_with_reason_and_falls_back(fs: FakeSys) -> None:
    fs.battery("BAT0", "Charging", power_now=30_000_000)
    (p,) = BatterySampler.probe(fs.env())
    assert not p.available
    assert p.reason.startswith("on AC power (status Charging)") and "unplug" in p.fix
    power = [s for s in discover(fs.env()) if s.domain != "process"]
    assert [(s.sensor, s.method) for s in power] == [("estimate:cpu", "estimated")]


def test_plugged_in_mid_run_reads_nothing(fs: FakeSys) -> None:
    fs.battery("BAT0", "Discharging", power_now=9_000_000)
    (s,) = BatterySampler.discover(fs.env())
    assert len(s.read()) == 1
    fs.write("/sys/class/power_supply/BAT0/status", "Charging")
    assert s.read() == []


def test_peripheral_battery_ignored(fs: FakeSys) -> None:
    fs.battery("hidpp_battery_0", "Discharging", power_now=1, scope="Device")
    (p,) = BatterySampler.probe(fs.env())
    assert not p.available and "no battery" in p.reason


def test_missing_and_permission_denied_files(fs: FakeSys) -> None:
    fs.battery("BAT0", "Discharging", voltage_now=11_000_000)  # current_now missing
    (p,) = BatterySampler.probe(fs.env())
    assert p.reason == "/sys/class/power_supply/BAT0/current_now is missing"
    fs.write("/sys/class/power_supply/BAT0/current_now", 1_000_000, mode=DENIED)
    (p,) = as_unprivileged(lambda: BatterySampler.probe(fs.env()))
    assert p.reason == "permission denied reading /sys/class/power_supply/BAT0/current_now"
