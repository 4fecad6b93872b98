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
        time.sleep(1.6)
        with Store(db) as store:
            mid = store.count("samples")
        assert mid > 0, "nothing flushed within a second and a half"
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
        assert len(rows) >= 50  # ~2.1 s at 50 Hz, whatever the load
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
