from __future__ import annotations

from collections.abc import Iterator

import pytest

from edgeprof.analysis.energy import SensorSeries, select_domains
from edgeprof.samplers.hwmon import HwmonSampler
from edgeprof.samplers.rapl import RaplSampler
from tests.fakesys import DENIED, FakeSys, as_unprivileged, make_fakesys


@pytest.fixture
def fs() -> Iterator[FakeSys]:
    yield from make_fakesys()


def found(fs: FakeSys) -> dict[str, HwmonSampler]:
    return {s.sensor: s for s in HwmonSampler.discover(fs.env())}  # type: ignore[misc]


def test_discrete_amdgpu_power_in_microwatts(fs: FakeSys) -> None:
    fs.hwmon(0, "k10temp", {"temp1_input": 45000})
    fs.hwmon(3, "amdgpu", {"power1_average": 187_250_000, "power1_label": "PPT"})
    (s,) = found(fs).values()
    assert (s.sensor, s.domain) == ("hwmon:amdgpu:power1", "gpu")
    assert [(r.metric, r.value) for r in s.read()] == [("power_w", pytest.approx(187.25))]


def test_amdgpu_on_an_apu_is_the_whole_soc_and_not_added_to_rapl(fs: FakeSys) -> None:
    fs.hwmon(
        2,
        "amdgpu",
        {
            "power1_average": 15_000_000,
            "power1_label": "slowPPT",
            "in1_input": 900,
            "in1_label": "vddnb",
            "power2_average": 18_000_000,
            "power2_label": "fastPPT",
        },
    )
    fs.rapl_zone("intel-rapl:0", "package-0", 1)
    hw = found(fs)
    assert hw["hwmon:amdgpu:power1"].domain == "soc"
    assert hw["hwmon:amdgpu:power2"].domain == "other"  # fastPPT duplicates PPT
    series = [
        SensorSeries(s.sensor, s.domain, s.metrics[0], s.method, [(0, 0.0)])
        for s in [*hw.values(), *RaplSampler.discover(fs.env())]
    ]
    assert [s.sensor for s in select_domains(series)] == ["hwmon:amdgpu:power1"]


def test_energy_counter_in_microjoules_and_reset(fs: FakeSys) -> None:
    d = fs.hwmon(1, "amd_energy", {"energy17_input": 5_000_000, "energy17_label": "Esocket0"})
    (s,) = found(fs).values()
    assert s.domain == "package" and s.metrics == ("energy_j",)
    assert s.read()[0].value == 0.0
    fs.write(str(d.relative_to(fs.root)) + "/energy17_input", 7_000_000)
    assert s.read()[0].value == pytest.approx(2.0)
    fs.write(str(d.relative_to(fs.root)) + "/energy17_input", 100)  # reset: not a negative step
    assert s.read()[0].value == pytest.approx(2.0)
    fs.write(str(d.relative_to(fs.root)) + "/energy17_input", 1_000_100)
    assert s.read()[0].value == pytest.approx(3.0)


def test_volts_times_amps_where_no_power_file(fs: FakeSys) -> None:
    fs.hwmon(4, "ina226", {"in1_input": 5_100, "curr1_input": 1_200})
    (s,) = found(fs).values()
    assert s.sensor == "hwmon:ina226:vi1" and s.domain == "other"
    assert s.read()[0].value == pytest.approx(5.1 * 1.2)


def test_chip_names_not_hwmon_numbers_and_duplicates_suffixed(fs: FakeSys) -> None:
    fs.hwmon(7, "amdgpu", {"power1_average": 1_000_000})
    fs.hwmon(2, "amdgpu", {"power1_average": 2_000_000})
    assert sorted(found(fs)) == ["hwmon:amdgpu-1:power1", "hwmon:amdgpu-2:power1"]


def test_ina3221_left_to_the_jetson_source(fs: FakeSys) -> None:
    fs.hwmon(1, "ina3221", {"in1_label": "VDD_IN", "in1_input": 5000, "curr1_input": 1000})
    assert found(fs) == {}
    (p,) = HwmonSampler.probe(fs.env())
    assert not p.available and "chips: ina3221" in p.reason


def test_permission_denied_and_missing(fs: FakeSys) -> None:
    (p,) = HwmonSampler.probe(fs.env())
    assert not p.available and p.reason.startswith("no /sys/class/hwmon")
    fs.hwmon(0, "power_meter", {"power1_average": 65_000_000}, mode=DENIED)
    (p,) = as_unprivileged(lambda: HwmonSampler.probe(fs.env()))
    assert not p.available and p.domain == "board"
    assert p.reason == "permission denied reading /sys/class/hwmon/hwmon0/power1_average"
    assert p.fix.startswith("sudo chmod a+r /sys/class/hwmon/hwmon0/*")
    assert as_unprivileged(lambda: len(HwmonSampler.discover(fs.env()))) == 0
