"""The recorder: a daemon thread polling every sampler at a fixed rate, beside the model.

It writes samples to the profile database in batches from its own connection, at least once a
second, so the measured path never waits on disk and the buffer stays small however long the
run. Power and energy points are also kept in memory (a bounded window) so the runner can
attribute energy to a request the moment it ends. `mark()` takes one synchronous sample so that
every request window has a reading exactly at its edges.

`with recorder.window("load") as w:` measures one stretch of work (as zeus's begin/end
window): a reading at each edge, then `w.energy` (a `WindowEnergy`), `w.duration_s` and the
window's peak RSS. With `db_path=None` nothing is written: a notebook can measure a window
without a profile database.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edgeprof.analysis.energy import SensorSeries, WindowEnergy, window_energy
from edgeprof.errors import ProfileDBError, SensorError
from edgeprof.power import POWER_METRICS
from edgeprof.samplers.base import Reading, Sampler
from edgeprof.store.db import SampleRow, Store
from edgeprof.store.liveness import HEARTBEAT_INTERVAL_S

FLUSH_INTERVAL_S = 1.0
MAX_BUFFER_ROWS = 50_000
MAX_FLUSH_FAILURES = 5  # flushes in a row (about 1 s apart, each after the busy timeout)
WINDOW_S = 3600.0  # power history kept in memory for attribution: the longest request window


@dataclass
class Window:
    """One measured stretch of work: filled in when its `with` block ends."""

    name: str
    t_start_ns: int = 0
    t_end_ns: int = 0
    energy: WindowEnergy = field(default_factory=lambda: WindowEnergy(None, None))
    series: list[SensorSeries] = field(default_factory=list)  # the power points it covers
    peak_rss_bytes: float | None = None

    @property
    def duration_s(self) -> float:
        return (self.t_end_ns - self.t_start_ns) / 1e9


class Recorder:
    def __init__(
        self,
        samplers: Sequence[Sampler],
        db_path: Path | None,
        run_id: str,
        t0_ns: int,
        hz: float = 10.0,
    ) -> None:
        if hz <= 0:
            raise ValueError("hz must be positive")
        self.samplers = list(samplers)
        self.db_path = db_path
        self.run_id = run_id
        self.t0_ns = t0_ns
        self.interval_s = 1.0 / hz
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._buffer: list[SampleRow] = []
        self._meta = {s.sensor: s for s in self.samplers}
        maxlen = int(WINDOW_S * hz) + 16
        self._power: dict[tuple[str, str], deque[tuple[int, float]]] = {}
        for s in self.samplers:
            for m in s.metrics:
                if m in POWER_METRICS:
                    self._power[(s.sensor, m)] = deque(maxlen=maxlen)
        self._peaks: dict[str, float] = {}
        self.n_polls = 0
        self.dropped_rows = 0
        self._write_error: str | None = None
        self._flush_failures = 0
        self.thread_cpu_s = 0.0
        self.wall_s = 0.0
        self.error: str | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="edgeprof-recorder", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        for s in self.samplers:
            s.close()

    def __enter__(self) -> Recorder:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _loop(self) -> None:
        store = Store(self.db_path, migrate_schema=False) if self.db_path is not None else None
        cpu0, wall0 = time.thread_time(), time.perf_counter()
        last_flush = last_beat = wall0
        try:
            # stop.wait is both the sleep and the stop signal: stop() wakes it at once.
            while not self._stop.wait(self.interval_s):
                self.poll()
                now = time.perf_counter()
                if now - last_flush >= FLUSH_INTERVAL_S:
                    self._flush(store)
                    last_flush = now
                beat_due = now - last_beat >= HEARTBEAT_INTERVAL_S
                if store is not None and beat_due and self._write_error is None:
                    with contextlib.suppress(ProfileDBError):  # the next beat may land
                        store.heartbeat(self.run_id)  # this run still has a live writer
                    last_beat = now
            self.poll()
            self._flush(store, final=True)
        except Exception as e:  # never kill the run for a sensor; keep what was recorded
            self.error = f"{type(e).__name__}: {e}"
            self._flush(store, final=True)
        finally:
            self.thread_cpu_s = time.thread_time() - cpu0
            self.wall_s = time.perf_counter() - wall0
            if store is not None:
                store.close()

    # -- sampling ------------------------------------------------------------------------

    def poll(self) -> int:
        """Read every sampler once (from any thread); returns the timestamp used."""
        with self._lock:
            t_ns = time.perf_counter_ns()
            readings: list[Reading] = []
            for s in self.samplers:
                try:
                    readings.extend(s.read())
                except (OSError, SensorError):
                    continue  # a transiently unreadable file: skip this tick, keep the rest
            rel = t_ns - self.t0_ns
            for r in readings:
                self._buffer.append((self.run_id, rel, r.sensor, r.metric, r.value))
                series = self._power.get((r.sensor, r.metric))
                if series is not None:
                    series.append((t_ns, r.value))
                if r.metric == "rss_bytes" or r.metric.endswith("power_w"):
                    key = f"{r.sensor}/{r.metric}"
                    if r.value > self._peaks.get(key, float("-inf")):
                        self._peaks[key] = r.value
            self.n_polls += 1
            if len(self._buffer) > MAX_BUFFER_ROWS:  # disk stalled: drop oldest, stay bounded
                excess = len(self._buffer) - MAX_BUFFER_ROWS
                del self._buffer[:excess]
                self.dropped_rows += excess
            return t_ns

    def mark(self) -> int:
        return self.poll()

    @contextlib.contextmanager
    def window(self, name: str) -> Iterator[Window]:
        """Measure the `with` block: a reading at each edge, then its energy over the power
        points between them (`energy.window_energy`) and the peak RSS sampled inside it."""
        w = Window(name)
        self.reset_peaks()
        w.t_start_ns = self.mark()
        yield w
        w.t_end_ns = self.mark()
        w.series = self.power_series(w.t_start_ns, w.t_end_ns)
        w.energy = window_energy(w.series, w.t_start_ns, w.t_end_ns)
        w.peak_rss_bytes = self.peak("rss_bytes")

    def _flush(self, store: Store | None, *, final: bool = False) -> None:
        """Write the buffered samples. A failed write keeps them for the next flush (another
        process may hold the lock a while); after MAX_FLUSH_FAILURES in a row, or at the
        end, what could not be written is counted and the run told (`write_error`)."""
        with self._lock:
            rows, self._buffer = self._buffer, []
        if not rows or store is None:  # no database: the samples lived in memory only
            return
        if self._write_error is None:
            try:
                store.insert_samples(rows)
                self._flush_failures = 0
                return
            except ProfileDBError as e:
                self._flush_failures += 1
                if self._flush_failures < MAX_FLUSH_FAILURES and not final:
                    with self._lock:
                        self._buffer[:0] = rows
                    return
                self._write_error = str(e)
        self.dropped_rows += len(rows)

    @property
    def write_error(self) -> str | None:
        """Why samples were lost, if any were; None when every sample reached the database."""
        if self._write_error is None and self.dropped_rows == 0:
            return None
        why = self._write_error or "the database did not keep up"
        return f"{self.dropped_rows} samples could not be written ({why})"

    # -- views for the runner -----------------------------------------------------------

    def reset_peaks(self) -> None:
        with self._lock:
            self._peaks.clear()

    def peak(self, metric: str) -> float | None:
        with self._lock:
            values = [v for k, v in self._peaks.items() if k.endswith("/" + metric)]
        return max(values) if values else None

    def power_series(self, t_start_ns: int, t_end_ns: int) -> list[SensorSeries]:
        """Power/energy points covering [start, end], one point beyond each edge if present."""
        out: list[SensorSeries] = []
        with self._lock:
            for (sensor, metric), points in self._power.items():
                pts = list(points)
                lo = next((i for i, p in enumerate(pts) if p[0] >= t_start_ns), len(pts))
                hi = next((i for i in range(len(pts) - 1, -1, -1) if pts[i][0] <= t_end_ns), -1)
                window = pts[max(0, lo - 1) : min(len(pts), hi + 2)]
                meta = self._meta[sensor]
                out.append(SensorSeries(sensor, meta.domain, metric, meta.method, window))
        return out

    def cpu_s_per_s(self) -> float | None:
        return self.thread_cpu_s / self.wall_s if self.wall_s > 0 else None
