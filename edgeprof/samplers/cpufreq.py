"""Clock frequencies: CPU clocks from cpufreq and device clocks (a Jetson's or Mali's GPU, a
memory bus) from devfreq; metric `freq_hz`, role `resource`, never power.

cpufreq: one series per policy (`/sys/devices/system/cpu/cpufreq/policyN`, the CPUs in its
`related_cpus` share one clock), `scaling_cur_freq` in kHz; per CPU (`cpuN/cpufreq`) only on
kernels without policy directories. devfreq: `/sys/class/devfreq/<device>/cur_freq` in Hz.
A clock below its maximum during a run is how a board's throttling or power mode shows.
Each sensor reads at most every EVERY_S: x86 has one policy per logical CPU.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from edgeprof.errors import SensorError
from edgeprof.samplers.base import Every, ProbeResult, Reading, Sampler, SensorEnv
from edgeprof.samplers.sysfs import read_int, shown_path, try_text, why_unreadable

CPUFREQ = "/sys/devices/system/cpu/cpufreq"
CPUS = "/sys/devices/system/cpu"
DEVFREQ = "/sys/class/devfreq"
EVERY_S = 0.5  # the shortest interval between two readings of one clock
_POLICY = re.compile(r"^policy(\d+)$")
_CPU = re.compile(r"^cpu(\d+)$")


@dataclass(frozen=True)
class Clock:
    name: str  # the sensor name without its source prefix
    path: Path
    scale_hz: float  # the file's unit in Hz
    note: str  # what it clocks ("CPUs 0-3", "max 1.8 GHz")
    error: str  # "" when readable
    freq_hz: float | None = None  # as read at discovery


def _clock(name: str, path: Path, scale_hz: float, note: str, env: SensorEnv) -> Clock:
    try:
        return Clock(name, path, scale_hz, note, "", read_int(path) * scale_hz)
    except (OSError, ValueError) as e:
        return Clock(name, path, scale_hz, note, why_unreadable(e, path, env))


def _numbered(root: Path, pattern: re.Pattern[str]) -> list[tuple[int, Path]]:
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), d) for d in root.iterdir() if (m := pattern.match(d.name))]
    return sorted(found)


def _cpus_note(d: Path) -> str:
    cpus = try_text(d / "related_cpus") or try_text(d / "affected_cpus") or ""
    note = f"CPUs {cpus_range(cpus)}" if cpus else ""
    max_khz = try_text(d / "cpuinfo_max_freq")
    if max_khz and max_khz.isdigit():
        note += f"{', ' if note else ''}max {int(max_khz) / 1e6:.2f} GHz"
    return note


def cpus_range(cpus: str) -> str:
    """ "0 1 2 3 6" -> "0-3,6": how a policy's CPUs read in probe output."""
    nums = sorted(int(c) for c in cpus.split() if c.isdigit())
    parts: list[str] = []
    i = 0
    while i < len(nums):
        j = i
        while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:
            j += 1
        parts.append(str(nums[i]) if i == j else f"{nums[i]}-{nums[j]}")
        i = j + 1
    return ",".join(parts)


def cpu_clocks(env: SensorEnv) -> list[Clock]:
    policies = _numbered(env.path(CPUFREQ), _POLICY)
    if policies:
        return [
            _clock(f"policy{n}", d / "scaling_cur_freq", 1e3, _cpus_note(d), env)
            for n, d in policies
        ]
    clocks, seen = [], set()
    for n, cpu in _numbered(env.path(CPUS), _CPU):
        d = cpu / "cpufreq"
        if not d.is_dir() or d.resolve() in seen:
            continue
        seen.add(d.resolve())
        clocks.append(_clock(f"cpu{n}", d / "scaling_cur_freq", 1e3, _cpus_note(d), env))
    return clocks


def device_clocks(env: SensorEnv) -> list[Clock]:
    root = env.path(DEVFREQ)
    if not root.is_dir():
        return []
    clocks = []
    for d in sorted(root.iterdir()):
        max_hz = try_text(d / "max_freq")
        note = f"max {int(max_hz) / 1e9:.2f} GHz" if max_hz and max_hz.isdigit() else ""
        gov = try_text(d / "governor")
        note += f"{', ' if note else ''}governor {gov}" if gov else ""
        clocks.append(_clock(d.name, d / "cur_freq", 1.0, note, env))
    return clocks


class _ClockSampler(Sampler):
    """One clock file, read at most every EVERY_S."""

    unit: ClassVar[str]

    def __init__(self, clock: Clock, env: SensorEnv) -> None:
        note = f"; {clock.note}" if clock.note else ""
        super().__init__(
            sensor=f"{self.source}:{clock.name}",
            domain="clock",
            detail=f"{shown_path(clock.path, env)} ({self.unit}{note})",
            metrics=("freq_hz",),
        )
        self.clock = clock
        self._every = Every(EVERY_S)

    @classmethod
    def clocks(cls, env: SensorEnv) -> list[Clock]:
        raise NotImplementedError

    @classmethod
    def missing(cls) -> str:
        raise NotImplementedError

    @classmethod
    def discover(cls, env: SensorEnv) -> list[Sampler]:
        return [cls(c, env) for c in cls.clocks(env) if not c.error]

    @classmethod
    def probe(cls, env: SensorEnv) -> list[ProbeResult]:
        clocks = cls.clocks(env)
        if not clocks:
            return [ProbeResult(cls.source, cls.source, False, "clock", reason=cls.missing())]
        out = []
        for c in clocks:
            sensor = f"{cls.source}:{c.name}"
            if c.error or c.freq_hz is None:
                out.append(ProbeResult(cls.source, sensor, False, "clock", reason=c.error))
                continue
            note = f" ({c.note})" if c.note else ""
            detail = f"{shown_path(c.path, env)}: {c.freq_hz / 1e6:.0f} MHz now{note}"
            out.append(ProbeResult(cls.source, sensor, True, "clock", reason=detail))
        return out

    def read(self) -> list[Reading]:
        if not self._every.due():
            return []
        try:
            raw = read_int(self.clock.path)
        except (OSError, ValueError) as e:
            raise SensorError(f"{self.sensor}: cannot read {self.clock.path} ({e})") from e
        return [Reading(self.sensor, "freq_hz", raw * self.clock.scale_hz)]


class CpufreqSampler(_ClockSampler):
    source: ClassVar[str] = "cpufreq"
    unit: ClassVar[str] = "kHz"

    @classmethod
    def clocks(cls, env: SensorEnv) -> list[Clock]:
        return cpu_clocks(env)

    @classmethod
    def missing(cls) -> str:
        return (
            f"no {CPUFREQ}/policy* or cpu*/cpufreq: this kernel has no CPU frequency driver "
            "(virtual machines usually have none)"
        )


class DevfreqSampler(_ClockSampler):
    source: ClassVar[str] = "devfreq"
    unit: ClassVar[str] = "Hz"

    @classmethod
    def clocks(cls, env: SensorEnv) -> list[Clock]:
        return device_clocks(env)

    @classmethod
    def missing(cls) -> str:
        return (
            f"no {DEVFREQ}/*: no device (GPU, memory bus) with a kernel-scaled clock "
            "(Jetson and Mali GPUs have one; desktop GPUs and x86 do not)"
        )
