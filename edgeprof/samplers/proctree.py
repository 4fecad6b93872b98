"""A process's family: its pid and its children's, listed again at most once a second.

NVML's process lists name the process that holds GPU memory, and a local server often holds
it in a child: Ollama runs each model in an `ollama runner` child, vLLM in worker processes.
The GPU memory of the model's process is then the sum over its family.
"""

from __future__ import annotations

import time

import psutil

CHILDREN_EVERY_S = 1.0


class ProcessFamily:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._pids = {pid}
        self._listed_at = float("-inf")

    def pids(self) -> set[int]:
        """The pid and its children's now; a process that cannot be read has none listed."""
        now = time.monotonic()
        if now - self._listed_at >= CHILDREN_EVERY_S:
            self._listed_at = now
            try:
                children = psutil.Process(self.pid).children(recursive=True)
            except psutil.Error:
                children = []
            self._pids = {self.pid, *(c.pid for c in children)}
        return self._pids
