"""The sampler contract: one class per sensor source (RAPL, hwmon, NVML, the estimator, ...).

`discover(env)` returns one sampler per readable instance on this machine; `probe(env)` says,
for every instance it knows of, whether it is available and, if not, exactly why and how to
enable it. `read()` returns readings whose metric names carry their units (`power_w`,
`energy_j` cumulative and wrap-corrected, `rss_bytes`, `cpu_percent`, `temp_c`).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

Method = Literal["measured", "estimated"]

# Domains whose power adds up to the device's draw; see energy.select_domains for the rules.
POWER_METRICS = ("power_w", "energy_j")


@dataclass(frozen=True)
class SensorEnv:
    """Where sensor readers look: a filesystem root (for /sys, /proc, /etc, /dev) and a PATH.

    Pointing `sys_root` at a captured or fake tree runs the very code that runs on devices.
    """

    sys_root: Path = Path("/")
    bin_path: str | None = None  # None: the process's PATH
    tdp_w: float | None = None  # the estimator's assumption, when the user gives one

    @classmethod
    def from_environ(cls, tdp_w: float | None = None) -> SensorEnv:
        return cls(
            sys_root=Path(os.environ.get("EDGEPROF_SYS_ROOT", "/")),
            bin_path=os.environ.get("EDGEPROF_BIN_PATH") or None,
            tdp_w=tdp_w,
        )

    def path(self, absolute: str) -> Path:
        return self.sys_root / absolute.lstrip("/")


@dataclass(frozen=True)
class Reading:
    sensor: str  # instance name, unique within a run, e.g. "rapl:package-0"
    metric: str  # with its unit: power_w, energy_j, rss_bytes, cpu_percent, ...
    value: float


@dataclass(frozen=True)
class ProbeResult:
    source: str  # e.g. "rapl"
    sensor: str  # instance name, or the source name when nothing was found
    available: bool
    domain: str = ""
    method: Method = "measured"
    reason: str = ""  # why not available (or what it measures when it is)
    fix: str = ""  # the command or setting that would enable it


@dataclass
class Sampler(ABC):
    source: ClassVar[str]

    sensor: str
    domain: str  # package, dram, psys, gpu, board, battery, process, system, cpu
    method: Method = "measured"
    detail: str = ""  # the assumption or the file it reads, shown with every figure
    metrics: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    @abstractmethod
    def discover(cls, env: SensorEnv) -> list[Sampler]: ...

    @classmethod
    def probe(cls, env: SensorEnv) -> list[ProbeResult]:
        found = cls.discover(env)
        if not found:
            return [ProbeResult(cls.source, cls.source, False, reason="not found on this machine")]
        return [
            ProbeResult(cls.source, s.sensor, True, s.domain, s.method, reason=s.detail)
            for s in found
        ]

    @abstractmethod
    def read(self) -> list[Reading]: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        pass


def unit_of(metric: str) -> str:
    """`power_w` -> `W`: the unit is the metric name's last part."""
    suffix = metric.rsplit("_", 1)[-1]
    return {
        "w": "W",
        "j": "J",
        "bytes": "B",
        "percent": "%",
        "c": "°C",
        "s": "s",
        "hz": "Hz",
    }.get(suffix, suffix)


class CpuLoad:
    """System CPU use since the previous call, from /proc/stat-style counters.

    Each sampler keeps its own: psutil.cpu_percent(None) shares one global "previous" reading,
    so two samplers calling it would each see only the sliver since the other's call.
    """

    def __init__(self) -> None:
        import psutil

        self._psutil = psutil
        self._last = psutil.cpu_times()
        # The kernel counts CPU time in 10 ms ticks: a shorter interval (a mark() right after a
        # poll) would read as 0% or 100%. Below this much CPU time, repeat the last value.
        self._min_total_s = 0.05 * (psutil.cpu_count() or 1)
        self._value = 0.0

    def fraction(self) -> float:
        now = _cpu_times_shared(self._psutil)
        busy0, total0 = _busy_total(self._last)
        busy1, total1 = _busy_total(now)
        dt = total1 - total0
        if dt >= self._min_total_s:
            self._last = now
            self._value = max(0.0, min(1.0, (busy1 - busy0) / dt))
        return self._value


def _busy_total(t: object) -> tuple[float, float]:
    fields = t._asdict()  # type: ignore[attr-defined]
    total = sum(fields.values()) - fields.get("guest", 0.0) - fields.get("guest_nice", 0.0)
    idle = fields.get("idle", 0.0) + fields.get("iowait", 0.0)
    return total - idle, total


_shared_cpu_times: tuple[float, Any] = (float("-inf"), None)


def _cpu_times_shared(psutil: Any) -> Any:
    """One /proc/stat read per tick, shared by every sampler that wants it (the estimator and
    the process sampler both do): the recorder's cost is paid on the model's time."""
    global _shared_cpu_times
    import time

    now = time.perf_counter()
    if now - _shared_cpu_times[0] > 0.005:
        _shared_cpu_times = (now, psutil.cpu_times())
    return _shared_cpu_times[1]
