"""The model's process's and the system's memory and CPU use: always available.

The process is the one that runs the model: the backend's worker (`SensorEnv.pid`) and its
children, or this process when the backend runs here; never the profiler's own memory beside a
worker. It runs at every tick beside the model, so it reads the cheapest sources it can: RSS
from /proc/<pid>/statm (a single small read per process) and CPU time from
/proc/<pid>/stat through psutil (os.times() for this process), falling back to psutil where
/proc is absent (macOS); the list of children and the system's memory, which change slowly,
are read once a second.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import ClassVar

import psutil

from edgeprof.samplers.base import CpuLoad, Reading, Sampler, SensorEnv

SYS_MEM_EVERY_S = 1.0
CHILDREN_EVERY_S = 1.0


class ProcessSampler(Sampler):
    source: ClassVar[str] = "process"

    def __init__(self, pid: int | None = None) -> None:
        self._pid = pid or os.getpid()
        self._own = self._pid == os.getpid()
        what = "this process" if self._own else "the model's worker process and its children"
        super().__init__(
            sensor="process",
            domain="process",
            method="measured",
            detail=f"pid {self._pid} ({what}): /proc/<pid>/statm, CPU times, psutil",
            metrics=("rss_bytes", "cpu_percent", "sys_mem_used_bytes", "sys_cpu_percent"),
        )
        self._page_bytes = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        self._proc = psutil.Process(self._pid)
        self._children: list[psutil.Process] = []
        self._children_at = float("-inf")
        self._load = CpuLoad()
        self._last_cpu = self._cpu_s()
        self._last_wall = time.perf_counter()
        self._sys_mem_at = float("-inf")
        self._sys_mem_used = 0.0

    @classmethod
    def discover(cls, env: SensorEnv) -> list[Sampler]:
        return [cls(env.pid)]

    def _cpu_s(self) -> float:
        if self._own:
            t = os.times()
            return t.user + t.system
        c = self._proc.cpu_times()
        return c.user + c.system

    @staticmethod
    def _statm_rss(proc: psutil.Process, page_bytes: int) -> float:
        try:
            return float(int(Path(f"/proc/{proc.pid}/statm").read_bytes().split()[1]) * page_bytes)
        except (OSError, IndexError, ValueError):
            return float(proc.memory_info().rss)

    def _rss_bytes(self, now: float) -> float:
        if now - self._children_at >= CHILDREN_EVERY_S and not self._own:
            self._children_at = now
            try:
                self._children = self._proc.children(recursive=True)
            except psutil.Error:
                self._children = []
        total = self._statm_rss(self._proc, self._page_bytes)
        for child in self._children:
            try:
                total += self._statm_rss(child, self._page_bytes)
            except psutil.Error:  # a child that ended since the list was read
                continue
        return total

    def read(self) -> list[Reading]:
        now = time.perf_counter()
        try:
            cpu_s = self._cpu_s()
            rss = self._rss_bytes(now)
        except psutil.Error:  # the worker has ended (or crashed): nothing of it to read
            return []
        dt = now - self._last_wall
        cpu_percent = 100.0 * (cpu_s - self._last_cpu) / dt if dt > 0 else 0.0
        self._last_cpu, self._last_wall = cpu_s, now
        if now - self._sys_mem_at >= SYS_MEM_EVERY_S:
            vm = psutil.virtual_memory()
            self._sys_mem_used, self._sys_mem_at = float(vm.total - vm.available), now
        return [
            Reading(self.sensor, "rss_bytes", rss),
            Reading(self.sensor, "cpu_percent", cpu_percent),
            Reading(self.sensor, "sys_mem_used_bytes", self._sys_mem_used),
            Reading(self.sensor, "sys_cpu_percent", 100.0 * self._load.fraction()),
        ]
