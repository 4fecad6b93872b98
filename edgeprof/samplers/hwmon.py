"""hwmon power and energy channels: power[N]_input/_average (µW), energy[N]_input (µJ,
cumulative, no defined range: a decrease is a reset), or bus mV × mA where a chip has only those.

Chips are matched by `name` and labels, never by hwmonN (those numbers change across boots).
The domain says what a channel can be added to: on an AMD APU the amdgpu PPT covers the whole
SoC, CPU included, so it is `soc` (never added to RAPL package); a discrete GPU is `gpu`; an ACPI
power meter is `board`. Channels we cannot place are `other`: recorded, plotted, never summed.
INA3221 rail monitors belong to the jetson source.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from edgeprof.errors import SensorError
from edgeprof.power import Domain
from edgeprof.samplers.base import ProbeResult, Reading, Sampler, SensorEnv
from edgeprof.samplers.sysfs import Counter, read_int, shown_path, try_text, why_unreadable

HWMON = "/sys/class/hwmon"
SKIP_CHIPS = ("ina3221",)  # read by the jetson source
GPU_CHIPS = ("amdgpu", "nouveau", "i915", "xe", "radeon")
PERMISSION_FIX = "sudo chmod a+r {path}   (some platforms restrict hwmon files to root)"
_CHANNEL = re.compile(r"^(power|energy|in|curr)(\d+)_(input|average)$")


@dataclass(frozen=True)
class Channel:
    chip: str  # chip name, suffixed -1, -2 when several chips share it
    kind: str  # power | energy | vi
    index: int
    label: str
    paths: tuple[Path, ...]  # one file, or (in_input mV, curr_input mA)
    domain: Domain
    error: str  # "" when readable

    @property
    def sensor(self) -> str:
        name = f"{self.kind}{self.index}" if self.kind != "vi" else f"vi{self.index}"
        return f"hwmon:{self.chip}:{name}"


def _chips(env: SensorEnv) -> list[tuple[str, Path]]:
    root = env.path(HWMON)
    if not root.is_dir():
        return []
    found: list[tuple[str, str, Path]] = []
    for d in root.iterdir():
        name = try_text(d / "name")
        if name is None:
            continue
        dev = d / "device"
        order = str(dev.resolve()) if dev.exists() else d.name
        found.append((name, order, d))
    found.sort()
    counts: dict[str, int] = {}
    for name, _, _ in found:
        counts[name] = counts.get(name, 0) + 1
    out: list[tuple[str, Path]] = []
    seen: dict[str, int] = {}
    for name, _, d in found:
        if counts[name] > 1:
            seen[name] = seen.get(name, 0) + 1
            out.append((f"{name}-{seen[name]}", d))
        else:
            out.append((name, d))
    return out


def _is_apu(d: Path) -> bool:
    """amdgpu exposes vddnb (in1) only on APUs; fastPPT/slowPPT also exist only there."""
    if (try_text(d / "in1_label") or "").lower() == "vddnb":
        return True
    labels = {(try_text(p) or "").lower() for p in d.glob("power*_label")}
    return bool(labels & {"fastppt", "slowppt"})


def _domain(chip: str, label: str, first_gpu_channel: bool, apu: bool) -> Domain:
    base = re.sub(r"-\d+$", "", chip)
    lab = label.lower()
    if base in GPU_CHIPS:
        if not first_gpu_channel:
            return "other"  # e.g. xe's pkg is inside card; amdgpu fastPPT duplicates PPT
        return "soc" if apu else "gpu"
    if base == "power_meter":
        return "board"
    if base == "amd_energy":
        return "package" if lab.startswith("esocket") else "core"
    if base == "zenpower" and "core" in lab:
        return "core"
    return "other"


def _check(paths: tuple[Path, ...], env: SensorEnv) -> str:
    for p in paths:
        try:
            read_int(p)
        except (OSError, ValueError) as e:
            return why_unreadable(e, p, env)
    return ""


def scan(env: SensorEnv) -> list[Channel]:
    channels: list[Channel] = []
    for chip, d in _chips(env):
        if re.sub(r"-\d+$", "", chip) in SKIP_CHIPS:
            continue
        files: dict[tuple[str, int], dict[str, Path]] = {}
        for p in d.iterdir():
            m = _CHANNEL.match(p.name)
            if m:
                files.setdefault((m.group(1), int(m.group(2))), {})[m.group(3)] = p
        apu = re.sub(r"-\d+$", "", chip) == "amdgpu" and _is_apu(d)
        first = True
        picked: list[tuple[str, int, tuple[Path, ...], str]] = []
        for kind in ("energy", "power"):
            for (k, idx), variants in sorted(files.items()):
                if k != kind:
                    continue
                path = variants.get("input") or variants["average"]
                picked.append((kind, idx, (path,), try_text(d / f"{kind}{idx}_label") or ""))
        if not picked:
            picked = _vi_pairs(chip, d, files)
        for kind, idx, paths, label in picked:
            domain = _domain(chip, label, first, apu)
            first = False
            channels.append(Channel(chip, kind, idx, label, paths, domain, _check(paths, env)))
    return channels


def _vi_pairs(
    chip: str, d: Path, files: dict[tuple[str, int], dict[str, Path]]
) -> list[tuple[str, int, tuple[Path, ...], str]]:
    """Bus voltage × current pairs: matched by label, or by index on INA-family monitors whose
    inN and currN are the same channel by construction."""
    volts = {i: v["input"] for (k, i), v in files.items() if k == "in" and "input" in v}
    amps = {i: v["input"] for (k, i), v in files.items() if k == "curr" and "input" in v}
    v_labels = {i: try_text(d / f"in{i}_label") for i in volts}
    out: list[tuple[str, int, tuple[Path, ...], str]] = []
    for i, a_path in sorted(amps.items()):
        a_label = try_text(d / f"curr{i}_label")
        match = next((j for j, lab in v_labels.items() if a_label and lab == a_label), None)
        if match is None and chip.startswith("ina") and i in volts:
            match = i
        if match is not None:
            out.append(("vi", i, (volts[match], a_path), a_label or ""))
    return out


class HwmonSampler(Sampler):
    source: ClassVar[str] = "hwmon"

    def __init__(self, ch: Channel, env: SensorEnv) -> None:
        unit = {"power": "µW", "energy": "µJ counter, a decrease is a reset", "vi": "mV × mA"}
        files = " × ".join(shown_path(p, env) for p in ch.paths)
        label = f" {ch.label!r}" if ch.label else ""
        super().__init__(
            sensor=ch.sensor,
            domain=ch.domain,
            detail=f"{files}{label} ({unit[ch.kind]})",
            metrics=("energy_j",) if ch.kind == "energy" else ("power_w",),
        )
        self.channel = ch
        self._counter = Counter(1e-6) if ch.kind == "energy" else None

    @classmethod
    def discover(cls, env: SensorEnv) -> list[Sampler]:
        return [cls(ch, env) for ch in scan(env) if not ch.error]

    @classmethod
    def probe(cls, env: SensorEnv) -> list[ProbeResult]:
        root = env.path(HWMON)
        if not root.is_dir():
            reason = f"no {HWMON} (no hardware-monitoring drivers loaded)"
            return [ProbeResult(cls.source, cls.source, False, reason=reason)]
        channels = scan(env)
        if not channels:
            chips = ", ".join(sorted(c for c, _ in _chips(env))) or "none"
            reason = f"no hwmon chip exposes power or energy (chips: {chips})"
            fix = "sudo sensors-detect (lm-sensors) may find a power-monitor driver to load"
            return [ProbeResult(cls.source, cls.source, False, reason=reason, fix=fix)]
        out: list[ProbeResult] = []
        for ch in channels:
            if ch.error:
                fix = ""
                if "permission" in ch.error:
                    fix = PERMISSION_FIX.format(path=shown_path(ch.paths[0].parent, env) + "/*")
                out.append(
                    ProbeResult(cls.source, ch.sensor, False, ch.domain, reason=ch.error, fix=fix)
                )
            else:
                s = cls(ch, env)
                out.append(ProbeResult(cls.source, s.sensor, True, s.domain, reason=s.detail))
        return out

    def read(self) -> list[Reading]:
        try:
            raw = [read_int(p) for p in self.channel.paths]
        except (OSError, ValueError) as e:
            raise SensorError(f"{self.sensor}: cannot read {self.channel.paths} ({e})") from e
        if self._counter is not None:
            return [Reading(self.sensor, "energy_j", self._counter.update(raw[0]))]
        if self.channel.kind == "vi":
            return [Reading(self.sensor, "power_w", raw[0] * raw[1] / 1e6)]
        return [Reading(self.sensor, "power_w", raw[0] / 1e6)]
