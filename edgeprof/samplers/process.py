"""This process's and the system's memory and CPU use (psutil): always available."""

from __future__ import annotations

import os
from typing import ClassVar

import psutil

from edgeprof.samplers.base import CpuLoad, Reading, Sampler, SensorEnv


class ProcessSampler(Sampler):
    source: ClassVar[str] = "process"

    def __init__(self, pid: int | None = None) -> None:
        super().__init__(
            sensor="process",
            domain="process",
            method="measured",
            detail=f"psutil, pid {pid or os.getpid()}",
            metrics=("rss_bytes", "cpu_percent", "sys_mem_used_bytes", "sys_cpu_percent"),
        )
        self._proc = psutil.Process(pid)
        self._proc.cpu_percent(None)  # the first call only primes the counter
        self._load = CpuLoad()

    @classmethod
    def discover(cls, env: SensorEnv) -> list[Sampler]:
        return [cls()]

    def read(self) -> list[Reading]:
        with self._proc.oneshot():
            rss = self._proc.memory_info().rss
            cpu = self._proc.cpu_percent(None)
        vm = psutil.virtual_memory()
        return [
            Reading(self.sensor, "rss_bytes", float(rss)),
            Reading(self.sensor, "cpu_percent", cpu),
            Reading(self.sensor, "sys_mem_used_bytes", float(vm.total - vm.available)),
            Reading(self.sensor, "sys_cpu_percent", 100.0 * self._load.fraction()),
        ]
