"""Page-cache residency of a file (mmap + mincore), on real files on this machine's disk, and
what a run records with it: the model file's residency before the load, and the power setup."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeprof.measure.page_cache import cached_fraction, model_cached_fraction
from tests.fakesys import FakeSys, make_fakesys

SIZE = 8 * 2**20


def write_and_read(path: Path, size: int = SIZE) -> None:
    path.write_bytes(os.urandom(size))
    with path.open("rb") as f:
        while f.read(2**20):
            pass


def evict(path: Path) -> float | None:
    """Drop the file's pages from the cache (written back first: dirty pages stay); the
    fraction after, or None where the kernel ignores the advice (tmpfs keeps its pages)."""
    if not hasattr(os, "posix_fadvise"):
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    after = cached_fraction(path)
    return after if after is not None and after < 0.5 else None


@pytest.fixture
def disk_dir() -> Iterator[Path]:
    """A directory on a disk-backed filesystem where possible (the repository's), since tmpfs
    pages cannot be evicted."""
    import tempfile

    base = Path(__file__).resolve().parent.parent / ".pytest_cache"
    base.mkdir(exist_ok=True)
    d = Path(tempfile.mkdtemp(prefix="page-cache-", dir=base))
    yield d
    for p in d.iterdir():
        p.unlink()
    d.rmdir()


@pytest.mark.skipif(
    not (sys.platform.startswith("linux") or sys.platform == "darwin"),
    reason="mincore(2) is read on Linux and macOS only",
)
def test_a_file_just_read_is_cached_and_eviction_shows(disk_dir: Path) -> None:
    path = disk_dir / "weights.bin"
    write_and_read(path)
    before = cached_fraction(path)
    assert before is not None and before > 0.9
    after = evict(path)
    if after is None:
        pytest.skip("this kernel or filesystem ignored POSIX_FADV_DONTNEED (tmpfs keeps pages)")
    assert after < 0.5
    with path.open("rb") as f:  # a repeat load: resident again
        f.read()
    again = cached_fraction(path)
    assert again is not None and again > 0.9


@pytest.mark.parametrize("what", ["missing", "empty", "directory"])
def test_unknowable_is_none_never_an_error(tmp_path: Path, what: str) -> None:
    path = tmp_path / "x"
    if what == "empty":
        path.write_bytes(b"")
    elif what == "directory":
        path.mkdir()
    assert cached_fraction(path) is None
    assert model_cached_fraction(path) is None


def test_onnx_external_weights_counted_with_the_graph(disk_dir: Path) -> None:
    """An ONNX export keeps its weights in `<name>.data`: a cached graph with evicted weights
    is a cold load."""
    graph, data = disk_dir / "m.onnx", disk_dir / "m.onnx.data"
    write_and_read(graph, 64 * 1024)
    write_and_read(data)
    warm = model_cached_fraction(graph)
    assert warm is not None and warm > 0.9
    if evict(data) is None:
        pytest.skip("this kernel or filesystem ignored POSIX_FADV_DONTNEED (tmpfs keeps pages)")
    cold = model_cached_fraction(graph)
    assert cold is not None and cold < 0.5
    assert cached_fraction(graph) == pytest.approx(1.0, abs=0.1)  # the graph alone is warm


@pytest.fixture
def fs() -> Iterator[FakeSys]:
    yield from make_fakesys()


def test_run_records_page_cache_and_power_setup(
    fs: FakeSys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the fake backend, with a fake sysfs: the model file's residency measured before the
    load, and the governor and AC state the run had."""
    import tests.fakes  # noqa: F401 - registers the `fake` backend
    from edgeprof.measure.runner import RunConfig, profile
    from edgeprof.store.db import Store
    from tests.builders import write_prompts

    fs.cpufreq_policy(0, "0 1", 1_500_000, governor="performance")
    fs.power_supply("AC", "Mains", online=1)
    fs.thermal_zone(0, "cpu-thermal", 48_000)
    monkeypatch.setenv("EDGEPROF_SYS_ROOT", str(fs.root))
    monkeypatch.setenv("EDGEPROF_BIN_PATH", str(fs.bin))
    model = tmp_path / "fake-model.bin"
    write_and_read(model, 2**20)
    db = tmp_path / "p.db"
    with Store(db) as store:  # this device's bandwidth already known: no ~1 s benchmark
        from edgeprof.measure.device import fingerprint

        store.upsert_device({**fingerprint(fs.root), "mem_bandwidth_gbs": 10.0})
    run_id = profile(
        RunConfig(
            backend="fake",
            model=str(model),
            prompts=str(write_prompts(tmp_path / "p.jsonl", ["Say hi."])),
            db=db,
            repetitions=1,
            warmup=0,
            max_tokens=4,
            idle_seconds=0.0,
            sensors=["estimate"],
            tdp_w=10.0,
            settings={"tokens_per_s": 1000.0, "ttft_s": 0.001, "load_s": 1.1},
        )
    )
    with Store(db) as store:
        (run,) = store.runs([run_id])
        sensors = {(r["sensor"], r["metric"], r["domain"]) for r in store.sensors(run_id)}
        temps = [r["value"] for r in store.samples(run_id, metrics=["temp_c"])]
    params = run["params"]
    assert params["power_setup"] == {"cpu_governor": "performance", "power_source": "ac"}
    assert params["page_cache_fraction"] > 0.9  # just written and read
    # The temperature and the clock were recorded beside the estimator's power.
    assert ("thermal:cpu-thermal", "temp_c", "thermal") in sensors
    assert ("cpufreq:policy0", "freq_hz", "clock") in sensors
    assert temps and all(t == 48.0 for t in temps)
