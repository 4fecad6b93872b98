"""Apple Silicon via `powermetrics` (root): a stream of plists separated by NUL bytes, each with
processor.cpu_power / gpu_power / ane_power / combined_power in mW over `elapsed_ns`.

The SoC total (combined_power, else the sum of its parts) is recorded as power and as a
cumulative energy counter (Σ P × elapsed), domain `soc`. It needs root: edgeprof runs it through
`sudo -n`, which never prompts; a sudoers line makes that work unattended.
"""

from __future__ import annotations

import os
import plistlib
import subprocess
from collections.abc import Iterator
from typing import IO, Any, ClassVar

from edgeprof.samplers.base import ProbeResult, Reading, Sampler, SensorEnv
from edgeprof.samplers.polled import PolledSampler, Push
from edgeprof.samplers.sysfs import run_command, which

SAMPLERS = "cpu_power,gpu_power,ane_power"
PROBE_TIMEOUT_S = 5.0


def sudoers_fix(exe: str) -> str:
    return (
        f"sudo visudo -f /etc/sudoers.d/edgeprof and add: `{os.environ.get('USER', 'you')} "
        f"ALL = (root) NOPASSWD: {exe}`"
    )


def soc_power_w(sample: dict[str, Any]) -> float | None:
    proc = sample.get("processor") or {}
    if "combined_power" in proc:
        return float(proc["combined_power"]) / 1e3
    parts = [proc.get(k) for k in ("cpu_power", "gpu_power", "ane_power")]
    if all(p is None for p in parts):
        return None
    return sum(float(p or 0.0) for p in parts) / 1e3


def iter_plists(stream: IO[bytes], chunk: int = 65536) -> Iterator[dict[str, Any]]:
    """Parse a NUL-separated plist stream as it arrives."""
    buf = b""
    while True:
        data = stream.read1(chunk) if hasattr(stream, "read1") else stream.read(chunk)
        if not data:
            break
        buf += data
        *done, buf = buf.split(b"\x00")
        for raw in done:
            if raw.strip():
                yield plistlib.loads(raw.strip())
    if buf.strip():
        yield plistlib.loads(buf.strip())


def command(exe: str, env: SensorEnv, as_root: bool) -> list[str] | None:
    """powermetrics' argv prefix: direct as root, else through `sudo -n` (None: no sudo)."""
    if as_root:
        return [exe]
    sudo = which("sudo", env)
    return [sudo, "-n", exe] if sudo else None


class PowermetricsSampler(PolledSampler):
    source: ClassVar[str] = "powermetrics"

    def __init__(self, argv: list[str], interval_ms: int = 100) -> None:
        super().__init__(
            sensor="powermetrics:soc",
            domain="soc",
            detail=f"{argv[-1]} -i {interval_ms} -f plist: combined CPU+GPU+ANE power (mW)",
            metrics=("energy_j", "power_w"),
        )
        self.process = subprocess.Popen(
            [*argv, "--samplers", SAMPLERS, "-i", str(interval_ms), "-f", "plist"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        self._energy_j = 0.0
        self.start_polling()

    def produce(self, push: Push) -> None:
        assert self.process is not None and self.process.stdout is not None
        # Ends when close() terminates powermetrics and its output stream closes.
        for sample in iter_plists(self.process.stdout):
            w = soc_power_w(sample)
            if w is None:
                continue
            self._energy_j += w * float(sample.get("elapsed_ns", 0)) / 1e9
            push(
                [
                    Reading(self.sensor, "energy_j", self._energy_j),
                    Reading(self.sensor, "power_w", w),
                ]
            )

    @classmethod
    def check(cls, env: SensorEnv, as_root: bool) -> tuple[list[str] | None, str, str]:
        """(argv prefix, reason, fix): argv is None when powermetrics cannot run unattended."""
        exe = which("powermetrics", env)
        if exe is None:
            return None, "powermetrics not found (macOS on Apple Silicon only)", ""
        argv = command(exe, env, as_root)
        if argv is None:
            return None, "powermetrics needs root and sudo is not found", "run edgeprof as root"
        rc, text = run_command(
            [*argv, "--samplers", "cpu_power", "-n", "1", "-i", "1", "-o", "/dev/null"],
            PROBE_TIMEOUT_S,
        )
        if rc == 0:
            return argv, "", ""
        if "password" in text.lower():
            return None, "powermetrics needs root and sudo asks for a password", sudoers_fix(exe)
        return None, f"powermetrics failed (exit {rc}): {text.strip()[:120]}", ""

    @classmethod
    def discover(cls, env: SensorEnv) -> list[Sampler]:
        argv, _, _ = cls.check(env, os.geteuid() == 0)
        return [cls(argv)] if argv else []

    @classmethod
    def probe(cls, env: SensorEnv) -> list[ProbeResult]:
        return cls.probe_as(env, os.geteuid() == 0)

    @classmethod
    def probe_as(cls, env: SensorEnv, as_root: bool) -> list[ProbeResult]:
        argv, reason, fix = cls.check(env, as_root)
        if argv is None:
            return [ProbeResult(cls.source, cls.source, False, "soc", reason=reason, fix=fix)]
        detail = f"{argv[-1]}: combined CPU+GPU+ANE power (mW), streamed as plists"
        return [ProbeResult(cls.source, "powermetrics:soc", True, "soc", reason=detail)]
