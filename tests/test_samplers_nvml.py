"""NVML without a GPU: the real library's failure on this machine, and the counter/power
logic against a stand-in with NVML's call shapes (no NVIDIA hardware is lent to these tests)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from edgeprof.samplers.base import SensorEnv
from edgeprof.samplers.nvml import NvmlSampler, init_failure_fix


class NVMLError(Exception):
    pass


class FakeNvml:
    """NVML's call shapes: mJ counter, mW power, bytes, percent."""

    NVMLError = NVMLError

    def __init__(self, energy_supported: bool = True, fail_init: str = "") -> None:
        self.energy_supported = energy_supported
        self.fail_init = fail_init
        self.inits = 0
        self.energy_mj = 1_000_000
        self.power_mw = 250_000

    def nvmlInit(self) -> None:
        if self.fail_init:
            raise NVMLError(self.fail_init)
        self.inits += 1

    def nvmlShutdown(self) -> None:
        self.inits -= 1

    def nvmlDeviceGetCount(self) -> int:
        return 1

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetName(self, h: int) -> bytes:
        return b"NVIDIA L4"

    def nvmlDeviceGetTotalEnergyConsumption(self, h: int) -> int:
        if not self.energy_supported:
            raise NVMLError("Not Supported")
        return self.energy_mj

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:
        return self.power_mw

    def nvmlDeviceGetMemoryInfo(self, h: int) -> Any:
        return SimpleNamespace(used=3 * 2**30, total=24 * 2**30)

    def nvmlDeviceGetUtilizationRates(self, h: int) -> Any:
        return SimpleNamespace(gpu=87, memory=40)


def test_this_machine_has_no_nvml_and_says_why() -> None:
    (p,) = NvmlSampler.probe(SensorEnv())
    assert not p.available and p.source == "nvml"
    assert p.reason.startswith("nvmlInit failed:") and p.fix
    assert NvmlSampler.discover(SensorEnv()) == []


def test_missing_package_names_the_install() -> None:
    def loader() -> Any:
        raise ImportError("No module named 'pynvml'")

    (p,) = NvmlSampler.probe_with(loader)
    assert p.reason == "nvidia-ml-py is not installed" and p.fix == "pip install nvidia-ml-py"


def test_energy_counter_in_millijoules_with_reset() -> None:
    lib = FakeNvml()
    (s,) = NvmlSampler.discover_with(lambda: lib)
    assert s.metrics[0] == "energy_j" and "total-energy counter" in s.detail
    first = {r.metric: r.value for r in s.read()}
    assert first == {
        "energy_j": 0.0,
        "power_w": 250.0,
        "gpu_mem_used_bytes": float(3 * 2**30),
        "gpu_util_percent": 87.0,
    }
    lib.energy_mj += 12_500
    assert s.read()[0].value == pytest.approx(12.5)
    lib.energy_mj = 40  # driver reloaded: counter restarts
    assert s.read()[0].value == pytest.approx(12.5)
    s.close()
    assert lib.inits == 0


def test_power_polling_where_counter_unsupported() -> None:
    lib = FakeNvml(energy_supported=False)
    (s,) = NvmlSampler.discover_with(lambda: lib)
    assert "energy_j" not in s.metrics and "power polling" in s.detail
    assert {r.metric for r in s.read()} == {"power_w", "gpu_mem_used_bytes", "gpu_util_percent"}


def test_init_failures_map_to_fixes() -> None:
    (p,) = NvmlSampler.probe_with(lambda: FakeNvml(fail_init="Driver Not Loaded"))
    assert p.reason == "nvmlInit failed: Driver Not Loaded" and "modprobe nvidia" in p.fix
    assert "video" in init_failure_fix("Insufficient Permissions")
