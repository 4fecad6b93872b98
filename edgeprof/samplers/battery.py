"""Laptop battery (/sys/class/power_supply/*, type Battery): the whole system's draw, but only
while discharging. On AC the numbers describe charging, so the battery then reads nothing.

The ACPI driver gives either power_now (µW) or current_now (µA) × voltage_now (µV), never both;
the current's sign differs between drivers, hence the absolute value. energy_now (µWh) updates
too coarsely for a request window and is not used.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from edgeprof.errors import SensorError
from edgeprof.samplers.base import ProbeResult, Reading, Sampler, SensorEnv
from edgeprof.samplers.sysfs import read_int, shown_path, try_text, why_unreadable

POWER_SUPPLY = "/sys/class/power_supply"


def batteries(env: SensorEnv) -> list[Path]:
    root = env.path(POWER_SUPPLY)
    if not root.is_dir():
        return []
    out = []
    for d in sorted(root.iterdir()):
        # scope=Device marks a peripheral's battery (mouse, headset), not the system's.
        if try_text(d / "type") == "Battery" and try_text(d / "scope") != "Device":
            out.append(d)
    return out


def power_files(d: Path) -> tuple[Path, ...]:
    if (d / "power_now").exists():
        return (d / "power_now",)
    return (d / "current_now", d / "voltage_now")


def battery_power_w(raw: list[int]) -> float:
    """µW, or |µA| × µV, to watts."""
    if len(raw) == 1:
        return raw[0] / 1e6
    return abs(raw[0]) * raw[1] / 1e12


class BatterySampler(Sampler):
    source: ClassVar[str] = "battery"

    def __init__(self, d: Path, env: SensorEnv) -> None:
        self._dir = d
        self._files = power_files(d)
        how = " × ".join(shown_path(p, env) for p in self._files)
        super().__init__(
            sensor=f"battery:{d.name}",
            domain="battery",
            detail=f"{how} while Discharging (whole system on battery)",
            metrics=("power_w",),
        )

    @staticmethod
    def _state(d: Path, env: SensorEnv) -> tuple[bool, str, str]:
        """(usable, reason, fix)"""
        status_path = d / "status"
        status = try_text(status_path)
        if status is None:
            return False, f"cannot read {shown_path(status_path, env)}", ""
        if status != "Discharging":
            return (
                False,
                f"on AC power (status {status}): battery figures describe charging, "
                "not the system's draw",
                "unplug the charger to measure on battery",
            )
        for p in power_files(d):
            try:
                read_int(p)
            except (OSError, ValueError) as e:
                return False, why_unreadable(e, p, env), ""
        return True, "", ""

    @classmethod
    def discover(cls, env: SensorEnv) -> list[Sampler]:
        return [cls(d, env) for d in batteries(env) if cls._state(d, env)[0]]

    @classmethod
    def probe(cls, env: SensorEnv) -> list[ProbeResult]:
        found = batteries(env)
        if not found:
            reason = f"no battery in {POWER_SUPPLY} (a desktop, server or VM)"
            return [ProbeResult(cls.source, cls.source, False, reason=reason)]
        out = []
        for d in found:
            ok, reason, fix = cls._state(d, env)
            if ok:
                s = cls(d, env)
                out.append(ProbeResult(cls.source, s.sensor, True, s.domain, reason=s.detail))
            else:
                out.append(
                    ProbeResult(
                        cls.source, f"battery:{d.name}", False, "battery", reason=reason, fix=fix
                    )
                )
        return out

    def read(self) -> list[Reading]:
        if try_text(self._dir / "status") != "Discharging":
            return []  # plugged in mid-run: no figure rather than a charging figure
        try:
            raw = [read_int(p) for p in self._files]
        except (OSError, ValueError) as e:
            raise SensorError(f"{self.sensor}: cannot read {self._dir} ({e})") from e
        return [Reading(self.sensor, "power_w", battery_power_w(raw))]
