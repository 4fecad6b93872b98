"""Memory and CPU of other processes and their children: a local server's (Ollama runs each
model in a child process, vLLM in workers), summed.

The children are listed again at most once a second (a walk of the process table); between
listings the known ones are read. A child that has ended is dropped; one that cannot be read
(another user's) is counted as missing in `unreadable`, never as zero silently.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import psutil

from edgeprof.errors import SensorError

CHILDREN_EVERY_S = 1.0


class ProcessTree:
    def __init__(self, pids: Sequence[int]) -> None:
        self.pids = tuple(pids)
        try:
            self._roots = [psutil.Process(pid) for pid in self.pids]
        except psutil.NoSuchProcess as e:
            raise SensorError(
                f"the server's process (pid {e.pid}) ended before the run started; "
                "start the server again"
            ) from None
        self._procs: list[psutil.Process] = list(self._roots)
        self._listed_at = float("-inf")
        self._cpu_s: dict[int, float] = {}
        self.unreadable = 0  # processes of the tree the last read could not see
        self.rss_bytes = 0.0  # as of the last read
        self.cpu_s = 0.0
        self.read()

    def describe(self) -> str:
        """ "pid 4242 (ollama)": which processes, by the names the system gives them."""
        names = []
        for proc in self._roots:
            try:
                names.append(f"pid {proc.pid} ({proc.name()})")
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                names.append(f"pid {proc.pid}")
        return ", ".join(names)

    def all_pids(self) -> set[int]:
        """The processes and their children now (listed again at most once a second)."""
        self._refresh()
        return {p.pid for p in self._procs}

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._listed_at < CHILDREN_EVERY_S:
            return
        self._listed_at = now
        procs = list(self._roots)
        for root in self._roots:
            try:
                procs.extend(root.children(recursive=True))
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        self._procs = procs

    def read(self) -> tuple[float, float]:
        """(RSS in bytes, CPU seconds used) summed over the processes and their children."""
        self._refresh()
        rss = 0.0
        unreadable = 0
        for proc in self._procs:
            try:
                with proc.oneshot():
                    rss += proc.memory_info().rss
                    t = proc.cpu_times()
                    # an ended child's time would vanish from the sum: keep its last figure
                    self._cpu_s[proc.pid] = t.user + t.system
            except psutil.NoSuchProcess:
                continue
            except psutil.AccessDenied:
                unreadable += 1
        self.unreadable = unreadable
        self.rss_bytes, self.cpu_s = rss, sum(self._cpu_s.values())
        return self.rss_bytes, self.cpu_s
