"""NVML without a GPU: the real library's failure on this machine, and the counter/power
logic against a stand-in with NVML's call shapes (no NVIDIA hardware is lent to these tests)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from edgeprof.analysis.summary import peak_gpu_mem_bytes
from edgeprof.samplers.base import SensorEnv, unit_of
from edgeprof.samplers.nvml import NvmlSampler, init_failure_fix
from edgeprof.samplers.recorder import Recorder
from edgeprof.store import Store
from tests.builders import add_run, device_row


class NVMLError(Exception):
    pass


def process(pid: int, used_bytes: int | None) -> Any:
    """A process-list entry as nvidia-ml-py returns it (None: NVML_VALUE_NOT_AVAILABLE)."""
    return SimpleNamespace(pid=pid, usedGpuMemory=used_bytes, gpuInstanceId=0xFFFFFFFF,
                           computeInstanceId=0xFFFFFFFF)  # fmt: skip


class FakeNvml:
    """NVML's call shapes: mJ counter, mW power, bytes, percent; per device (handle = index)
    the compute and graphics process lists."""

    NVMLError = NVMLError

    def __init__(
        self, energy_supported: bool = True, fail_init: str = "", n_devices: int = 1
    ) -> None:
        self.energy_supported = energy_supported
        self.fail_init = fail_init
        self.n_devices = n_devices
        self.inits = 0
        self.energy_mj = 1_000_000
        self.power_mw = 250_000
        self.compute: dict[int, list[Any]] = {}  # handle -> entries
        self.graphics: dict[int, list[Any]] = {}
        self.lists_error = ""  # e.g. "Not Supported", raised by both list calls

    def nvmlInit(self) -> None:
        if self.fail_init:
            raise NVMLError(self.fail_init)
        self.inits += 1

    def nvmlShutdown(self) -> None:
        self.inits -= 1

    def nvmlDeviceGetCount(self) -> int:
        return self.n_devices

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

    def nvmlDeviceGetComputeRunningProcesses(self, h: int) -> list[Any]:
        if self.lists_error:
            raise NVMLError(self.lists_error)
        return list(self.compute.get(h, []))

    def nvmlDeviceGetGraphicsRunningProcesses(self, h: int) -> list[Any]:
        if self.lists_error:
            raise NVMLError(self.lists_error)
        return list(self.graphics.get(h, []))


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


# -- this process's GPU memory (gpu_mem_bytes) -------------------------------------------

GIB = 2**30
ME = os.getpid()
OTHER = ME + 1


def _sampler(lib: FakeNvml, index: int = 0) -> NvmlSampler:
    samplers = NvmlSampler.discover_with(lambda: lib)
    assert all(isinstance(s, NvmlSampler) for s in samplers)
    return samplers[index]  # type: ignore[return-value]


def _own(s: NvmlSampler) -> list[float]:
    return [r.value for r in s.read() if r.metric == "gpu_mem_bytes"]


def test_this_process_gpu_memory_from_the_process_lists() -> None:
    lib = FakeNvml()
    lib.compute[0] = [process(OTHER, 5 * GIB), process(ME, 2 * GIB)]
    s = _sampler(lib)
    assert "gpu_mem_bytes" in s.metrics and unit_of("gpu_mem_bytes") == "B"
    assert f"pid {ME} in the compute/graphics process lists" in s.detail
    assert _own(s) == [float(2 * GIB)]  # its own entry, never another process's
    # CUDA + graphics ("C+G"): one process, one figure in both lists, counted once
    lib.graphics[0] = [process(ME, 2 * GIB)]
    assert _own(s) == [float(2 * GIB)]


def test_a_local_server_s_gpu_memory_with_its_children() -> None:
    """`SensorEnv.pid`: a server's process and its children (a real child started
    here, as Ollama's runner is), summed; this process's entry is not theirs."""
    import subprocess
    import sys

    server = subprocess.Popen([sys.executable, "-c", "import subprocess, sys, time; "
                               "c = subprocess.Popen([sys.executable, '-c', "
                               "'import time; time.sleep(30)']); time.sleep(30)"])  # fmt: skip
    try:
        import psutil

        deadline = time.monotonic() + 10
        while not (children := psutil.Process(server.pid).children()):
            assert time.monotonic() < deadline, "the child did not start"
            time.sleep(0.05)
        lib = FakeNvml()
        lib.compute[0] = [process(ME, 7 * GIB), process(server.pid, GIB),
                          process(children[0].pid, 3 * GIB)]  # fmt: skip
        (s,) = NvmlSampler.discover_with(lambda: lib, server.pid)
        assert isinstance(s, NvmlSampler)
        assert f"pid {server.pid} in the compute/graphics" in s.detail
        assert _own(s) == [float(4 * GIB)]  # the server's and its child's, not edgeprof's 7
    finally:
        for child in psutil.Process(server.pid).children(recursive=True):
            child.kill()
        server.kill()
        server.wait()


def test_absent_process_reads_nothing_until_it_appears() -> None:
    lib = FakeNvml()
    lib.compute[0] = [process(OTHER, 5 * GIB)]
    s = _sampler(lib)
    # not listed (no context yet, or a PID namespace): no reading rather than a false 0
    assert _own(s) == [] and {r.metric for r in s.read()} >= {"power_w", "gpu_util_percent"}
    lib.compute[0].append(process(ME, GIB))
    assert _own(s) == [float(GIB)]


@pytest.mark.parametrize("not_available", [None, 2**64 - 1])  # nvidia-ml-py's None, raw -1
def test_driver_without_per_process_memory_drops_the_metric_and_says_why(
    not_available: int | None,
) -> None:
    lib = FakeNvml()
    lib.compute[0] = [process(OTHER, not_available), process(ME, not_available)]
    s = _sampler(lib)
    assert "gpu_mem_bytes" not in s.metrics
    assert "GPU memory not available: the driver reports no per-process usedGpuMemory" in s.detail
    assert _own(s) == [] and any(r.metric == "power_w" for r in s.read())


def test_this_process_listed_without_a_figure_reads_nothing() -> None:
    lib = FakeNvml()
    lib.compute[0] = [process(OTHER, GIB)]
    s = _sampler(lib)
    lib.compute[0].append(process(ME, None))
    assert "gpu_mem_bytes" in s.metrics and _own(s) == []


def test_unreadable_process_lists() -> None:
    lib = FakeNvml()
    lib.lists_error = "Not Supported"
    s = _sampler(lib)
    assert "gpu_mem_bytes" not in s.metrics
    assert "process lists cannot be read (Not Supported)" in s.detail
    # readable when the sampler was made, failing later: power stays, the figure skips a tick
    lib.lists_error = ""
    lib.compute[0] = [process(ME, GIB)]
    s = _sampler(lib)
    lib.lists_error = "Unknown Error"
    metrics = {r.metric for r in s.read()}
    assert "power_w" in metrics and "gpu_mem_bytes" not in metrics


def test_several_gpus_each_report_their_share_and_the_summary_adds_them(tmp_path: Path) -> None:
    lib = FakeNvml(n_devices=2)
    lib.compute = {0: [process(ME, 3 * GIB)], 1: [process(ME, GIB), process(OTHER, 9 * GIB)]}
    samplers = NvmlSampler.discover_with(lambda: lib)
    assert [s.sensor for s in samplers] == ["nvml:gpu0", "nvml:gpu1"]
    db = tmp_path / "p.db"
    with Store(db) as store:
        run_id = add_run(store, device_row("gpu-box"))
    recorder = Recorder(samplers, db, run_id, time.perf_counter_ns())
    recorder.poll()
    lib.compute[1] = [process(ME, 2 * GIB)]
    recorder.poll()
    recorder.start()
    recorder.stop()  # a final poll and flush
    with Store(db) as store:
        rows = list(store.samples(run_id, metrics=["gpu_mem_bytes"]))
        assert {r["sensor"] for r in rows} == {"nvml:gpu0", "nvml:gpu1"}
        # summed per tick: 3 + 1, then 3 + 2 GiB
        assert peak_gpu_mem_bytes(store, run_id) == 5 * GIB
    assert lib.inits == 0


WORKER = ME + 2


def test_the_model_workers_pid_is_read_not_the_profilers() -> None:
    lib = FakeNvml()
    lib.compute[0] = [process(ME, 5 * GIB), process(WORKER, 2 * GIB)]
    worker = NvmlSampler(lib, 0, WORKER)
    here = NvmlSampler(lib, 0)
    assert f"pid {WORKER} in the compute/graphics" in worker.detail
    assert _own(worker) == [float(2 * GIB)]
    assert _own(here) == [float(5 * GIB)]


def test_probe_says_how_a_runs_gpu_memory_will_be_read() -> None:
    from edgeprof.samplers.nvml import gpu_memory_method

    lib = FakeNvml()
    # nothing listed now: either way, said as such
    assert "if they never list it (a VM, a PID namespace)" in gpu_memory_method(lib, 0)
    lib.compute[0] = [process(ME, GIB)]  # a pid this system sees: the lists work here
    assert gpu_memory_method(lib, 0) == "the worker's pid in NVML's process lists"
    lib.compute[0] = [process(2**22 + 12345, GIB)]  # above pid_max: another namespace's
    assert gpu_memory_method(lib, 0) == (
        "the device's used-memory delta around the load (NVML lists pids of another PID namespace)"
    )
    lib.lists_error = "Not Supported"
    assert gpu_memory_method(lib, 0).endswith("(the process lists cannot be read)")
    (result,) = NvmlSampler.probe_with(lambda: lib)
    assert "a run's GPU memory: the device's used-memory delta around the load" in result.reason
