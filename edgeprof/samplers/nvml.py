"""NVIDIA GPUs through NVML (nvidia-ml-py, imported lazily: it is slow to load and absent on
most edge devices).

Energy comes from nvmlDeviceGetTotalEnergyConsumption (mJ since driver load, Volta and newer,
updated every 20-100 ms, reset by a driver reload) where supported; otherwise from power
polling (nvmlDeviceGetPowerUsage, mW, a 1 s average on Ampere and newer). Power, memory in use
and utilization are recorded either way.

`gpu_mem_bytes` is the model's process's own GPU memory on the device (the backend's worker,
`SensorEnv.pid`, or this process): its entry in the compute and graphics process lists,
`usedGpuMemory` bytes, read only while the process is listed there; the summary adds the
devices up at each tick. Some drivers (Windows WDDM, some vGPU and container setups) report no
per-process figure (NVML_VALUE_NOT_AVAILABLE, which nvidia-ml-py turns into None): then the
metric is dropped and the sensor's detail says why, rather than recording a 0 that would read
as "no GPU memory". Where the lists never hold the worker (a VM, a PID namespace), the summary
falls back to the devices' used-memory delta around the load (`gpu_mem_used_bytes`).
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

from edgeprof.errors import SensorError
from edgeprof.samplers.base import ProbeResult, Reading, Sampler, SensorEnv
from edgeprof.samplers.proctree import ProcessFamily
from edgeprof.samplers.sysfs import Counter

INSTALL_FIX = "pip install nvidia-ml-py"
# usedGpuMemory when the driver cannot say (c_ulonglong(-1)); nvidia-ml-py >= 11 maps it to None.
VALUE_NOT_AVAILABLE = 2**64 - 1
PROCESS_LISTS = ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses")


def load_nvml() -> Any:
    import pynvml

    return pynvml


def init_failure_fix(message: str) -> str:
    """The fix for an nvmlInit failure, from NVML's own message."""
    m = message.lower()
    if "library not found" in m:
        return "install the NVIDIA driver (nvidia-smi must work); no NVIDIA GPU, no NVML"
    if "driver not loaded" in m:
        return "sudo modprobe nvidia   (or reinstall the driver)"
    if "no permission" in m or "insufficient permissions" in m:
        return "give this user access to /dev/nvidia* (e.g. sudo usermod -aG video $USER)"
    if "mismatch" in m:
        return "reboot: the loaded NVIDIA kernel module does not match the user-space driver"
    return "check that nvidia-smi works"


def energy_counter_supported(lib: Any, handle: Any) -> bool:
    try:
        lib.nvmlDeviceGetTotalEnergyConsumption(handle)
    except lib.NVMLError:
        return False
    return True


def _used_bytes(entry: Any) -> int | None:
    value = getattr(entry, "usedGpuMemory", None)
    if value is None or int(value) >= VALUE_NOT_AVAILABLE:
        return None
    return int(value)


def process_gpu_mem_bytes(lib: Any, handle: Any, pid: int) -> int | None:
    """This process's GPU memory on one device, in bytes; None when it is in neither process
    list or is listed without a figure.

    Absent is None, not 0: in a container with its own PID namespace NVML lists host pids, so
    this process is never found, and a 0 would read as "no GPU memory used". A process using
    both CUDA and graphics appears in both lists with its one figure (nvidia-smi's "C+G"), so
    the largest is taken, not the sum.
    """
    found = [
        used
        for name in PROCESS_LISTS
        for e in getattr(lib, name)(handle)
        if e.pid == pid and (used := _used_bytes(e)) is not None
    ]
    return max(found) if found else None


def process_memory_problem(lib: Any, handle: Any) -> str:
    """Why per-process GPU memory cannot be read on this device, or "" when it can.

    Asked once, when the sampler is made: the lists must be readable, and where they already
    hold processes at least one must carry a figure (a driver that reports none for the others
    reports none for this process either).
    """
    if not all(hasattr(lib, name) for name in PROCESS_LISTS):
        return f"this nvidia-ml-py has no process lists ({INSTALL_FIX} --upgrade)"
    try:
        entries = [e for name in PROCESS_LISTS for e in getattr(lib, name)(handle)]
    except lib.NVMLError as e:
        return f"the process lists cannot be read ({e})"
    if entries and all(_used_bytes(e) is None for e in entries):
        return "the driver reports no per-process usedGpuMemory (e.g. Windows WDDM, vGPU)"
    return ""


def gpu_memory_method(lib: Any, handle: Any) -> str:
    """Which way a run will get the model's GPU memory, for `probe` and the sensor's detail.

    NVML's process lists hold host pids: in a VM or a container's PID namespace they list
    processes this system cannot see, or none at all, and the worker is never found. Then the
    summary takes the device's used memory at its peak less what it was before the load."""
    delta = "the device's used-memory delta around the load"
    try:
        pids = [e.pid for name in PROCESS_LISTS for e in getattr(lib, name)(handle)]
    except lib.NVMLError:
        return delta + " (the process lists cannot be read)"
    if not pids:
        return (
            "the worker's pid in NVML's process lists; if they never list it (a VM, a PID "
            f"namespace), {delta}"
        )
    if not any(os.path.exists(f"/proc/{pid}") for pid in pids) and os.path.isdir("/proc"):
        return f"{delta} (NVML lists pids of another PID namespace)"
    return "the worker's pid in NVML's process lists"


class NvmlSampler(Sampler):
    source: ClassVar[str] = "nvml"

    def __init__(self, lib: Any, index: int, pid: int | None = None) -> None:
        lib.nvmlInit()  # NVML counts inits; close() undoes this one
        self._lib = lib
        self._handle = lib.nvmlDeviceGetHandleByIndex(index)
        name = lib.nvmlDeviceGetName(self._handle)
        name = name.decode() if isinstance(name, bytes) else str(name)
        self._counter = Counter(1e-3) if energy_counter_supported(lib, self._handle) else None
        how = (
            "total-energy counter (mJ, updates every 20-100 ms) + power"
            if self._counter
            else "power polling (mW; counter not supported on this GPU)"
        )
        # the process that runs the model: the backend's worker (SensorEnv.pid), or this one
        self._pid = pid or os.getpid()
        problem = process_memory_problem(lib, self._handle)
        self._process_mem = not problem
        mem = (
            f"this process's GPU memory: pid {self._pid} in the compute/graphics process lists, "
            f"else {gpu_memory_method(lib, self._handle).split('; if they never list it')[0]}"
            if not problem
            else f"this process's GPU memory not available: {problem}"
        )
        metrics: tuple[str, ...] = ("energy_j",) if self._counter else ()
        metrics += ("power_w", "gpu_mem_used_bytes", "gpu_util_percent")
        metrics += ("gpu_mem_bytes",) if self._process_mem else ()
        super().__init__(
            sensor=f"nvml:gpu{index}",
            domain="gpu",
            detail=f"{name}: {how}; {mem}",
            metrics=metrics,
        )

    @classmethod
    def _init(cls, lib_loader: Any = load_nvml) -> tuple[Any, int, str]:
        """(lib, device count, "") or (None, 0, reason)."""
        try:
            lib = lib_loader()
        except ImportError:
            return None, 0, "nvidia-ml-py is not installed"
        try:
            lib.nvmlInit()
        except lib.NVMLError as e:
            return None, 0, f"nvmlInit failed: {e}"
        try:
            return lib, int(lib.nvmlDeviceGetCount()), ""
        finally:
            lib.nvmlShutdown()

    @classmethod
    def discover(cls, env: SensorEnv) -> list[Sampler]:
        return cls.discover_with(load_nvml, env.pid)

    @classmethod
    def discover_with(cls, lib_loader: Any, pid: int | None = None) -> list[Sampler]:
        lib, count, _ = cls._init(lib_loader)
        return [cls(lib, i, pid) for i in range(count)] if lib else []

    @classmethod
    def probe(cls, env: SensorEnv) -> list[ProbeResult]:
        return cls.probe_with(load_nvml)

    @classmethod
    def probe_with(cls, lib_loader: Any) -> list[ProbeResult]:
        lib, count, reason = cls._init(lib_loader)
        if lib is None:
            fix = INSTALL_FIX if "not installed" in reason else init_failure_fix(reason)
            return [ProbeResult(cls.source, cls.source, False, "gpu", reason=reason, fix=fix)]
        if count == 0:
            return [ProbeResult(cls.source, cls.source, False, "gpu", reason="NVML sees no GPU")]
        out = []
        for i in range(count):
            s = cls(lib, i)
            method = gpu_memory_method(lib, s._handle)
            detail = f"{s.detail.split('; this process')[0]}; a run's GPU memory: {method}"
            out.append(ProbeResult(cls.source, s.sensor, True, s.domain, reason=detail))
            s.close()
        return out

    def read(self) -> list[Reading]:
        lib, h = self._lib, self._handle
        out: list[Reading] = []
        try:
            if self._counter is not None:
                mj = lib.nvmlDeviceGetTotalEnergyConsumption(h)
                out.append(Reading(self.sensor, "energy_j", self._counter.update(int(mj))))
            out.append(Reading(self.sensor, "power_w", lib.nvmlDeviceGetPowerUsage(h) / 1e3))
            mem = lib.nvmlDeviceGetMemoryInfo(h)
            out.append(Reading(self.sensor, "gpu_mem_used_bytes", float(mem.used)))
            util = lib.nvmlDeviceGetUtilizationRates(h)
            out.append(Reading(self.sensor, "gpu_util_percent", float(util.gpu)))
        except lib.NVMLError as e:
            raise SensorError(f"{self.sensor}: NVML read failed ({e})") from e
        return out + self._process_reading()

    def _process_reading(self) -> list[Reading]:
        """This process's GPU memory, on its own: a failed list read costs this figure for
        the tick, never the power beside it."""
        if not self._process_mem:
            return []
        # another process's (a local server's): it and its children, which may hold the model
        if self._pid != os.getpid() and self._family is None:
            self._family = ProcessFamily(self._pid)
        pids = self._family.pids() if self._family is not None else {self._pid}
        try:
            found = [process_gpu_mem_bytes(self._lib, self._handle, pid) for pid in pids]
        except self._lib.NVMLError:
            return []
        used = [b for b in found if b is not None]
        return [Reading(self.sensor, "gpu_mem_bytes", float(sum(used)))] if used else []

    _family: ProcessFamily | None = None

    def close(self) -> None:
        if self._lib is not None:
            self._lib.nvmlShutdown()
            self._lib = None
