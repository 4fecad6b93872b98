"""NVIDIA GPUs through NVML (nvidia-ml-py, imported lazily: it is slow to load and absent on
most edge devices).

Energy comes from nvmlDeviceGetTotalEnergyConsumption (mJ since driver load, Volta and newer,
updated every 20-100 ms, reset by a driver reload) where supported; otherwise from power
polling (nvmlDeviceGetPowerUsage, mW, a 1 s average on Ampere and newer). Power, memory in use
and utilization are recorded either way.
"""

from __future__ import annotations

from typing import Any, ClassVar

from edgeprof.errors import SensorError
from edgeprof.samplers.base import ProbeResult, Reading, Sampler, SensorEnv
from edgeprof.samplers.sysfs import Counter

INSTALL_FIX = "pip install nvidia-ml-py"


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


class NvmlSampler(Sampler):
    source: ClassVar[str] = "nvml"

    def __init__(self, lib: Any, index: int) -> None:
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
        super().__init__(
            sensor=f"nvml:gpu{index}",
            domain="gpu",
            detail=f"{name}: {how}",
            metrics=(
                ("energy_j", "power_w", "gpu_mem_used_bytes", "gpu_util_percent")
                if self._counter
                else ("power_w", "gpu_mem_used_bytes", "gpu_util_percent")
            ),
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
        return cls.discover_with(load_nvml)

    @classmethod
    def discover_with(cls, lib_loader: Any) -> list[Sampler]:
        lib, count, _ = cls._init(lib_loader)
        return [cls(lib, i) for i in range(count)] if lib else []

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
            out.append(ProbeResult(cls.source, s.sensor, True, s.domain, reason=s.detail))
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
        return out

    def close(self) -> None:
        if self._lib is not None:
            self._lib.nvmlShutdown()
            self._lib = None
