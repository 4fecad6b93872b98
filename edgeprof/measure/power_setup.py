"""The power settings that change a run's speed and energy: CPU governor and energy-performance
preference, ACPI platform profile, a Jetson's nvpmodel mode, AC or battery.

`power_setup(env)` returns only what it could read, as text, so two runs' setups can be shown
side by side and compared. It reads through a SensorEnv (sysfs under `env.sys_root`, commands
on `env.bin_path`), so it is tested on fake trees like the samplers, and it never raises.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from edgeprof.samplers.base import SensorEnv
from edgeprof.samplers.sysfs import run_command, try_text, which

CPUFREQ = "/sys/devices/system/cpu/cpufreq"
CPUS = "/sys/devices/system/cpu"
POWER_SUPPLY = "/sys/class/power_supply"
PLATFORM_PROFILE = "/sys/firmware/acpi/platform_profile"
TIMEOUT_S = 5.0
ADAPTER_TYPES = ("Mains", "USB", "USB_C", "USB_PD", "USB_PD_DRP", "Wireless")
_NV_MODE = re.compile(r"NV Power Mode:\s*(.+?)\s*$(?:\s*^\s*(\d+)\s*$)?", re.MULTILINE)
_PMSET = re.compile(r"drawing from '(AC|Battery) Power'")


def power_setup(env: SensorEnv | None = None) -> dict[str, str]:
    """{"cpu_governor", "energy_performance_preference", "platform_profile", "nvpmodel",
    "power_source"}: each key present only where this machine says it."""
    env = env or SensorEnv.from_environ()
    readers: dict[str, Callable[[SensorEnv], str | None]] = {
        "cpu_governor": lambda e: _policies_agree(e, "scaling_governor"),
        "energy_performance_preference": lambda e: _policies_agree(
            e, "energy_performance_preference"
        ),
        "platform_profile": lambda e: try_text(e.path(PLATFORM_PROFILE)),
        "nvpmodel": nvpmodel,
        "power_source": power_source,
    }
    found: dict[str, str] = {}
    for key, read in readers.items():
        try:
            value = read(env)
        except OSError:  # an unreadable directory: this key is simply not known
            value = None
        if value:
            found[key] = value
    return found


def _policy_dirs(env: SensorEnv) -> list[Path]:
    """cpufreq policy directories (cpuN/cpufreq on kernels without them), in number order."""

    def number(p: Path) -> int:
        digits = re.sub(r"\D", "", p.name if p.name != "cpufreq" else p.parent.name)
        return int(digits or 0)

    root = env.path(CPUFREQ)
    policies = sorted(root.glob("policy[0-9]*"), key=number) if root.is_dir() else []
    if policies:
        return policies
    return sorted(env.path(CPUS).glob("cpu[0-9]*/cpufreq"), key=number)


def _policies_agree(env: SensorEnv, name: str) -> str | None:
    """The one value every policy has, or "mixed: a,b" (big.LITTLE clusters may differ)."""
    values: list[str] = []
    for d in _policy_dirs(env):
        v = try_text(d / name)
        if v and v not in values:
            values.append(v)
    if not values:
        return None
    return values[0] if len(values) == 1 else "mixed: " + ",".join(values)


def parse_nvpmodel(text: str) -> str | None:
    """`nvpmodel -q` output ("NV Power Mode: MAXN" and the mode's number on the next line)
    -> "MAXN (mode 0)"."""
    m = _NV_MODE.search(text)
    if m is None:
        return None
    return f"{m.group(1)} (mode {m.group(2)})" if m.group(2) else m.group(1)


def nvpmodel(env: SensorEnv) -> str | None:
    """A Jetson's power mode, from the tool itself: /etc/nvpmodel.conf lists the modes, not the
    one in force."""
    exe = which("nvpmodel", env)
    if exe is None:
        return None
    rc, text = run_command([exe, "-q"], TIMEOUT_S)
    return parse_nvpmodel(text) if rc == 0 else None


def power_source(env: SensorEnv) -> str | None:
    """ "ac" or "battery": an online adapter, else a discharging battery; macOS: pmset."""
    root = env.path(POWER_SUPPLY)
    supplies = sorted(root.iterdir()) if root.is_dir() else []
    adapters = [d for d in supplies if try_text(d / "type") in ADAPTER_TYPES]
    batteries = [d for d in supplies if try_text(d / "type") == "Battery"]
    online = [try_text(d / "online") for d in adapters]
    if "1" in online:
        return "ac"
    statuses = {try_text(d / "status") for d in batteries}
    if "Discharging" in statuses or (batteries and "0" in online):
        return "battery"
    if statuses & {"Charging", "Full", "Not charging"}:
        return "ac"
    return _pmset_source(env)


def _pmset_source(env: SensorEnv) -> str | None:
    exe = which("pmset", env)
    if exe is None:
        return None
    rc, text = run_command([exe, "-g", "batt"], TIMEOUT_S)
    m = _PMSET.search(text) if rc == 0 else None
    return None if m is None else ("ac" if m.group(1) == "AC" else "battery")
