"""Linux powercap RAPL (Intel; AMD Zen on Linux ≥ 5.8): cumulative µJ counters per zone.

Zones live flat under /sys/class/powercap: `intel-rapl:N` (package-N or psys) and subzones
`intel-rapl:N:M` (core, uncore, dram); newer Intel repeats them as `intel-rapl-mmio:N`, which we
drop when the MSR zone of the same name is readable. Every zone is recorded; which ones add up
is energy.select_domains' job (package includes core and uncore; psys includes package + dram).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from edgeprof.errors import SensorError
from edgeprof.power import Domain
from edgeprof.samplers.base import ProbeResult, Reading, Sampler, SensorEnv
from edgeprof.samplers.sysfs import Counter, read_int, shown_path, try_text, why_unreadable

POWERCAP = "/sys/class/powercap"
PREFIXES = ("intel-rapl:", "intel-rapl-mmio:")
PERMISSION_FIX = (
    "sudo chmod -R a+r /sys/class/powercap/*   (until reboot; to persist, add "
    "`mode class/powercap/intel-rapl:0/energy_uj = 0444` per zone to /etc/sysfs.conf)"
)
MISSING_FIX = (
    "sudo modprobe intel_rapl_msr   (x86 only; AMD needs Linux ≥ 5.8; VMs rarely expose RAPL)"
)


@dataclass(frozen=True)
class Zone:
    path: Path
    sensor: str  # rapl:package-0, rapl:package-0/dram, rapl:psys
    domain: Domain  # package, psys, core, uncore, dram
    mmio: bool
    energy_error: str  # "" when energy_uj reads
    max_range_uj: int | None


# The zone names the kernel gives (besides package-N); anything else is recorded, never summed.
_ZONE_DOMAINS: dict[str, Domain] = {
    "psys": "psys",
    "core": "core",
    "uncore": "uncore",
    "dram": "dram",
}


def _domain(name: str) -> Domain:
    return "package" if name.startswith("package") else _ZONE_DOMAINS.get(name, "other")


def scan(env: SensorEnv) -> list[Zone]:
    """Every RAPL zone, readable or not, de-duplicated by name (MSR zones win over MMIO)."""
    root = env.path(POWERCAP)
    if not root.is_dir():
        return []
    zones: dict[str, Zone] = {}
    entries = sorted(
        (p for p in root.iterdir() if p.name.startswith(PREFIXES)),
        key=lambda p: (p.name.startswith("intel-rapl-mmio"), p.name.count(":"), p.name),
    )
    for p in entries:
        name = try_text(p / "name")
        if not name:
            continue
        prefix, _, ids = p.name.partition(":")
        parts = ids.split(":")
        if len(parts) > 1:
            parent_name = try_text(root / f"{prefix}:{parts[0]}" / "name") or f"zone-{parts[0]}"
            sensor = f"rapl:{parent_name}/{name}"
        else:
            sensor = f"rapl:{name}"
        try:
            read_int(p / "energy_uj")
            err = ""
        except (OSError, ValueError) as e:
            err = why_unreadable(e, p / "energy_uj", env)
        max_text = try_text(p / "max_energy_range_uj")
        zone = Zone(
            path=p,
            sensor=sensor,
            domain=_domain(name),
            mmio=prefix == "intel-rapl-mmio",
            energy_error=err,
            max_range_uj=int(max_text) if max_text and max_text.isdigit() else None,
        )
        prev = zones.get(sensor)
        # An MMIO copy of a zone measures the same thing: keep it only if the MSR one is unreadable.
        if prev is None or (prev.energy_error and not zone.energy_error):
            zones[sensor] = zone
    return list(zones.values())


class RaplSampler(Sampler):
    source: ClassVar[str] = "rapl"

    def __init__(self, zone: Zone, env: SensorEnv) -> None:
        wrap = (
            f"wraps at {zone.max_range_uj} µJ"
            if zone.max_range_uj
            else "max_energy_range_uj unreadable: a decrease counts as a reset"
        )
        super().__init__(
            sensor=zone.sensor,
            domain=zone.domain,
            detail=f"{shown_path(zone.path / 'energy_uj', env)} (µJ counter, {wrap})",
            metrics=("energy_j",),
        )
        self._path = zone.path / "energy_uj"
        self._counter = Counter(1e-6, zone.max_range_uj)

    @classmethod
    def discover(cls, env: SensorEnv) -> list[Sampler]:
        return [cls(z, env) for z in scan(env) if not z.energy_error]

    @classmethod
    def probe(cls, env: SensorEnv) -> list[ProbeResult]:
        root = env.path(POWERCAP)
        if not root.is_dir():
            reason = f"no {POWERCAP} (powercap driver not loaded, not x86, or a VM)"
            return [ProbeResult(cls.source, cls.source, False, reason=reason, fix=MISSING_FIX)]
        zones = scan(env)
        if not zones:
            reason = f"{POWERCAP} has no intel-rapl zones"
            return [ProbeResult(cls.source, cls.source, False, reason=reason, fix=MISSING_FIX)]
        out: list[ProbeResult] = []
        for z in zones:
            if z.energy_error:
                perm = "permission" in z.energy_error
                reason = z.energy_error + (
                    " (energy_uj is root-only since CVE-2020-8694)" if perm else ""
                )
                fix = PERMISSION_FIX if perm else "check the kernel log (dmesg | grep -i rapl)"
                out.append(
                    ProbeResult(cls.source, z.sensor, False, z.domain, reason=reason, fix=fix)
                )
            else:
                s = cls(z, env)
                out.append(ProbeResult(cls.source, s.sensor, True, s.domain, reason=s.detail))
        return out

    def read(self) -> list[Reading]:
        try:
            raw = read_int(self._path)
        except (OSError, ValueError) as e:
            raise SensorError(f"{self.sensor}: cannot read {self._path} ({e})") from e
        return [Reading(self.sensor, "energy_j", self._counter.update(raw))]
