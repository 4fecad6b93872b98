from __future__ import annotations

from collections.abc import Iterator

import pytest

from edgeprof.samplers import battery as battery_module
from edgeprof.samplers import discover
from edgeprof.samplers.battery import (
    BatteryCapacity,
    BatterySampler,
    battery_capacity,
    parse_ioreg_capacity,
)
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


# -- capacity ------------------------------------------------------------------------------

BAT0 = "/sys/class/power_supply/BAT0"

# Laid out as `ioreg -rn AppleSmartBattery` prints on an Apple silicon MacBook (values
# illustrative): MaxCapacity is a percentage there, the mAh are in AppleRawMaxCapacity, and the
# nested BatteryData dictionary repeats "Voltage" on one line.
IOREG_APPLE_SILICON = """\
+-o AppleSmartBattery  <class AppleSmartBattery, id 0x100000248, registered, matched, active>
    {
      "PostChargeWaitSeconds" = 120
      "built-in" = Yes
      "AppleRawAdapterDetails" = ({"AdapterVoltage"=20000,"Watts"=96,"Current"=4800})
      "CurrentCapacity" = 87
      "MaxCapacity" = 100
      "DesignCapacity" = 6075
      "BatteryData" = {"Voltage"=11000,"DesignCapacity"=6075,"CycleCount"=220}
      "AppleRawMaxCapacity" = 5468
      "AppleRawCurrentCapacity" = 4790
      "Voltage" = 12586
      "IsCharging" = No
    }
"""


def test_capacity_from_energy_full_in_microwatt_hours(fs: FakeSys) -> None:
    fs.battery("BAT0", "Charging", energy_full=52_340_000, energy_full_design=57_000_000)
    assert battery_capacity(fs.env()) == BatteryCapacity(52.34, f"{BAT0}/energy_full")


def test_capacity_from_charge_full_times_minimum_design_voltage(fs: FakeSys) -> None:
    fs.battery("BAT0", "Full", charge_full=4_000_000, voltage_min_design=11_400_000,
               voltage_now=12_900_000, charge_full_design=4_400_000)  # fmt: skip
    cap = battery_capacity(fs.env())
    assert cap is not None and cap.wh == pytest.approx(4.0 * 11.4)
    assert cap.source == f"{BAT0}/charge_full × {BAT0}/voltage_min_design"


def test_design_capacity_when_the_full_capacity_is_missing_zero_or_unreadable(
    fs: FakeSys,
) -> None:
    fs.battery("BAT0", "Discharging", energy_full_design=57_000_000)
    assert battery_capacity(fs.env()) == BatteryCapacity(57.0, f"{BAT0}/energy_full_design")
    fs.write(f"{BAT0}/energy_full", 0)  # a driver that does not know writes 0
    assert battery_capacity(fs.env()) == BatteryCapacity(57.0, f"{BAT0}/energy_full_design")
    fs.write(f"{BAT0}/energy_full", 50_000_000, mode=DENIED)
    cap = as_unprivileged(lambda: battery_capacity(fs.env()))
    assert cap == BatteryCapacity(57.0, f"{BAT0}/energy_full_design")
    assert battery_capacity(fs.env()) == BatteryCapacity(50.0, f"{BAT0}/energy_full")  # root


def test_charge_design_capacity_needs_the_minimum_design_voltage(fs: FakeSys) -> None:
    fs.battery("BAT0", "Unknown", charge_full_design=3_000_000, voltage_now=12_000_000)
    assert battery_capacity(fs.env()) is None  # no voltage_min_design: no guess
    fs.write(f"{BAT0}/voltage_min_design", 7_600_000)
    cap = battery_capacity(fs.env())
    assert cap is not None and cap.wh == pytest.approx(3.0 * 7.6)
    assert cap.source == f"{BAT0}/charge_full_design × {BAT0}/voltage_min_design"


def test_no_battery_no_capacity(fs: FakeSys) -> None:
    assert battery_capacity(fs.env()) is None
    fs.write("/sys/class/power_supply/AC/type", "Mains")
    fs.write("/sys/class/power_supply/AC/online", 1)
    assert battery_capacity(fs.env()) is None
    fs.battery("BAT0", "Discharging", power_now=9_000_000)  # a battery that gives no capacity
    assert battery_capacity(fs.env()) is None


def test_capacity_ignores_a_peripheral_battery(fs: FakeSys) -> None:
    fs.battery("hidpp_battery_0", "Discharging", scope="Device", energy_full=1_500_000)
    assert battery_capacity(fs.env()) is None
    fs.battery("BAT1", "Charging", energy_full=60_000_000)
    assert battery_capacity(fs.env()) == BatteryCapacity(
        60.0, "/sys/class/power_supply/BAT1/energy_full"
    )


def test_ioreg_apple_silicon_uses_raw_mah_and_top_level_voltage() -> None:
    cap = parse_ioreg_capacity(IOREG_APPLE_SILICON)
    assert cap is not None and cap.wh == pytest.approx(5468 * 12586 / 1e6)
    assert cap.source == "ioreg -rn AppleSmartBattery (AppleRawMaxCapacity × Voltage)"


def test_ioreg_other_layouts_and_nonsense() -> None:
    intel = '    {\n      "MaxCapacity" = 5088\n      "Voltage" = 12400\n    }\n'
    cap = parse_ioreg_capacity(intel)  # older Intel Macs: MaxCapacity in mAh
    assert cap is not None and cap.wh == pytest.approx(5088 * 12.4 / 1000)
    assert "MaxCapacity × Voltage" in cap.source
    percent_only = (
        '      "MaxCapacity" = 100\n      "DesignCapacity" = 6075\n      "Voltage" = 12000\n'
    )
    cap = parse_ioreg_capacity(percent_only)
    assert cap is not None and cap.wh == pytest.approx(6075 * 12 / 1000)  # not 100 mAh
    no_voltage = '      "AppleRawMaxCapacity" = 5468\n'
    assert parse_ioreg_capacity(no_voltage) is None
    assert parse_ioreg_capacity("") is None
    assert parse_ioreg_capacity("ioreg: garbage\x00\xff") is None


def test_macos_reads_ioreg_and_never_raises(fs: FakeSys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(battery_module.platform, "system", lambda: "Darwin")
    assert battery_capacity(fs.env()) is None  # no ioreg on the PATH
    fs.data("ioreg", IOREG_APPLE_SILICON)
    fs.exe(
        "ioreg",
        """
        if sys.argv[1:] != ["-rn", "AppleSmartBattery"]:
            sys.exit(2)
        sys.stdout.write(open(DATA).read())
        """,
    )
    cap = battery_capacity(fs.env())
    assert cap is not None and cap.wh == pytest.approx(5468 * 12586 / 1e6)
    fs.exe("ioreg", "sys.stdout.write('no such class'); sys.exit(1)\n")
    assert battery_capacity(fs.env()) is None
    monkeypatch.setattr(battery_module, "IOREG_TIMEOUT_S", 0.2)
    fs.exe("ioreg", "time.sleep(5)\n")
    assert battery_capacity(fs.env()) is None
