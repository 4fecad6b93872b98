from __future__ import annotations

from collections.abc import Iterator

import pytest

from edgeprof.analysis.energy import SensorSeries, select_domains
from edgeprof.samplers import discover, probe_all
from edgeprof.samplers.base import Method
from edgeprof.samplers.rapl import RaplSampler
from tests.fakesys import DENIED, FakeSys, as_unprivileged, make_fakesys

MAX = 262143328850


@pytest.fixture
def fs() -> Iterator[FakeSys]:
    yield from make_fakesys()


def intel_laptop(fs: FakeSys, mode: int = 0o444) -> None:
    """Zones as a Tiger Lake laptop lists them flat under /sys/class/powercap."""
    fs.write("/sys/class/powercap/intel-rapl/enabled", 1)  # the control type: no energy_uj
    fs.rapl_zone("intel-rapl:0", "package-0", 1_000_000, energy_mode=mode)
    fs.rapl_zone("intel-rapl:0:0", "core", 400_000, energy_mode=mode)
    fs.rapl_zone("intel-rapl:0:1", "uncore", 100_000, energy_mode=mode)
    fs.rapl_zone("intel-rapl:0:2", "dram", 200_000, 65712999613, energy_mode=mode)
    fs.rapl_zone("intel-rapl:1", "psys", 5_000_000, energy_mode=mode)


def test_zones_named_by_package_with_domains(fs: FakeSys) -> None:
    intel_laptop(fs)
    found = {s.sensor: s.domain for s in RaplSampler.discover(fs.env())}
    assert found == {
        "rapl:package-0": "package",
        "rapl:package-0/core": "core",
        "rapl:package-0/uncore": "uncore",
        "rapl:package-0/dram": "dram",
        "rapl:psys": "psys",
    }


def test_counter_in_joules_since_first_read(fs: FakeSys) -> None:
    fs.rapl_zone("intel-rapl:0", "package-0", 1_000_000)
    (s,) = RaplSampler.discover(fs.env())
    assert [(r.sensor, r.metric, r.value) for r in s.read()] == [
        ("rapl:package-0", "energy_j", 0.0)
    ]
    fs.set_energy("intel-rapl:0", 3_500_000)
    assert s.read()[0].value == pytest.approx(2.5)


def test_wraparound_uses_max_energy_range(fs: FakeSys) -> None:
    fs.rapl_zone("intel-rapl:0", "package-0", MAX - 1_000_000, max_range_uj=MAX)
    (s,) = RaplSampler.discover(fs.env())
    s.read()
    fs.set_energy("intel-rapl:0", 500_000)  # wrapped: 1.0 J to the top, 0.5 J after
    assert s.read()[0].value == pytest.approx(1.5)
    fs.set_energy("intel-rapl:0", 2_500_000)
    assert s.read()[0].value == pytest.approx(3.5)


def test_permission_denied_gives_reason_fix_and_falls_back_to_estimate(fs: FakeSys) -> None:
    intel_laptop(fs, mode=DENIED)  # root-only since CVE-2020-8694
    env = fs.env()

    def check() -> tuple[list[tuple[str, bool, str, str]], list[tuple[str, Method]]]:
        probes = [
            (p.sensor, p.available, p.reason, p.fix) for p in probe_all(env) if p.source == "rapl"
        ]
        samplers = [(s.sensor, s.method) for s in discover(env) if s.domain != "process"]
        return probes, samplers

    probes, samplers = as_unprivileged(check)
    assert len(probes) == 5 and not any(ok for _, ok, _, _ in probes)
    sensor, _, reason, fix = probes[0]
    assert sensor == "rapl:package-0"
    assert reason.startswith("permission denied reading /sys/class/powercap/intel-rapl:0/energy_uj")
    assert "CVE-2020-8694" in reason
    assert "chmod -R a+r /sys/class/powercap/*" in fix
    assert samplers == [("estimate:cpu", "estimated")]
    # the same tree read by root: every zone is available
    assert all(p.available for p in RaplSampler.probe(env))


def test_missing_powercap_and_missing_energy_file(fs: FakeSys) -> None:
    (p,) = RaplSampler.probe(fs.env())
    assert not p.available and "no /sys/class/powercap" in p.reason and "modprobe" in p.fix
    fs.rapl_zone("intel-rapl:0", "package-0", None)
    (p,) = RaplSampler.probe(fs.env())
    assert not p.available
    assert p.reason == "/sys/class/powercap/intel-rapl:0/energy_uj is missing"
    assert RaplSampler.discover(fs.env()) == []


def test_mmio_zones_deduplicated_by_name(fs: FakeSys) -> None:
    fs.rapl_zone("intel-rapl:0", "package-0", 1_000_000)
    fs.rapl_zone("intel-rapl:0:0", "core", 1_000)
    fs.rapl_zone("intel-rapl-mmio:0", "package-0", 9_000_000)
    found = RaplSampler.discover(fs.env())
    assert sorted(s.sensor for s in found) == ["rapl:package-0", "rapl:package-0/core"]
    pkg = next(s for s in found if s.sensor == "rapl:package-0")
    assert "/sys/class/powercap/intel-rapl:0/energy_uj" in pkg.detail


def test_mmio_zone_used_when_msr_zone_unreadable(fs: FakeSys) -> None:
    fs.rapl_zone("intel-rapl:0", "package-0", None)
    fs.rapl_zone("intel-rapl-mmio:0", "package-0", 9_000_000)
    (s,) = RaplSampler.discover(fs.env())
    assert "intel-rapl-mmio:0" in s.detail


def test_two_sockets_get_unique_sensor_names(fs: FakeSys) -> None:
    for pkg in (0, 1):
        fs.rapl_zone(f"intel-rapl:{pkg}", f"package-{pkg}", 1)
        fs.rapl_zone(f"intel-rapl:{pkg}:0", "dram", 1)
    names = sorted(s.sensor for s in RaplSampler.discover(fs.env()))
    assert names == [
        "rapl:package-0",
        "rapl:package-0/dram",
        "rapl:package-1",
        "rapl:package-1/dram",
    ]


def series_of(samplers: list, metric: str = "energy_j") -> list[SensorSeries]:
    return [SensorSeries(s.sensor, s.domain, metric, s.method, [(0, 0.0)]) for s in samplers]


def test_selection_never_double_counts_rapl(fs: FakeSys) -> None:
    intel_laptop(fs)
    chosen = select_domains(series_of(RaplSampler.discover(fs.env())))
    assert [s.sensor for s in chosen] == ["rapl:psys"]  # psys includes package and dram

    fs2_zones = [s for s in RaplSampler.discover(fs.env()) if s.domain != "psys"]
    chosen = select_domains(series_of(fs2_zones))
    assert sorted(s.sensor for s in chosen) == ["rapl:package-0", "rapl:package-0/dram"]
