"""NVIDIA Jetson INA3221 power rails: iio `ina3221x` (JetPack 4), hwmon `ina3221` (JetPack 5+),
or `tegrastats` when neither can be read.

The board total is VDD_IN (Orin) or POM_5V_IN (older boards), domain `board`; the other rails
are `rail`, parts of it, which energy.select_domains sums only when no total exists (and then
says the sum is partial). Labels containing NC are unconnected inputs. VDD_IN excludes the
carrier board. Thor's INA238 reports power directly in µW.
"""

from __future__ import annotations

import re
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from edgeprof.errors import SensorError
from edgeprof.power import Domain
from edgeprof.samplers.base import ProbeResult, Reading, Sampler, SensorEnv
from edgeprof.samplers.polled import PolledSampler, Push
from edgeprof.samplers.sysfs import (
    read_int,
    shown_path,
    try_text,
    which,
    why_unreadable,
)

RELEASE = "/etc/nv_tegra_release"
BOARD_RAILS = ("VDD_IN", "POM_5V_IN")
PERMISSION_FIX = "sudo chmod a+r {path}   (or run edgeprof with access to the rail files)"
_TEGRA = re.compile(r"\b([A-Z][A-Z0-9_]*) (\d+)(mW)?/(\d+)(mW)?(?![\w/])")


@dataclass(frozen=True)
class Rail:
    label: str
    files: tuple[Path, ...]  # (power mW) | (power µW) | (bus mV, current mA)
    scale_w: float  # multiply the product of the files' values by this
    error: str

    @property
    def domain(self) -> Domain:
        return rail_domain(self.label)


def rail_domain(label: str) -> Domain:
    return "board" if label in BOARD_RAILS else "rail"


def _usable(label: str | None) -> bool:
    return bool(label) and "NC" not in str(label).upper().split("_")


def _check(files: tuple[Path, ...], env: SensorEnv) -> str:
    for p in files:
        try:
            read_int(p)
        except (OSError, ValueError) as e:
            return why_unreadable(e, p, env)
    return ""


def scan(env: SensorEnv) -> list[Rail]:
    rails: dict[str, Rail] = {}
    for dev in sorted(env.path("/sys/bus/i2c/drivers/ina3221x").glob("*/iio:device*")):
        for name_file in sorted(dev.glob("rail_name_*")):
            n = name_file.name.rsplit("_", 1)[1]
            label = try_text(name_file)
            if not _usable(label) or label is None:
                continue
            if (dev / f"in_power{n}_input").exists():
                files: tuple[Path, ...] = (dev / f"in_power{n}_input",)
                scale = 1e-3
            else:
                files = (dev / f"in_voltage{n}_input", dev / f"in_current{n}_input")
                scale = 1e-6
            rails.setdefault(label, Rail(label, files, scale, _check(files, env)))
    hw_dirs = [*env.path("/sys/bus/i2c/devices").glob("*/hwmon/hwmon*")]
    hw_dirs += [*env.path("/sys/class/hwmon").glob("hwmon*")]
    for d in hw_dirs:
        chip = try_text(d / "name")
        if chip not in ("ina3221", "ina238"):
            continue
        for label_file in sorted(d.glob("in*_label")):
            i = label_file.name[2:].split("_")[0]
            label = try_text(label_file)
            if not _usable(label) or label is None:
                continue
            if (d / f"power{i}_input").exists():
                files, scale = (d / f"power{i}_input",), 1e-6
            else:
                files, scale = (d / f"in{i}_input", d / f"curr{i}_input"), 1e-6
            rails.setdefault(label, Rail(label, files, scale, _check(files, env)))
    return list(rails.values())


class JetsonRailSampler(Sampler):
    source: ClassVar[str] = "jetson"

    def __init__(self, rail: Rail, env: SensorEnv) -> None:
        files = " × ".join(shown_path(p, env) for p in rail.files)
        part = "board total" if rail.domain == "board" else "one rail: part of the board"
        super().__init__(
            sensor=f"jetson:{rail.label}",
            domain=rail.domain,
            detail=f"INA3221 {files} ({part})",
            metrics=("power_w",),
        )
        self.rail = rail

    @classmethod
    def discover(cls, env: SensorEnv) -> list[Sampler]:
        rails = [r for r in scan(env) if not r.error]
        if rails:
            return [cls(r, env) for r in rails]
        exe = which("tegrastats", env)
        if exe and env.path(RELEASE).exists():
            try:
                return [TegrastatsSampler(exe)]
            except SensorError:
                return []
        return []

    @classmethod
    def probe(cls, env: SensorEnv) -> list[ProbeResult]:
        rails = scan(env)
        is_jetson = env.path(RELEASE).exists()
        exe = which("tegrastats", env)
        if not rails:
            if is_jetson and exe:
                return [
                    ProbeResult(
                        cls.source,
                        "jetson:tegrastats",
                        True,
                        "board",
                        reason=f"{exe} (no readable INA3221 files; VDD_IN/POM_5V_IN lines)",
                    )
                ]
            reason = (
                f"Jetson ({RELEASE}) without readable INA3221 rails or tegrastats"
                if is_jetson
                else f"not a Jetson ({RELEASE} missing, no INA3221 rail monitor)"
            )
            return [ProbeResult(cls.source, cls.source, False, reason=reason)]
        out = []
        for r in rails:
            if r.error:
                fix = ""
                if "permission" in r.error:
                    fix = PERMISSION_FIX.format(path=shown_path(r.files[0], env))
                out.append(
                    ProbeResult(
                        cls.source, f"jetson:{r.label}", False, r.domain, reason=r.error, fix=fix
                    )
                )
            else:
                s = cls(r, env)
                out.append(ProbeResult(cls.source, s.sensor, True, s.domain, reason=s.detail))
        return out

    def read(self) -> list[Reading]:
        try:
            product = 1.0
            for p in self.rail.files:
                product *= read_int(p)
        except (OSError, ValueError) as e:
            raise SensorError(f"{self.sensor}: cannot read {self.rail.files} ({e})") from e
        return [Reading(self.sensor, "power_w", product * self.rail.scale_w)]


def parse_tegrastats(line: str) -> dict[str, float]:
    """Current power in W per rail from one tegrastats line (`VDD_IN 5000mW/5000mW`, older
    `POM_5V_IN 1234/1234`); RAM/SWAP-style fields with other units are not power."""
    out: dict[str, float] = {}
    for m in _TEGRA.finditer(line):
        name, now, unit = m.group(1), int(m.group(2)), m.group(3)
        if (unit or name.startswith(("VDD_", "POM_", "VIN_"))) and _usable(name):
            out[name] = now / 1e3
    return out


class TegrastatsSampler(PolledSampler):
    """The board total (VDD_IN/POM_5V_IN) from a `tegrastats` stream; where a board has no
    total rail, the sum of the rails it prints, labelled partial (domain `rail`)."""

    source: ClassVar[str] = "jetson"
    terminate_grace_s: ClassVar[float] = 0.0  # nothing to flush: SIGKILL at once

    def __init__(self, exe: str, interval_ms: int = 100) -> None:
        super().__init__(
            sensor="jetson:tegrastats",
            domain="board",
            detail=f"{exe} --interval {interval_ms}: VDD_IN/POM_5V_IN current mW",
            metrics=("power_w",),
        )
        self.process = subprocess.Popen(
            [exe, "--interval", str(interval_ms)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self._first = threading.Event()
        self.start_polling()
        # The domain depends on which rails this board prints: wait for the first line.
        if not self._first.wait(timeout=3.0):
            self.close()
            raise SensorError(f"{exe} printed no power rails within 3 s; run it by hand to check")

    def produce(self, push: Push) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            rails = parse_tegrastats(line)
            if not rails:
                continue
            board = [w for name, w in rails.items() if name in BOARD_RAILS]
            if not self._first.is_set():
                if not board:
                    self.domain = "rail"
                    self.detail += " (no total rail: sum of the rails printed, partial)"
                self._first.set()
            value = board[0] if board else sum(rails.values())
            push([Reading(self.sensor, "power_w", value)])

    @classmethod
    def discover(cls, env: SensorEnv) -> list[Sampler]:
        exe = which("tegrastats", env)
        try:
            return [cls(exe)] if exe else []
        except SensorError:
            return []
