"""Temperatures from thermal zones and hwmon temp channels, on fake sysfs trees."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from edgeprof.samplers.base import Every
from edgeprof.samplers.thermal import ThermalSampler
from tests.fakesys import DENIED, FakeSys, as_unprivileged, make_fakesys


@pytest.fixture
def fs() -> Iterator[FakeSys]:
    yield from make_fakesys()


def found(fs: FakeSys) -> dict[str, ThermalSampler]:
    return {s.sensor: s for s in ThermalSampler.discover(fs.env())}  # type: ignore[misc]


def test_zones_named_by_type_in_degrees(fs: FakeSys, monkeypatch: pytest.MonkeyPatch) -> None:
    fs.thermal_zone(0, "acpitz", 27_800)
    zone = fs.thermal_zone(1, "x86_pkg_temp", 54_000)
    s = found(fs)["thermal:x86_pkg_temp"]
    assert (s.domain, s.metrics, s.source) == ("thermal", ("temp_c",), "thermal")
    assert "/sys/class/thermal/thermal_zone1/temp" in s.detail
    assert [(r.metric, r.value) for r in s.read()] == [("temp_c", pytest.approx(54.0))]
    (zone / "temp").chmod(0o644)
    (zone / "temp").write_text("61500\n")
    assert s.read() == []  # temperatures move over seconds: at most one reading a second
    monkeypatch.setattr(Every, "due", lambda self: True)  # every reading due from here
    assert s.read()[0].value == pytest.approx(61.5)


def test_shared_zone_types_suffixed_in_zone_order(fs: FakeSys) -> None:
    fs.thermal_zone(10, "acpitz", 30_000)
    fs.thermal_zone(2, "acpitz", 40_000)
    temps = {name: s.read()[0].value for name, s in found(fs).items()}
    assert temps == {"thermal:acpitz-1": 40.0, "thermal:acpitz-2": 30.0}


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (-274_000, "reads -274 °C, outside -40..150 °C"),  # a placeholder, not a temperature
        (200_000, "reads 200 °C, outside -40..150 °C"),
        ("", "does not hold a number"),
    ],
)
def test_absurd_or_unreadable_zone_left_out_with_reason(fs: FakeSys, raw: object, why: str) -> None:
    fs.thermal_zone(0, "cpu-thermal", 45_000)
    fs.thermal_zone(1, "pmic-die", raw)
    assert list(found(fs)) == ["thermal:cpu-thermal"]
    bad = {p.sensor: p for p in ThermalSampler.probe(fs.env())}["thermal:pmic-die"]
    assert not bad.available and why in bad.reason
    assert "/sys/class/thermal/thermal_zone1/temp" in bad.reason  # the device's path


def test_a_reading_that_turns_absurd_is_skipped(
    fs: FakeSys, monkeypatch: pytest.MonkeyPatch
) -> None:
    zone = fs.thermal_zone(0, "soc", 45_000)
    monkeypatch.setattr(Every, "due", lambda self: True)  # every reading due from here
    (s,) = found(fs).values()
    (zone / "temp").chmod(0o644)
    (zone / "temp").write_text("-273150\n")
    assert s.read() == []


def test_root_only_zone_says_permission_denied(fs: FakeSys) -> None:
    fs.thermal_zone(0, "soc_thermal", 50_000, mode=DENIED)
    (p,) = as_unprivileged(lambda: ThermalSampler.probe(fs.env()))
    assert not p.available
    assert p.reason == "permission denied reading /sys/class/thermal/thermal_zone0/temp"


def test_hwmon_temps_named_chip_and_label(fs: FakeSys) -> None:
    fs.hwmon(
        3,
        "coretemp",
        {"temp1_input": 61_000, "temp1_label": "Package id 0", "temp2_input": 55_000},
    )
    fs.hwmon(5, "nvme", {"temp1_input": 38_850, "temp1_label": "Composite"})
    fs.hwmon(1, "amdgpu", {"power1_average": 10_000_000})  # power only: no temperature
    temps = {name: s.read()[0].value for name, s in found(fs).items()}
    assert temps == {
        "thermal:coretemp/Package id 0": 61.0,
        "thermal:coretemp/temp2": 55.0,
        "thermal:nvme/Composite": pytest.approx(38.85),
    }


def test_hwmon_chip_mirroring_a_zone_is_read_once_as_the_zone(fs: FakeSys) -> None:
    """The kernel registers an hwmon chip for each thermal zone: read it once, as the zone."""
    fs.thermal_zone(0, "cpu-thermal", 45_000)
    fs.thermal_zone(1, "gpu-thermal", 41_000)
    device = "/sys/devices/virtual/thermal/thermal_zone0"
    fs.hwmon(0, "cpu_thermal", {"temp1_input": 45_000}, device=device)
    fs.hwmon(1, "gpu_thermal", {"temp1_input": 41_000})  # older kernels: no device link
    fs.hwmon(2, "k10temp", {"temp1_input": 48_000, "temp1_label": "Tctl"})
    assert sorted(found(fs)) == [
        "thermal:cpu-thermal",
        "thermal:gpu-thermal",
        "thermal:k10temp/Tctl",
    ]


def test_temperatures_never_enter_power_sources(fs: FakeSys) -> None:
    from edgeprof.samplers.hwmon import HwmonSampler

    fs.hwmon(2, "k10temp", {"temp1_input": 48_000, "temp1_label": "Tctl"})
    assert HwmonSampler.discover(fs.env()) == []  # hwmon power reads no temp*_input


def test_no_thermal_sensors_says_why(fs: FakeSys) -> None:
    (p,) = ThermalSampler.probe(fs.env())
    assert (p.source, p.available, p.domain) == ("thermal", False, "thermal")
    assert "no /sys/class/thermal/thermal_zone*" in p.reason
    assert "virtual machines" in p.reason
