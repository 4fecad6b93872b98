"""CPU clocks (cpufreq policies) and device clocks (devfreq), on fake sysfs trees."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from edgeprof.samplers.base import Every
from edgeprof.samplers.cpufreq import CpufreqSampler, DevfreqSampler, cpus_range
from tests.fakesys import DENIED, FakeSys, as_unprivileged, make_fakesys


@pytest.fixture
def fs() -> Iterator[FakeSys]:
    yield from make_fakesys()


def test_one_series_per_policy_in_hz(fs: FakeSys, monkeypatch: pytest.MonkeyPatch) -> None:
    """A big.LITTLE board: two policies, each shared by its cluster's CPUs."""
    fs.cpufreq_policy(0, "0 1 2 3", 1_800_000, max_khz=1_800_000)
    fs.cpufreq_policy(4, "4 5 6 7", 600_000, max_khz=2_400_000)
    for cpu in range(8):  # per-CPU directories exist too; the policies are read instead
        fs.cpu_cpufreq(cpu, 1_000_000)
    samplers = CpufreqSampler.discover(fs.env())
    assert [s.sensor for s in samplers] == ["cpufreq:policy0", "cpufreq:policy4"]
    big = samplers[1]
    assert (big.domain, big.metrics) == ("clock", ("freq_hz",))
    assert "CPUs 4-7" in big.detail and "max 2.40 GHz" in big.detail
    assert [(r.metric, r.value) for r in big.read()] == [("freq_hz", 600e6)]
    fs.write("/sys/devices/system/cpu/cpufreq/policy4/scaling_cur_freq", 2_400_000)
    assert big.read() == []  # at most one reading every EVERY_S
    monkeypatch.setattr(Every, "due", lambda self: True)  # every reading due from here
    assert big.read()[0].value == 2.4e9


def test_per_cpu_layout_without_policy_directories(fs: FakeSys) -> None:
    fs.cpu_cpufreq(0, 1_200_000)
    fs.cpu_cpufreq(1, 700_000)
    values = {s.sensor: s.read()[0].value for s in CpufreqSampler.discover(fs.env())}
    assert values == {"cpufreq:cpu0": 1.2e9, "cpufreq:cpu1": 0.7e9}


def test_unreadable_clock_left_out_with_reason(fs: FakeSys) -> None:
    fs.cpufreq_policy(0, "0", "<unknown>")
    (p,) = CpufreqSampler.probe(fs.env())
    assert not p.available and p.sensor == "cpufreq:policy0"
    assert (
        p.reason
        == "/sys/devices/system/cpu/cpufreq/policy0/scaling_cur_freq does not hold a number"
    )
    assert CpufreqSampler.discover(fs.env()) == []


def test_root_only_clock_says_permission_denied(fs: FakeSys) -> None:
    fs.cpufreq_policy(0, "0 1", 1_000_000)
    fs.path("/sys/devices/system/cpu/cpufreq/policy0/scaling_cur_freq").chmod(DENIED)
    (p,) = as_unprivileged(lambda: CpufreqSampler.probe(fs.env()))
    assert not p.available and p.reason.startswith("permission denied reading /sys/devices")


def test_jetson_gpu_clock_from_devfreq(fs: FakeSys) -> None:
    fs.devfreq("17000000.gpu", 305_000_000, max_hz=1_020_000_000)
    (s,) = DevfreqSampler.discover(fs.env())
    assert (s.sensor, s.domain) == ("devfreq:17000000.gpu", "clock")
    assert "max 1.02 GHz" in s.detail and "governor nvhost_podgov" in s.detail
    assert s.read()[0].value == 305e6
    (p,) = DevfreqSampler.probe(fs.env())
    assert p.available and "305 MHz now" in p.reason


def test_no_clocks_says_why(fs: FakeSys) -> None:
    (cpu,) = CpufreqSampler.probe(fs.env())
    (dev,) = DevfreqSampler.probe(fs.env())
    assert not cpu.available and "no CPU frequency driver" in cpu.reason
    assert not dev.available and dev.reason.startswith("no /sys/class/devfreq/*")


@pytest.mark.parametrize(
    ("cpus", "shown"),
    [("0 1 2 3", "0-3"), ("4 5 6 7 9", "4-7,9"), ("0 2 4", "0,2,4"), ("3", "3"), ("", "")],
)
def test_cpu_lists_read_as_ranges(cpus: str, shown: str) -> None:
    assert cpus_range(cpus) == shown
