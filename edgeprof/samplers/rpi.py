"""Raspberry Pi 5 PMIC rails via `vcgencmd pmic_read_adc`: Σ V × A over the rails that report
both. No energy counter (we integrate), and the sum misses PMIC losses and 5 V loads (USB,
fan), so it is labelled a partial sum (domain `rail`), not the board's draw.

One call takes ~0.1 s, so it runs on its own thread and never stalls the other sensors.
"""

from __future__ import annotations

import re
from typing import ClassVar

from edgeprof.errors import SensorError
from edgeprof.samplers.base import ProbeResult, Reading, Sampler, SensorEnv
from edgeprof.samplers.polled import PolledSampler, Push
from edgeprof.samplers.sysfs import run_command, which

_LINE = re.compile(r"^\s*(\S+)_[AV]\s+(current|volt)\(\d+\)=([\d.]+)[AV]", re.MULTILINE)
TIMEOUT_S = 2.0
GROUP_FIX = "sudo usermod -aG video $USER, then log in again (vcgencmd needs /dev/vcio)"


def parse_pmic(text: str) -> dict[str, float]:
    """Watts per rail that reports both a current and a voltage."""
    amps: dict[str, float] = {}
    volts: dict[str, float] = {}
    for rail, kind, value in _LINE.findall(text):
        (amps if kind == "current" else volts)[rail] = float(value)
    return {rail: amps[rail] * volts[rail] for rail in amps if rail in volts}


def failure(rc: int, text: str) -> tuple[str, str]:
    """(reason, fix) for a vcgencmd call that gave no rails."""
    if "VCHI initialization failed" in text:
        return "vcgencmd: VCHI initialization failed (no access to /dev/vcio)", GROUP_FIX
    if "Command not registered" in text:
        return "this firmware has no pmic_read_adc (a Raspberry Pi 5 feature)", ""
    if rc != 0:
        return f"vcgencmd pmic_read_adc failed (exit {rc}): {text.strip()[:120]}", ""
    return "vcgencmd pmic_read_adc printed no current/voltage pairs", ""


class RpiPmicSampler(PolledSampler):
    source: ClassVar[str] = "rpi"

    def __init__(self, exe: str, rails: list[str]) -> None:
        super().__init__(
            sensor="rpi:pmic",
            domain="rail",
            detail=(
                f"{exe} pmic_read_adc: Σ V×A over {len(rails)} PMIC rails (partial: misses "
                "PMIC losses and 5 V loads)"
            ),
            metrics=("power_w",),
        )
        self._exe = exe
        self.start_polling()

    def produce(self, push: Push) -> None:
        while not self.stopping:
            rc, text = run_command([self._exe, "pmic_read_adc"], TIMEOUT_S)
            rails = parse_pmic(text)
            if rails:
                push([Reading(self.sensor, "power_w", sum(rails.values()))])
            elif rc != 0:
                raise SensorError(failure(rc, text)[0])

    @classmethod
    def _check(cls, env: SensorEnv) -> tuple[str | None, dict[str, float], str, str]:
        exe = which("vcgencmd", env)
        if exe is None:
            return (
                None,
                {},
                "vcgencmd not found (not a Raspberry Pi, or its userland tools are missing)",
                "sudo apt install libraspberrypi-bin   (on Raspberry Pi OS it is preinstalled)",
            )
        rc, text = run_command([exe, "pmic_read_adc"], TIMEOUT_S)
        rails = parse_pmic(text)
        if not rails:
            return (exe, {}, *failure(rc, text))
        return exe, rails, "", ""

    @classmethod
    def discover(cls, env: SensorEnv) -> list[Sampler]:
        exe, rails, _, _ = cls._check(env)
        return [cls(exe, sorted(rails))] if exe and rails else []

    @classmethod
    def probe(cls, env: SensorEnv) -> list[ProbeResult]:
        exe, rails, reason, fix = cls._check(env)
        if not rails:
            return [ProbeResult(cls.source, cls.source, False, "rail", reason=reason, fix=fix)]
        detail = (
            f"{exe} pmic_read_adc: {len(rails)} rails, now {sum(rails.values()):.2f} W (partial)"
        )
        return [ProbeResult(cls.source, "rpi:pmic", True, "rail", reason=detail)]
