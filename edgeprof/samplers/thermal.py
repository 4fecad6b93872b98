"""Temperatures: Linux thermal zones (`/sys/class/thermal/thermal_zone*/temp`, the zone's `type`
names it) and hwmon `temp*_input` channels (chip `name` and `temp*_label`), all millidegrees C.

Context for a run's speed, never power (role `resource`, metric `temp_c`). Temperatures change
over seconds, so each sensor reads at most once a second whatever the recorder's rate. A zone
the kernel also mirrors as an hwmon chip is read once, as the zone. A value outside
MIN_C..MAX_C is a placeholder (-273, 0x7fff...) or an unconnected input, not a temperature:
such a channel is left out at discovery and a reading is skipped.

Sensor names: `thermal:<zone type>` (`thermal:x86_pkg_temp`, `thermal:cpu-thermal`) and
`thermal:<chip>/<label>` for hwmon (`thermal:coretemp/Package id 0`, `thermal:nvme/Composite`);
names shared by several zones or chips get -1, -2 in sysfs order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from edgeprof.errors import SensorError
from edgeprof.samplers.base import Every, ProbeResult, Reading, Sampler, SensorEnv
from edgeprof.samplers.hwmon import _chips
from edgeprof.samplers.sysfs import read_int, shown_path, try_text, why_unreadable

THERMAL = "/sys/class/thermal"
HWMON = "/sys/class/hwmon"
MIN_C, MAX_C = -40.0, 150.0
EVERY_S = 1.0  # the shortest interval between two readings of one sensor
_ZONE = re.compile(r"^thermal_zone(\d+)$")
_TEMP = re.compile(r"^temp(\d+)_input$")


@dataclass(frozen=True)
class TempChannel:
    name: str  # the sensor name without the "thermal:" prefix
    path: Path  # millidegrees C
    error: str  # "" when readable and plausible
    temp_c: float | None = None  # as read at discovery


def plausible(temp_c: float) -> bool:
    return MIN_C <= temp_c <= MAX_C


def _channel(name: str, path: Path, env: SensorEnv) -> TempChannel:
    try:
        temp_c = read_int(path) / 1e3
    except (OSError, ValueError) as e:
        return TempChannel(name, path, why_unreadable(e, path, env))
    if not plausible(temp_c):
        why = (
            f"{shown_path(path, env)} reads {temp_c:g} °C, outside {MIN_C:g}..{MAX_C:g} °C: "
            "a placeholder or an unconnected input, not a temperature"
        )
        return TempChannel(name, path, why, temp_c)
    return TempChannel(name, path, "", temp_c)


def _suffixed(named: list[tuple[str, Path]]) -> list[tuple[str, Path]]:
    """Names shared by several entries get -1, -2 in the given order."""
    counts: dict[str, int] = {}
    for name, _ in named:
        counts[name] = counts.get(name, 0) + 1
    seen: dict[str, int] = {}
    out = []
    for name, p in named:
        if counts[name] > 1:
            seen[name] = seen.get(name, 0) + 1
            name = f"{name}-{seen[name]}"
        out.append((name, p))
    return out


def zones(env: SensorEnv) -> list[tuple[str, Path]]:
    """(zone type, zone directory) in zone-number order."""
    root = env.path(THERMAL)
    if not root.is_dir():
        return []
    found = []
    for d in root.iterdir():
        m = _ZONE.match(d.name)
        if m:
            found.append((int(m.group(1)), try_text(d / "type") or d.name, d))
    return [(name, d) for _, name, d in sorted(found)]


def _mirrors_a_zone(chip_dir: Path, zone_types: set[str]) -> bool:
    """The kernel registers an hwmon chip for a thermal zone (thermal_hwmon.c): its `device`
    is the zone, or, on older kernels, it has no device and the zone's type as its name."""
    dev = chip_dir / "device"
    if dev.exists():
        return _ZONE.match(dev.resolve().name) is not None
    name = try_text(chip_dir / "name") or ""
    return name in zone_types


def scan(env: SensorEnv) -> list[TempChannel]:
    found = zones(env)
    channels = [_channel(name, d / "temp", env) for name, d in _suffixed(found)]
    # thermal_hwmon names a zone's chip after its type with '-' replaced by '_'.
    zone_types = {name.replace("-", "_") for name, _ in found}
    for chip, d in _chips(env):
        if _mirrors_a_zone(d, zone_types):
            continue
        inputs = sorted(
            (int(m.group(1)), p) for p in d.iterdir() if (m := _TEMP.match(p.name)) is not None
        )
        for i, p in inputs:
            label = try_text(d / f"temp{i}_label") or f"temp{i}"
            channels.append(_channel(f"{chip}/{label}", p, env))
    return channels


class ThermalSampler(Sampler):
    source: ClassVar[str] = "thermal"

    def __init__(self, ch: TempChannel, env: SensorEnv) -> None:
        super().__init__(
            sensor=f"thermal:{ch.name}",
            domain="thermal",
            detail=f"{shown_path(ch.path, env)} (m°C)",
            metrics=("temp_c",),
        )
        self.channel = ch
        self._every = Every(EVERY_S)

    @classmethod
    def discover(cls, env: SensorEnv) -> list[Sampler]:
        return [cls(ch, env) for ch in scan(env) if not ch.error]

    @classmethod
    def probe(cls, env: SensorEnv) -> list[ProbeResult]:
        channels = scan(env)
        if not channels:
            reason = (
                f"no {THERMAL}/thermal_zone* and no hwmon temp*_input: this kernel exposes no "
                "temperature sensors (virtual machines usually do not)"
            )
            return [ProbeResult(cls.source, cls.source, False, "thermal", reason=reason)]
        out = []
        for ch in channels:
            sensor = f"thermal:{ch.name}"
            if ch.error:
                out.append(ProbeResult(cls.source, sensor, False, "thermal", reason=ch.error))
            else:
                detail = f"{shown_path(ch.path, env)}: {ch.temp_c:.1f} °C now"
                out.append(ProbeResult(cls.source, sensor, True, "thermal", reason=detail))
        return out

    def read(self) -> list[Reading]:
        if not self._every.due():
            return []
        try:
            temp_c = read_int(self.channel.path) / 1e3
        except (OSError, ValueError) as e:
            raise SensorError(f"{self.sensor}: cannot read {self.channel.path} ({e})") from e
        return [Reading(self.sensor, "temp_c", temp_c)] if plausible(temp_c) else []
