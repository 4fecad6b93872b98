"""Samplers fed by a slow or streaming external tool (vcgencmd, powermetrics, tegrastats).

Such a tool takes ~0.1 s a call or prints on its own schedule, so reading it on the recorder's
thread would stall every other sensor. A `PolledSampler` runs the tool on its own thread and
`read()` hands over, without waiting, whatever arrived since the previous read.
"""

from __future__ import annotations

import subprocess
import threading
from abc import abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

from edgeprof.errors import SensorError
from edgeprof.power import Domain
from edgeprof.samplers.base import Method, Reading, Sampler

Push = Callable[[list[Reading]], None]


class PolledSampler(Sampler):
    """A sampler whose readings are produced on a background thread.

    A subclass initialises its fields (`super().__init__(sensor=..., ...)`), starts its tool
    (assigning a streaming child to `process` lets `close()` end it), then calls
    `start_polling()`. `produce(push)` runs on the thread: it calls `push(readings)` each time
    the tool reports and returns when the tool's output ends or `stopping` is set; an exception
    it raises is re-raised by every later `read()` as a SensorError.
    """

    # Seconds a streaming child gets to exit after SIGTERM before SIGKILL; 0: SIGKILL at once.
    terminate_grace_s: ClassVar[float] = 5.0

    process: subprocess.Popen[Any] | None = None
    error: str | None = None

    def __init__(
        self,
        sensor: str,
        domain: Domain,
        method: Method = "measured",
        detail: str = "",
        metrics: tuple[str, ...] = (),
    ) -> None:
        super().__init__(sensor, domain, method, detail, metrics)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._latest: list[Reading] = []
        self._fresh = False

    @abstractmethod
    def produce(self, push: Push) -> None:
        """Run the tool, calling `push` with each new set of readings, until it ends or
        `stopping` is set. Runs on the sampler's own thread."""

    def start_polling(self) -> None:
        """Start `produce` on its own thread, once the tool it reads is set up."""
        self._thread = threading.Thread(
            target=self._run, name=f"edgeprof-{self.sensor}", daemon=True
        )
        self._thread.start()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _push(self, readings: list[Reading]) -> None:
        with self._lock:
            self._latest = readings
            self._fresh = True

    def _run(self) -> None:
        try:
            self.produce(self._push)
        except Exception as e:  # reported by read(), never raised on a thread nobody joins
            self.error = str(e)

    def take(self) -> list[Reading]:
        """The readings pushed since the last call, each handed over once ([] if none)."""
        with self._lock:
            if not self._fresh:
                return []
            self._fresh = False
            return list(self._latest)

    def read(self) -> list[Reading]:
        if self.error:
            raise SensorError(f"{self.sensor}: {self.error}")
        return self.take()

    def close(self) -> None:
        """Ask `produce` to stop and end the streaming child, if any; the thread then finishes
        on its own (the end of the child's output, or the next `stopping` check)."""
        self._stop.set()
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            if self.terminate_grace_s > 0:
                proc.terminate()  # lets `sudo` pass the signal on to powermetrics
                try:
                    proc.wait(timeout=self.terminate_grace_s)
                    return
                except subprocess.TimeoutExpired:
                    pass
            proc.kill()
        proc.wait(timeout=5)
