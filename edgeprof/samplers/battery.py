"""Laptop battery (/sys/class/power_supply/*, type Battery): the whole system's draw, but only
while discharging. On AC the numbers describe charging, so the battery then reads nothing.

The ACPI driver gives either power_now (µW) or current_now (µA) × voltage_now (µV), never both;
the current's sign differs between drivers, hence the absolute value. energy_now (µWh) updates
too coarsely for a request window and is not used.

`battery_capacity` reads how much energy a full battery holds (for runtime-on-battery
figures): energy_full (µWh), else charge_full (µAh) × voltage_min_design (µV), else the same
for the design capacity; on macOS, ioreg's AppleSmartBattery entry.
"""

from __future__ import annotations

import platform
import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from edgeprof.errors import SensorError
from edgeprof.samplers.base import ProbeResult, Reading, Sampler, SensorEnv
from edgeprof.samplers.sysfs import (
    read_int,
    run_command,
    shown_path,
    try_text,
    which,
    why_unreadable,
)

POWER_SUPPLY = "/sys/class/power_supply"
IOREG_TIMEOUT_S = 3.0


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


# -- capacity ------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatteryCapacity:
    wh: float
    source: str  # the files (as on the device) or the command it was read from


def battery_capacity(env: SensorEnv) -> BatteryCapacity | None:
    """The first system battery's full capacity in Wh, whether charging or not; None when
    there is no battery or it cannot be read. Never raises."""
    try:
        found = batteries(env)
    except OSError:  # an unlistable power_supply folder: as good as no battery
        found = []
    if found:
        return sysfs_capacity(found[0], env)
    if platform.system() == "Darwin":
        return macos_capacity(env)
    return None


def sysfs_capacity(d: Path, env: SensorEnv) -> BatteryCapacity | None:
    # The full capacity (today's health) before the design capacity: a worn battery holds less.
    for kind in ("full", "full_design"):
        capacity = _energy_capacity(d, kind, env) or _charge_capacity(d, kind, env)
        if capacity is not None:
            return capacity
    return None


def _energy_capacity(d: Path, kind: str, env: SensorEnv) -> BatteryCapacity | None:
    path = d / f"energy_{kind}"
    uwh = _positive_int(path)
    return BatteryCapacity(uwh / 1e6, shown_path(path, env)) if uwh else None


def _charge_capacity(d: Path, kind: str, env: SensorEnv) -> BatteryCapacity | None:
    charge, voltage = d / f"charge_{kind}", d / "voltage_min_design"
    uah, uv = _positive_int(charge), _positive_int(voltage)
    if not (uah and uv):
        return None
    source = f"{shown_path(charge, env)} × {shown_path(voltage, env)}"
    return BatteryCapacity(uah * uv / 1e12, source)


def _positive_int(path: Path) -> int | None:
    # Some drivers write 0 for a capacity they do not know: as good as missing.
    try:
        value = read_int(path)
    except (OSError, ValueError):
        return None
    return value if value > 0 else None


def macos_capacity(env: SensorEnv) -> BatteryCapacity | None:
    exe = which("ioreg", env)
    if exe is None:
        return None
    rc, text = run_command([exe, "-rn", "AppleSmartBattery"], IOREG_TIMEOUT_S)
    return parse_ioreg_capacity(text) if rc == 0 else None


def parse_ioreg_capacity(text: str) -> BatteryCapacity | None:
    """Wh from `ioreg -rn AppleSmartBattery`: a maximum capacity in mAh × `Voltage` in mV.

    Top-level keys only (`  "Key" = 123` on its own line): nested dictionaries such as
    BatteryData repeat some names. Apple silicon Macs report MaxCapacity as a percentage and
    the mAh in AppleRawMaxCapacity; Intel Macs report mAh in MaxCapacity, hence the > 100 test.
    ioreg gives the present voltage, not a minimum design voltage as Linux does.
    """
    fields: dict[str, int] = {}
    for key, value in re.findall(r'^\s*"(\w+)" = (\d+)\s*$', text, re.MULTILINE):
        fields.setdefault(key, int(value))
    mv = fields.get("Voltage")
    for key in ("AppleRawMaxCapacity", "MaxCapacity", "DesignCapacity"):
        mah = fields.get(key, 0)
        if mah > 100 and mv:
            return BatteryCapacity(mah * mv / 1e6, f"ioreg -rn AppleSmartBattery ({key} × Voltage)")
    return None
