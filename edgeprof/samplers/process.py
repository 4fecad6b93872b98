"""This process's and the system's memory and CPU use: always available.

It runs at every tick beside the model, so it reads the cheapest sources it can: RSS from
/proc/self/statm and process CPU time from os.times() (both a single small read), falling back
to psutil where /proc is absent (macOS); system memory, which changes slowly and costs a
/proc/meminfo parse, is read once a second.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import ClassVar

import psutil

from edgeprof.samplers.base import CpuLoad, Reading, Sampler, SensorEnv
from edgeprof.samplers.proctree import ProcessTree

SYS_MEM_EVERY_S = 1.0


class ProcessSampler(Sampler):
    source: ClassVar[str] = "process"

    def __init__(self, pids: tuple[int, ...] = ()) -> None:
        # Another process's (a local server's): its tree through psutil, named in the detail.
        self._tree = ProcessTree(pids) if pids else None
        super().__init__(
            sensor="process",
            domain="process",
            method="measured",
            detail=(
                f"{self._tree.describe()} and their children: psutil"
                if self._tree is not None
                else f"pid {os.getpid()}: /proc/self/statm, os.times(), psutil"
            ),
            metrics=("rss_bytes", "cpu_percent", "sys_mem_used_bytes", "sys_cpu_percent"),
        )
        self._statm = Path("/proc/self/statm")
        self._page_bytes = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        self._proc = psutil.Process()
        self._load = CpuLoad()
        self._last_cpu = self._cpu_s()
        self._last_wall = time.perf_counter()
        self._sys_mem_at = float("-inf")
        self._sys_mem_used = 0.0

    @classmethod
    def discover(cls, env: SensorEnv) -> list[Sampler]:
        return [cls(env.measured_pids)]

    def _cpu_s(self) -> float:
        if self._tree is not None:
            return self._tree.cpu_s
        t = os.times()
        return t.user + t.system

    def _rss_bytes(self) -> float:
        if self._tree is not None:
            return self._tree.rss_bytes
        try:
            return float(int(self._statm.read_bytes().split()[1]) * self._page_bytes)
        except (OSError, IndexError, ValueError):
            return float(self._proc.memory_info().rss)

    def read(self) -> list[Reading]:
        if self._tree is not None:
            self._tree.read()
        now = time.perf_counter()
        cpu_s = self._cpu_s()
        dt = now - self._last_wall
        cpu_percent = 100.0 * (cpu_s - self._last_cpu) / dt if dt > 0 else 0.0
        self._last_cpu, self._last_wall = cpu_s, now
        if now - self._sys_mem_at >= SYS_MEM_EVERY_S:
            vm = psutil.virtual_memory()
            self._sys_mem_used, self._sys_mem_at = float(vm.total - vm.available), now
        return [
            Reading(self.sensor, "rss_bytes", self._rss_bytes()),
            Reading(self.sensor, "cpu_percent", cpu_percent),
            Reading(self.sensor, "sys_mem_used_bytes", self._sys_mem_used),
            Reading(self.sensor, "sys_cpu_percent", 100.0 * self._load.fraction()),
        ]
