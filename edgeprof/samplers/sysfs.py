"""Shared plumbing for the sysfs and command-line sensor readers.

Every reader looks under `env.path("/sys/...")` and runs executables found on `env.bin_path`,
so a captured or fake tree exercises the very code that runs on devices. Cumulative counters are
corrected here, once, for wraparound (RAPL) and resets (hwmon, NVML).
"""

from __future__ import annotations

import errno
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from edgeprof.samplers.base import SensorEnv


def read_text(path: Path) -> str:
    with path.open("r", encoding="ascii", errors="replace") as f:
        return f.read().strip()


def read_int(path: Path) -> int:
    return int(read_text(path))


def try_text(path: Path) -> str | None:
    """The file's text, or None when it cannot be read for any reason."""
    try:
        return read_text(path)
    except (OSError, ValueError):
        return None


def why_unreadable(e: BaseException, path: Path, env: SensorEnv) -> str:
    """One line saying why `path` could not be read, in the device's own terms (/sys/..., not
    the fake root), so probe output reads the same on a captured tree and on the device."""
    shown = shown_path(path, env)
    if isinstance(e, PermissionError):
        return f"permission denied reading {shown}"
    if isinstance(e, FileNotFoundError):
        return f"{shown} is missing"
    if isinstance(e, OSError) and e.errno in (errno.ENODATA, errno.EAGAIN, errno.EIO):
        return f"{shown} has no data yet ({e.strerror}); the driver may not support it here"
    if isinstance(e, ValueError):
        return f"{shown} does not hold a number"
    return f"cannot read {shown}: {e}"


def shown_path(path: Path, env: SensorEnv) -> str:
    return (
        "/" + str(path.relative_to(env.sys_root))
        if path.is_relative_to(env.sys_root)
        else str(path)
    )


def which(name: str, env: SensorEnv) -> str | None:
    return shutil.which(name, path=env.bin_path)


def run_command(argv: Sequence[str], timeout_s: float) -> tuple[int, str]:
    """Exit status and stdout+stderr text; (-1, why) when it cannot run or times out."""
    try:
        p = subprocess.run(
            list(argv),
            capture_output=True,
            timeout=timeout_s,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return -1, f"timed out after {timeout_s:g} s"
    except OSError as e:
        return -1, str(e)
    return p.returncode, (p.stdout + p.stderr).decode("utf-8", errors="replace")


class Counter:
    """A cumulative energy counter in joules since the first read, corrected for wraparound
    (when the counter's range is known) or resets (when it is not: the interval spanning a
    reset contributes nothing rather than a guess)."""

    def __init__(self, scale_j: float, wrap_range: int | None = None) -> None:
        self.scale_j = scale_j
        self.wrap_range = wrap_range
        self.last: int | None = None
        self.total = 0
        self.resets = 0

    def update(self, raw: int) -> float:
        if self.last is not None:
            delta = raw - self.last
            if delta < 0:
                if self.wrap_range:
                    delta += self.wrap_range
                else:
                    delta = 0
                    self.resets += 1
            self.total += delta
        self.last = raw
        return self.total * self.scale_j
