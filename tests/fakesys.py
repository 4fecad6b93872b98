"""Fake hardware for sampler tests: a directory laid out like the real /sys and /etc, and fake
`vcgencmd`, `powermetrics`, `tegrastats`, `sudo` executables on a PATH directory, all read
through the same SensorEnv (sys_root, bin_path) the samplers use on devices.

Tests run as root here, and root reads a mode-000 file anyway (CAP_DAC_OVERRIDE). So
`as_unprivileged` runs a check in a forked child without that capability, where a file of mode
`DENIED` raises a real PermissionError from open(), as a root-only sysfs file does for a user.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from edgeprof.samplers.base import SensorEnv

T = TypeVar("T")


class FakeSys:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / "_bin"
        self.bin.mkdir(mode=0o755, exist_ok=True)

    def env(self, tdp_w: float | None = None) -> SensorEnv:
        return SensorEnv(sys_root=self.root, bin_path=str(self.bin), tdp_w=tdp_w)

    def path(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")

    def write(self, absolute: str, value: object, mode: int = 0o444) -> Path:
        p = self.path(absolute)
        p.parent.mkdir(parents=True, exist_ok=True)
        for d in [p.parent, *p.parent.parents]:
            if d == self.root or self.root not in d.parents:
                break
            d.chmod(0o755)
        if p.exists():
            p.chmod(0o644)
        p.write_text(f"{value}\n")
        p.chmod(mode)
        return p

    # -- sysfs layouts ---------------------------------------------------------------------

    def rapl_zone(
        self,
        zone: str,
        name: str,
        energy_uj: int | None,
        max_range_uj: int = 262143328850,
        energy_mode: int = 0o444,
    ) -> Path:
        """A zone like /sys/class/powercap/intel-rapl:0 (mode 0400 is the real kernel's)."""
        base = f"/sys/class/powercap/{zone}"
        self.write(f"{base}/name", name)
        self.write(f"{base}/max_energy_range_uj", max_range_uj)
        if energy_uj is not None:
            self.write(f"{base}/energy_uj", energy_uj, mode=energy_mode)
        return self.path(base)

    def set_energy(self, zone: str, energy_uj: int) -> None:
        self.write(f"/sys/class/powercap/{zone}/energy_uj", energy_uj)

    def hwmon(
        self,
        n: int,
        name: str,
        files: dict[str, object],
        mode: int = 0o444,
        device: str | None = None,
    ) -> Path:
        """hwmonN with `name` and `files`; `device`: where its `device` link points (an
        absolute device path, e.g. the thermal zone the kernel mirrors as this chip)."""
        base = f"/sys/class/hwmon/hwmon{n}"
        self.write(f"{base}/name", name)
        for fname, value in files.items():
            self.write(f"{base}/{fname}", value, mode=0o444 if fname.endswith("_label") else mode)
        if device is not None:
            self.path(device).mkdir(parents=True, exist_ok=True)
            (self.path(base) / "device").symlink_to(self.path(device))
        return self.path(base)

    def thermal_zone(self, n: int, zone_type: str, temp_mc: object, mode: int = 0o444) -> Path:
        """/sys/class/thermal/thermal_zoneN: `type` and `temp` (millidegrees C)."""
        base = f"/sys/class/thermal/thermal_zone{n}"
        self.write(f"{base}/type", zone_type)
        self.write(f"{base}/temp", temp_mc, mode=mode)
        return self.path(base)

    def cpufreq_policy(
        self,
        n: int,
        cpus: str,
        cur_khz: object,
        governor: str = "schedutil",
        max_khz: int = 2_400_000,
        **files: object,
    ) -> Path:
        """/sys/devices/system/cpu/cpufreq/policyN covering `cpus` ("0 1 2 3"); `files`: more
        of its files (energy_performance_preference, ...)."""
        base = f"/sys/devices/system/cpu/cpufreq/policy{n}"
        self.write(f"{base}/related_cpus", cpus)
        self.write(f"{base}/scaling_cur_freq", cur_khz)
        self.write(f"{base}/scaling_governor", governor)
        self.write(f"{base}/cpuinfo_max_freq", max_khz)
        for fname, value in files.items():
            self.write(f"{base}/{fname}", value)
        return self.path(base)

    def cpu_cpufreq(self, cpu: int, cur_khz: object, governor: str = "ondemand") -> Path:
        """The per-CPU layout of kernels without policy directories: cpuN/cpufreq/."""
        base = f"/sys/devices/system/cpu/cpu{cpu}/cpufreq"
        self.write(f"{base}/affected_cpus", cpu)
        self.write(f"{base}/scaling_cur_freq", cur_khz)
        self.write(f"{base}/scaling_governor", governor)
        return self.path(base)

    def cpu_throttle(self, cpu: int, core_count: int, package_count: int, package: int = 0) -> Path:
        """Intel's /sys/devices/system/cpu/cpuN/thermal_throttle counters and the CPU's package."""
        base = f"/sys/devices/system/cpu/cpu{cpu}"
        self.write(f"{base}/topology/physical_package_id", package)
        self.write(f"{base}/thermal_throttle/core_throttle_count", core_count)
        self.write(f"{base}/thermal_throttle/package_throttle_count", package_count)
        return self.path(f"{base}/thermal_throttle")

    def devfreq(
        self, name: str, cur_hz: object, max_hz: int, governor: str = "nvhost_podgov"
    ) -> Path:
        """/sys/class/devfreq/<name> (a Jetson GPU is `17000000.gpu`), clocks in Hz."""
        base = f"/sys/class/devfreq/{name}"
        self.write(f"{base}/cur_freq", cur_hz)
        self.write(f"{base}/max_freq", max_hz)
        self.write(f"{base}/governor", governor)
        return self.path(base)

    def power_supply(self, name: str, supply_type: str, **files: object) -> Path:
        """/sys/class/power_supply/<name> of `supply_type` (Mains, USB, Battery)."""
        base = f"/sys/class/power_supply/{name}"
        self.write(f"{base}/type", supply_type)
        for fname, value in files.items():
            self.write(f"{base}/{fname}", value)
        return self.path(base)

    def battery(self, name: str, status: str, **files: object) -> Path:
        base = f"/sys/class/power_supply/{name}"
        self.write(f"{base}/type", "Battery")
        self.write(f"{base}/status", status)
        for fname, value in files.items():
            self.write(f"{base}/{fname}", value)
        return self.path(base)

    # -- executables -----------------------------------------------------------------------

    def exe(self, name: str, body: str) -> Path:
        """A Python script on the fake PATH; it finds its data in `<name>.data` beside it."""
        p = self.bin / name
        header = (
            f"#!{sys.executable}\nimport sys, os, time, json, plistlib\n"
            f"DATA = {str(self.bin / (name + '.data'))!r}\n"
        )
        p.write_text(header + textwrap.dedent(body))
        p.chmod(0o755)
        return p

    def data(self, name: str, value: object) -> None:
        p = self.bin / f"{name}.data"
        p.write_text(value if isinstance(value, str) else json.dumps(value))
        p.chmod(0o644)

    def vcgencmd(
        self, output: str | None = None, rc: int = 0, **commands: tuple[str, int] | str
    ) -> Path:
        """`vcgencmd pmic_read_adc` prints `output` and exits `rc`; each of `commands`
        (get_throttled="throttled=0x0", measure_temp=("...", 1)) answers its own command;
        any other command (or pmic_read_adc without `output`) gets firmware's "Invalid"."""
        answers = {k: (v, 0) if isinstance(v, str) else v for k, v in commands.items()}
        if output is not None:
            answers["pmic_read_adc"] = (output, rc)
        self.data("vcgencmd", answers)
        return self.exe(
            "vcgencmd",
            """
            d = json.load(open(DATA))
            if len(sys.argv) != 2 or sys.argv[1] not in d:
                print("error=2 error_msg=\\"Invalid arguments\\""); sys.exit(2)
            out, rc = d[sys.argv[1]]
            sys.stdout.write(out); sys.exit(rc)
            """,
        )

    def command(self, name: str, output: str, rc: int = 0) -> Path:
        """An executable `name` that prints `output` and exits `rc` whatever its arguments
        (nvpmodel -q, pmset -g batt)."""
        self.data(name, {"out": output, "rc": rc})
        return self.exe(
            name,
            """
            d = json.load(open(DATA))
            sys.stdout.write(d["out"]); sys.exit(d["rc"])
            """,
        )

    def powermetrics(self, samples: list[dict[str, Any]]) -> Path:
        """Streams `samples` as NUL-separated plists, cycling, like `powermetrics -f plist`."""
        self.data("powermetrics", samples)
        return self.exe(
            "powermetrics",
            """
            args = sys.argv[1:]
            opt = lambda k, d: args[args.index(k) + 1] if k in args else d
            n, interval_ms, dest = int(opt("-n", "0")), int(opt("-i", "1000")), opt("-o", None)
            samples = json.load(open(DATA))
            out = open(dest, "wb") if dest else sys.stdout.buffer
            i = 0
            while n == 0 or i < n:
                s = dict(samples[i % len(samples)], elapsed_ns=interval_ms * 1_000_000)
                out.write(plistlib.dumps(s) + b"\\x00"); out.flush()
                i += 1
                time.sleep(interval_ms / 1000)
            """,
        )

    def tegrastats(self, lines: list[str]) -> Path:
        self.data("tegrastats", "\n".join(lines))
        return self.exe(
            "tegrastats",
            """
            args = sys.argv[1:]
            interval = int(args[args.index("--interval") + 1]) if "--interval" in args else 1000
            lines = open(DATA).read().splitlines()
            i = 0
            while True:
                print(lines[i % len(lines)], flush=True); i += 1
                time.sleep(interval / 1000)
            """,
        )

    def sudo_asks_password(self) -> Path:
        return self.exe(
            "sudo",
            """
            if "-n" in sys.argv:
                sys.stderr.write("sudo: a password is required\\n"); sys.exit(1)
            os.execvp(sys.argv[1], sys.argv[1:])
            """,
        )


def make_fakesys() -> Iterator[FakeSys]:
    root = Path(tempfile.mkdtemp(prefix="edgeprof-fakesys-"))
    try:
        yield FakeSys(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2
DENIED = 0o000  # the mode of a file an ordinary user cannot read (see as_unprivileged)


def _drop_dac_capabilities() -> None:
    """Remove the capabilities that let root ignore file modes, for this process only."""
    import ctypes

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [
            ("effective", ctypes.c_uint32),
            ("permitted", ctypes.c_uint32),
            ("inheritable", ctypes.c_uint32),
        ]

    libc = ctypes.CDLL(None, use_errno=True)
    header = Header(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (Data * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget failed")
    keep = ~((1 << CAP_DAC_OVERRIDE) | (1 << CAP_DAC_READ_SEARCH)) & 0xFFFFFFFF
    data[0].effective &= keep
    data[0].permitted &= keep
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")


def as_unprivileged(fn: Callable[[], T]) -> T:
    """fn() where file modes apply: directly when not root; as root, in a forked child that has
    dropped CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH, so a mode-000 file raises the very
    PermissionError an ordinary user gets from a root-only sysfs file. (Switching the child to
    `nobody` would also work but cannot import the interpreter's modules from /root.)"""
    if os.geteuid() != 0:
        return fn()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        status = 0
        try:
            os.close(r)
            try:
                _drop_dac_capabilities()
                payload = pickle.dumps(("ok", fn()))
            except BaseException as e:
                payload = pickle.dumps(("err", repr(e)))
            with os.fdopen(w, "wb") as f:
                f.write(payload)
        except BaseException:
            status = 1
        finally:
            os._exit(status)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    assert status == 0 and data, "the unprivileged child failed"
    kind, value = pickle.loads(data)
    if kind == "err":
        raise AssertionError(f"in the unprivileged child: {value}")
    return value
