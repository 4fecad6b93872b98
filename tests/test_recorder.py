"""The recorder thread: batched, at least once-a-second writes; edges; energy windows."""

from __future__ import annotations

import time
from typing import ClassVar

import pytest

from edgeprof.analysis.energy import window_energy
from edgeprof.samplers.base import Reading, Sampler, SensorEnv
from edgeprof.samplers.process import ProcessSampler
from edgeprof.samplers.recorder import Recorder
from edgeprof.store import Store


class ConstantPower(Sampler):
    """A real sampler of a constant 20 W source, so energy over a window is 20 W × seconds."""

    source: ClassVar[str] = "constant"

    def __init__(self) -> None:
        super().__init__(sensor="const", domain="board", metrics=("power_w",))

    @classmethod
    def discover(cls, env: SensorEnv) -> list[Sampler]:
        return [cls()]

    def read(self) -> list[Reading]:
        return [Reading(self.sensor, "power_w", 20.0)]


def test_samples_reach_the_database_while_running(tmp_path):
    db = tmp_path / "p.db"
    Store(db).close()
    t0 = time.perf_counter_ns()
    rec = Recorder([ConstantPower(), ProcessSampler()], db, "run1", t0, hz=50)
    rec.start()
    try:
        # The recorder flushes at least once a second; on a loaded machine its thread may be
        # scheduled late, so the bound is generous and what is asserted is that samples reach
        # the file while the recorder is still running.
        mid, deadline = 0, time.monotonic() + 15
        while mid == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
            with Store(db) as store:
                mid = store.count("samples")
        assert mid > 0, "nothing reached the database within 15 s of recording"
        a = rec.mark()
        time.sleep(0.5)
        b = rec.mark()
        w = window_energy(rec.power_series(a, b), a, b)
        assert w.energy_j == pytest.approx(20.0 * (b - a) / 1e9, rel=1e-9)
        assert w.method == "measured" and w.domains == ("board",)
        peak_rss = rec.peak("rss_bytes")
        assert peak_rss is not None and peak_rss > 1e6
    finally:
        rec.stop()
    with Store(db) as store:
        rows = list(store.samples("run1", metrics=["power_w"]))
        assert len(rows) >= 10  # at 50 Hz for over half a second, however loaded
        assert all(r["t_ns"] >= 0 for r in rows)  # relative to the run's start
        assert store.count("samples") > mid
    cpu = rec.cpu_s_per_s()
    assert cpu is not None and cpu < 0.5


def test_a_failing_sampler_does_not_stop_the_others(tmp_path):
    class Broken(ConstantPower):
        def read(self) -> list[Reading]:
            raise OSError("sensor vanished")

    db = tmp_path / "p.db"
    Store(db).close()
    rec = Recorder([Broken(), ProcessSampler()], db, "run1", time.perf_counter_ns(), hz=50)
    with rec:
        time.sleep(0.3)
    with Store(db) as store:
        assert store.count("samples") > 0
    assert rec.error is None


def test_a_window_measures_without_a_database() -> None:
    """zeus-style begin/end: the energy of the `with` block from the samples at its edges and
    between them, and nothing written anywhere."""
    rec = Recorder([ConstantPower(), ProcessSampler()], None, "notebook", time.perf_counter_ns())
    with rec:
        with rec.window("work") as w:
            time.sleep(0.3)
        assert w.duration_s == pytest.approx(0.3, abs=0.2)
        assert w.energy.energy_j == pytest.approx(20.0 * w.duration_s, rel=1e-9)
        assert w.energy.method == "measured" and w.energy.domains == ("board",)
        assert w.peak_rss_bytes is not None and w.peak_rss_bytes > 1e6
        with rec.window("nothing") as empty:
            pass
        assert empty.energy.energy_j == pytest.approx(20.0 * empty.duration_s, rel=1e-9)
        assert empty.t_end_ns >= empty.t_start_ns > w.t_end_ns
    assert rec.error is None and rec.write_error is None
