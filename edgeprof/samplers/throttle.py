"""Whether the board is throttling: a Raspberry Pi's `vcgencmd get_throttled` bit field, and
Intel's thermal-throttle event counters.

Bits 0-3 say what holds now (under-voltage, ARM clock capped, throttled, soft temperature
limit), bits 16-19 the same "has occurred since boot". Metric `throttled` is 1 while any "now"
bit is set, `throttle_mask` keeps the raw field. Where the Pi exposes no thermal zone (old
kernels, some containers), `vcgencmd measure_temp` gives the SoC temperature too.

vcgencmd takes tens of milliseconds a call, so it runs on its own thread (PolledSampler), every
INTERVAL_S. Role `resource`: context for a run's speed, never power.

On Intel x86 the kernel counts thermal-throttle events per core and package
(`/sys/devices/system/cpu/cpuN/thermal_throttle/*_throttle_count`): `throttled` is 1 when one
rose since the previous reading. Elsewhere throttling shows in the clocks
(edgeprof.samplers.cpufreq: a clock below its maximum) and temperatures (samplers.thermal).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar

from edgeprof.errors import SensorError
from edgeprof.samplers.base import Every, ProbeResult, Reading, Sampler, SensorEnv
from edgeprof.samplers.polled import PolledSampler, Push
from edgeprof.samplers.rpi import GROUP_FIX
from edgeprof.samplers.sysfs import (
    read_int,
    run_command,
    shown_path,
    try_text,
    which,
    why_unreadable,
)
from edgeprof.samplers.thermal import plausible, zones

TIMEOUT_S = 2.0
INTERVAL_S = 0.5
# Raspberry Pi firmware (`vcgencmd get_throttled`): bits 0-3 say what holds now, 16-19 the
# same "since boot".
BITS = {
    0: "under-voltage",
    1: "ARM clock capped",
    2: "throttled",
    3: "soft temperature limit",
}
NOW_BITS = 0xF
SINCE_BOOT_SHIFT = 16
KNOWN_MASK = NOW_BITS | NOW_BITS << SINCE_BOOT_SHIFT


def now_reasons(mask: int) -> tuple[str, ...]:
    """The conditions a get_throttled field says hold now, in words."""
    return tuple(name for bit, name in BITS.items() if mask >> bit & 1)


_THROTTLED = re.compile(r"throttled=(0x[0-9a-fA-F]+|\d+)")
_TEMP = re.compile(r"temp=(-?[\d.]+)'C")


def parse_throttled(text: str) -> int | None:
    """`throttled=0x50005` -> 0x50005; None when the text holds no bit field."""
    m = _THROTTLED.search(text)
    return int(m.group(1), 0) if m else None


def parse_temp(text: str) -> float | None:
    """`temp=47.2'C` -> 47.2; None when absent or implausible."""
    m = _TEMP.search(text)
    if m is None:
        return None
    temp_c = float(m.group(1))
    return temp_c if plausible(temp_c) else None


def describe_mask(mask: int) -> str:
    """What a get_throttled field says, in words: "now: throttled; since boot: under-voltage"."""
    now = now_reasons(mask)
    ever = now_reasons(mask >> SINCE_BOOT_SHIFT)
    return (
        f"now: {', '.join(now) or 'none'}; since boot: {', '.join(ever) or 'none'} "
        f"(throttled={mask:#x})"
    )


def readings(sensor: str, mask: int, temp_c: float | None) -> list[Reading]:
    out = [
        Reading(sensor, "throttled", 1.0 if mask & NOW_BITS else 0.0),
        Reading(sensor, "throttle_mask", float(mask)),
    ]
    if temp_c is not None:
        out.append(Reading(sensor, "temp_c", temp_c))
    return out


def _failure(rc: int, text: str) -> str:
    if "VCHI initialization failed" in text:
        return "vcgencmd: VCHI initialization failed (no access to /dev/vcio)"
    return f"vcgencmd get_throttled failed (exit {rc}): {text.strip()[:120]}"


class RpiThrottleSampler(PolledSampler):
    source: ClassVar[str] = "throttle"

    def __init__(self, exe: str, with_temp: bool) -> None:
        what = "get_throttled" + (" and measure_temp (no thermal zone)" if with_temp else "")
        super().__init__(
            sensor="throttle:rpi",
            domain="thermal",
            detail=f"{exe} {what}, every {INTERVAL_S:g} s",
            metrics=("throttled", "throttle_mask", *(("temp_c",) if with_temp else ())),
        )
        self._exe = exe
        self._with_temp = with_temp
        self.start_polling()

    def produce(self, push: Push) -> None:
        while not self.stopping:
            rc, text = run_command([self._exe, "get_throttled"], TIMEOUT_S)
            mask = parse_throttled(text)
            if mask is None:
                raise SensorError(_failure(rc, text))
            temp_c = None
            if self._with_temp:
                temp_c = parse_temp(run_command([self._exe, "measure_temp"], TIMEOUT_S)[1])
            push(readings(self.sensor, mask, temp_c))
            self._stop.wait(INTERVAL_S)

    @classmethod
    def _check(cls, env: SensorEnv) -> tuple[str | None, int | None, str, str]:
        """(vcgencmd, the mask now, reason, fix)."""
        exe = which("vcgencmd", env)
        if exe is None:
            return (
                None,
                None,
                "vcgencmd not found (not a Raspberry Pi, or its userland tools are missing)",
                "sudo apt install libraspberrypi-bin   (on Raspberry Pi OS it is preinstalled)",
            )
        rc, text = run_command([exe, "get_throttled"], TIMEOUT_S)
        mask = parse_throttled(text)
        if mask is None:
            fix = GROUP_FIX if "VCHI" in text else ""
            return exe, None, _failure(rc, text), fix
        return exe, mask, "", ""

    @staticmethod
    def _needs_temp(env: SensorEnv) -> bool:
        return not zones(env)

    @classmethod
    def discover(cls, env: SensorEnv) -> list[Sampler]:
        exe, mask, _, _ = cls._check(env)
        if exe is None or mask is None:
            return []
        return [cls(exe, cls._needs_temp(env))]

    @classmethod
    def probe(cls, env: SensorEnv) -> list[ProbeResult]:
        exe, mask, reason, fix = cls._check(env)
        if exe is None or mask is None:
            return [ProbeResult(cls.source, cls.source, False, "thermal", reason=reason, fix=fix)]
        detail = f"{exe} get_throttled: {describe_mask(mask)}"
        if cls._needs_temp(env):
            detail += "; SoC temperature from measure_temp (no thermal zone)"
        return [ProbeResult(cls.source, "throttle:rpi", True, "thermal", reason=detail)]


CPUS = "/sys/devices/system/cpu"
EVERY_S = 1.0  # the shortest interval between two readings of the counters
_CPU = re.compile(r"^cpu(\d+)$")


def throttle_counters(env: SensorEnv) -> list[Path]:
    """Intel's thermal-throttle event counters: every CPU's core count, and each package's
    count once (every CPU of a package shows the same one)."""
    files: list[Path] = []
    packages: set[str] = set()
    cpus = env.path(CPUS)
    numbered = sorted(
        (int(m.group(1)), d)
        for d in (cpus.iterdir() if cpus.is_dir() else [])
        if (m := _CPU.match(d.name))
    )
    for _, d in numbered:
        t = d / "thermal_throttle"
        if (t / "core_throttle_count").exists():
            files.append(t / "core_throttle_count")
        package = try_text(d / "topology" / "physical_package_id") or "0"
        if (t / "package_throttle_count").exists() and package not in packages:
            packages.add(package)
            files.append(t / "package_throttle_count")
    return files


class CpuThrottleSampler(Sampler):
    """Intel x86: `throttled` is 1 when any core or package throttle counter rose since the
    previous reading (the CPU cut its clock for heat), else 0. The counters count events since
    boot, so the first reading is 0 by construction."""

    source: ClassVar[str] = "cpu_throttle"

    def __init__(self, files: list[Path], env: SensorEnv) -> None:
        super().__init__(
            sensor="cpu_throttle:x86",
            domain="thermal",
            detail=(
                f"{len(files)} thermal_throttle counters under {shown_path(env.path(CPUS), env)}"
                " (1: a counter rose since the previous reading)"
            ),
            metrics=("throttled",),
        )
        self.files = files
        self._last: int | None = None
        self._every = Every(EVERY_S)

    def _total(self) -> int:
        return sum(read_int(p) for p in self.files)

    @classmethod
    def discover(cls, env: SensorEnv) -> list[Sampler]:
        files = throttle_counters(env)
        try:
            for p in files:
                read_int(p)
        except (OSError, ValueError):
            return []
        return [cls(files, env)] if files else []

    @classmethod
    def probe(cls, env: SensorEnv) -> list[ProbeResult]:
        files = throttle_counters(env)
        if not files:
            reason = (
                f"no {CPUS}/cpu*/thermal_throttle counters (Intel x86 only; virtual machines "
                "have none)"
            )
            return [ProbeResult(cls.source, cls.source, False, "thermal", reason=reason)]
        for p in files:
            try:
                read_int(p)
            except (OSError, ValueError) as e:
                reason = why_unreadable(e, p, env)
                return [
                    ProbeResult(cls.source, "cpu_throttle:x86", False, "thermal", reason=reason)
                ]
        s = cls(files, env)
        return [ProbeResult(cls.source, s.sensor, True, "thermal", reason=s.detail)]

    def read(self) -> list[Reading]:
        if not self._every.due():
            return []
        try:
            total = self._total()
        except (OSError, ValueError) as e:
            raise SensorError(f"{self.sensor}: cannot read the throttle counters ({e})") from e
        rose = self._last is not None and total > self._last
        self._last = total
        return [Reading(self.sensor, "throttled", 1.0 if rose else 0.0)]
