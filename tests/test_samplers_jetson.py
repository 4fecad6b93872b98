from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from edgeprof.analysis.energy import SensorSeries, select_domains
from edgeprof.samplers.base import Reading
from edgeprof.samplers.jetson import JetsonRailSampler, parse_tegrastats
from tests.fakesys import DENIED, FakeSys, as_unprivileged, make_fakesys

IIO = "/sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0"
HW = "/sys/bus/i2c/devices/1-0040/hwmon/hwmon3"
# Recorded tegrastats lines: Orin Nano (JetPack 6) and Nano (JetPack 4).
ORIN = (
    "11-27-2024 10:00:00 RAM 2263/7620MB (lfb 2x4MB) SWAP 0/3810MB (cached 0MB) "
    "CPU [2%@729,1%@729] EMC_FREQ 0%@2133 GR3D_FREQ 0%@[305] cpu@47.5C "
    "VDD_IN 5213mW/5100mW VDD_CPU_GPU_CV 702mW/650mW VDD_SOC 1521mW/1500mW"
)
NANO = (
    "RAM 1500/3956MB (lfb 4x4MB) SWAP 0/1978MB IRAM 0/252kB(lfb 252kB) "
    "POM_5V_IN 2526/2400 POM_5V_GPU 40/40"
)


@pytest.fixture
def fs() -> Iterator[FakeSys]:
    yield from make_fakesys()


def test_iio_layout_power_in_milliwatts_board_total(fs: FakeSys) -> None:
    fs.write("/etc/nv_tegra_release", "# R32 (release), REVISION: 7.1")
    for n, (label, mw) in enumerate(
        [("POM_5V_IN", 4812), ("POM_5V_GPU", 120), ("POM_5V_CPU", 900)]
    ):
        fs.write(f"{IIO}/rail_name_{n}", label)
        fs.write(f"{IIO}/in_power{n}_input", mw)
    found = {s.sensor: s for s in JetsonRailSampler.discover(fs.env())}
    assert {k: s.domain for k, s in found.items()} == {
        "jetson:POM_5V_IN": "board",
        "jetson:POM_5V_GPU": "rail",
        "jetson:POM_5V_CPU": "rail",
    }
    assert found["jetson:POM_5V_IN"].read()[0].value == pytest.approx(4.812)
    series = [
        SensorSeries(s.sensor, s.domain, "power_w", "measured", [(0, 0.0)]) for s in found.values()
    ]
    assert [s.sensor for s in select_domains(series)] == ["jetson:POM_5V_IN"]


def test_hwmon_layout_millivolts_times_milliamps_skips_nc(fs: FakeSys) -> None:
    fs.write(f"{HW}/name", "ina3221")
    for i, (label, mv, ma) in enumerate(
        [("VDD_CPU_GPU_CV", 5000, 200), ("VDD_SOC", 5000, 300), ("NC", 0, 0)], start=1
    ):
        fs.write(f"{HW}/in{i}_label", label)
        fs.write(f"{HW}/in{i}_input", mv)
        fs.write(f"{HW}/curr{i}_input", ma)
    found = {s.sensor: s for s in JetsonRailSampler.discover(fs.env())}
    assert sorted(found) == ["jetson:VDD_CPU_GPU_CV", "jetson:VDD_SOC"]
    assert found["jetson:VDD_SOC"].read()[0].value == pytest.approx(1.5)
    # no total rail: the rails are summed, and the selection says they are rails (partial)
    series = [
        SensorSeries(s.sensor, s.domain, "power_w", "measured", [(0, 0.0)]) for s in found.values()
    ]
    assert {s.domain for s in select_domains(series)} == {"rail"}
    assert len(select_domains(series)) == 2


def test_permission_denied_rail(fs: FakeSys) -> None:
    fs.write(f"{HW}/name", "ina3221")
    fs.write(f"{HW}/in1_label", "VDD_IN")
    fs.write(f"{HW}/in1_input", 5000)
    fs.write(f"{HW}/curr1_input", 1000, mode=DENIED)
    (p,) = as_unprivileged(lambda: JetsonRailSampler.probe(fs.env()))
    assert not p.available and p.domain == "board"
    assert p.reason == f"permission denied reading {HW}/curr1_input" and "chmod" in p.fix


def test_not_a_jetson(fs: FakeSys) -> None:
    (p,) = JetsonRailSampler.probe(fs.env())
    assert not p.available and p.reason.startswith("not a Jetson")


def test_parse_tegrastats_both_formats() -> None:
    assert parse_tegrastats(ORIN) == {"VDD_IN": 5.213, "VDD_CPU_GPU_CV": 0.702, "VDD_SOC": 1.521}
    assert parse_tegrastats(NANO) == {"POM_5V_IN": 2.526, "POM_5V_GPU": 0.04}


def test_tegrastats_fallback_streams_board_power(fs: FakeSys) -> None:
    fs.write("/etc/nv_tegra_release", "# R36 (release), REVISION: 3.0")
    fs.tegrastats([ORIN])
    (p,) = JetsonRailSampler.probe(fs.env())
    assert p.available and p.sensor == "jetson:tegrastats"
    (s,) = JetsonRailSampler.discover(fs.env())
    try:
        assert s.domain == "board"
        deadline = time.monotonic() + 10
        readings: list[Reading] = []
        while not readings and time.monotonic() < deadline:
            readings = s.read()
            time.sleep(0.02)
        assert [(r.metric, r.value) for r in readings] == [("power_w", pytest.approx(5.213))]
    finally:
        s.close()
