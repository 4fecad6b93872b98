"""edgeprof sensor plugin for the FancyMeter, a (made-up) board power meter.

Its driver shows the board's draw, in microwatts, in /sys/class/fancy_meter/power_uw.
This one file is the whole sensor: the sampler and its one registration line.
"""

from __future__ import annotations

from typing import ClassVar

from edgeprof.errors import SensorError
from edgeprof.samplers import ProbeResult, Reading, Sampler, SensorEnv, register_sampler
from edgeprof.samplers.sysfs import read_int, why_unreadable

POWER_FILE = "/sys/class/fancy_meter/power_uw"
LOAD_FIX = "sudo modprobe fancy_meter"
PERMISSION_FIX = f"sudo chmod a+r {POWER_FILE}"


class FancyMeterSampler(Sampler):
    source: ClassVar[str] = "fancy"  # the name in `edgeprof probe` and `--sensors fancy`

    def __init__(self, env: SensorEnv) -> None:
        super().__init__(
            sensor="fancy:board",  # "<source>:<instance>"
            domain="board",  # the whole board's draw: counted alone, never added to others
            detail=f"{POWER_FILE} (µW)",
            metrics=("power_w",),
        )
        self._file = env.path(POWER_FILE)  # under EDGEPROF_SYS_ROOT, so tests use a fake /sys

    @classmethod
    def _why_unavailable(cls, env: SensorEnv) -> str:
        """Why the meter cannot be read (in the device's own paths); "" when it can."""
        try:
            read_int(env.path(POWER_FILE))
        except (OSError, ValueError) as e:
            return why_unreadable(e, env.path(POWER_FILE), env)
        return ""

    @classmethod
    def discover(cls, env: SensorEnv) -> list[Sampler]:
        return [] if cls._why_unavailable(env) else [cls(env)]

    @classmethod
    def probe(cls, env: SensorEnv) -> list[ProbeResult]:
        reason = cls._why_unavailable(env)
        if reason:
            fix = PERMISSION_FIX if "permission" in reason else LOAD_FIX
            return [ProbeResult(cls.source, cls.source, False, "board", reason=reason, fix=fix)]
        s = cls(env)
        return [ProbeResult(cls.source, s.sensor, True, s.domain, reason=s.detail)]

    def read(self) -> list[Reading]:
        try:
            microwatts = read_int(self._file)
        except (OSError, ValueError) as e:  # the recorder skips this tick and carries on
            raise SensorError(f"{self.sensor}: cannot read {self._file} ({e})") from e
        return [Reading(self.sensor, "power_w", microwatts / 1e6)]


register_sampler("fancy", FancyMeterSampler)
