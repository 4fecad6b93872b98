"""The sampler contract: one class per sensor source (RAPL, hwmon, NVML, the estimator, ...).

`discover(env)` returns one sampler per readable instance on this machine; `probe(env)` says,
for every instance it knows of, whether it is available and, if not, exactly why and how to
enable it. `read()` returns readings whose metric names carry their units (`power_w`,
`energy_j` cumulative and wrap-corrected, `rss_bytes`, `cpu_percent`, `temp_c`).
A source becomes known to edgeprof through `edgeprof.samplers.register_sampler`.
"""

from __future__ import annotations

import os
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from edgeprof.power import Domain

Method = Literal["measured", "estimated"]


@dataclass(frozen=True)
class SensorEnv:
    """Where sensor readers look: a filesystem root (for /sys, /proc, /etc, /dev) and a PATH.

    Pointing `sys_root` at a captured or fake tree runs the very code that runs on devices.
    """

    sys_root: Path = Path("/")
    bin_path: str | None = None  # None: the process's PATH
    tdp_w: float | None = None  # the estimator's assumption, when the user gives one
    # The process that runs the model (the backend's worker), whose memory and CPU the
    # process and NVML samplers read; None: this process.
    pid: int | None = None

    @classmethod
    def from_environ(cls, tdp_w: float | None = None, pid: int | None = None) -> SensorEnv:
        return cls(
            sys_root=Path(os.environ.get("EDGEPROF_SYS_ROOT", "/")),
            bin_path=os.environ.get("EDGEPROF_BIN_PATH") or None,
            tdp_w=tdp_w,
            pid=pid,
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
    domain: Domain | Literal[""] = ""  # "" when nothing was found to say it
    method: Method = "measured"
    reason: str = ""  # why not available (or what it measures when it is)
    fix: str = ""  # the command or setting that would enable it


class Every:
    """Lets a reading through at most once every `seconds`: temperatures and clocks change
    slowly, and reading every CPU's file at the recorder's 10 Hz costs more than it tells."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._last_s = float("-inf")

    def due(self) -> bool:
        now = time.monotonic()
        if now - self._last_s < self.seconds:
            return False
        self._last_s = now
        return True


@dataclass
class Sampler(ABC):
    """One readable sensor instance (a RAPL zone, a GPU, a battery), polled by the recorder.

    Subclasses set `source` (the registry name, also the prefix of every `sensor` name:
    `rapl:package-0`) and call this dataclass's `__init__` with the instance's fields.
    """

    source: ClassVar[str]

    sensor: str  # "<source>:<instance>", unique within a run
    domain: Domain  # what the figure covers; decides what it may be added to (edgeprof.power)
    method: Method = "measured"
    detail: str = ""  # the assumption or the file it reads, shown with every figure
    metrics: tuple[str, ...] = field(default_factory=tuple)  # every metric read() may return

    @classmethod
    @abstractmethod
    def discover(cls, env: SensorEnv) -> list[Sampler]:
        """One ready sampler per instance readable on this machine, found under `env` only
        (`env.path("/sys/...")`, executables on `env.bin_path`); [] when there is none.

        Must be quick and must not raise for a missing or unreadable sensor: that is an empty
        list, and `probe` says why. A sampler it returns may hold resources until `close()`.
        """

    @classmethod
    def probe(cls, env: SensorEnv) -> list[ProbeResult]:
        """Every instance this source knows of, available or not. An unavailable one carries a
        `reason` a user can act on and, where one exists, the `fix` (a command or setting);
        with nothing found at all, one result named after the source says why.

        The default reports what `discover` finds; override it to explain absent sensors.
        """
        found = cls.discover(env)
        if not found:
            return [ProbeResult(cls.source, cls.source, False, reason="not found on this machine")]
        results = [
            ProbeResult(cls.source, s.sensor, True, s.domain, s.method, reason=s.detail)
            for s in found
        ]
        for s in found:
            s.close()
        return results

    @abstractmethod
    def read(self) -> list[Reading]:
        """The current readings, called at the sampling rate from the recorder's thread (and
        from the runner's, at request edges), so it must be cheap and never block for long.

        Metric names end in their unit (`power_w` watts, `energy_j` a cumulative counter in
        joules since the first read, corrected for wraparound and resets; `rss_bytes`, ...),
        and are among `metrics`. Return [] when there is nothing to report this tick; raise
        `SensorError` (or OSError) when the sensor cannot be read: the recorder skips the tick.
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what `discover` acquired (threads, child processes, library handles).
        Called once when the run ends; the default does nothing."""


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
        "throttled": "0/1",
        "mask": "bits",
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
