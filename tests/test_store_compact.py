"""Compact samples (m007): `series` + `sample_points`, the `samples` view, the migration of an
old file, duplicate reads, concurrent writers, merge re-mapping series ids, query plans."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
import sqlite_utils

from edgeprof.errors import ProfileDBError
from edgeprof.store import Store
from edgeprof.store import migrations as mig
from edgeprof.store.db import points_query, series_query
from edgeprof.store.share import merge
from tests.builders import add_run, device_row

OLD = "m006_request_cached_input_tokens"


def old_schema_db(path: Path, rows: list[tuple[object, ...]]) -> None:
    """A file as edgeprof wrote it before m007: samples(run_id, t_ns, sensor, metric, value)
    with its (run_id, t_ns) index, holding `rows` in that order."""
    db = sqlite_utils.Database(sqlite3.connect(path))
    names = [name for name, _ in mig.MIGRATIONS]
    db.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at FLOAT)")
    for name, fn in mig.MIGRATIONS[: names.index(OLD) + 1]:
        fn(db)
        db.execute("INSERT INTO _migrations VALUES (?, ?)", (name, time.time()))
    db.execute(f"PRAGMA user_version = {names.index(OLD) + 1}")
    assert db.table("samples").indexes  # the old DDL, index and all
    db.conn.executemany("INSERT INTO samples VALUES (?, ?, ?, ?, ?)", rows)
    # Samples travel with their run in a merge: give each one.
    db.conn.executemany(
        "INSERT INTO runs (id, backend, status, t0_ns) VALUES (?, 'llamacpp', 'complete', 0)",
        sorted({(r[0],) for r in rows}),
    )
    db.conn.commit()
    db.close()


def view_rows(path: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return sorted(conn.execute("SELECT run_id, t_ns, sensor, metric, value FROM samples"))


def old_rows(n_ticks: int) -> list[tuple[object, ...]]:
    series = [("rapl:package-0", "power_w"), ("rapl:package-0", "energy_j"),
              ("process", "rss_bytes")]  # fmt: skip
    return [
        (run, k * 100_000_000, sensor, metric, 10.0 + k * 0.37 + j)
        for run in ("run-a", "run-b")
        for k in range(n_ticks)
        for j, (sensor, metric) in enumerate(series)
    ]


def test_migration_converts_an_old_file_keeping_every_sample(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    rows = old_rows(5_000)
    # Two reads of one series at one t_ns: both must survive, the later 1 ns later.
    dup = ("run-a", 300_000_000, "rapl:package-0", "power_w", 99.5)
    old_schema_db(path, [*rows, dup])
    size_before = path.stat().st_size
    with Store(path) as store:
        assert mig.pending(store.db) == []
        assert store.count("samples") == len(rows) + 1
        kinds = dict(store.db.execute("SELECT name, type FROM sqlite_master").fetchall())
        assert kinds["samples"] == "view" and kinds["sample_points"] == "table"
        assert "idx_samples_run_id_t_ns" not in kinds  # the old index went with its table
        moved = [r for r in store.samples("run-a", 300_000_000, 300_000_001, ["power_w"])]
    assert [(r["t_ns"], r["value"]) for r in moved] == [
        (300_000_000, 10.0 + 3 * 0.37),
        (300_000_001, 99.5),
    ]
    got = view_rows(path)
    assert got == sorted([*rows, (*dup[:1], dup[1] + 1, *dup[2:])])
    # VACUUM gave the old table's pages back: the data takes under a third of what it took,
    # beside the pages every profile's empty tables and indexes take (more with each migration).
    empty = tmp_path / "empty.db"
    Store(empty).close()
    data_bytes = path.stat().st_size - empty.stat().st_size
    assert data_bytes < size_before / 3, (size_before, path.stat().st_size)


def test_an_old_source_merges_with_every_sample(tmp_path: Path) -> None:
    old, new, dest = tmp_path / "old.db", tmp_path / "new.db", tmp_path / "all.db"
    rows = old_rows(300)
    old_schema_db(old, rows)
    before = old.read_bytes()
    with Store(new) as store:
        run_id = add_run(store, device_row("pi"), n_samples=30)
    result = merge([old, new], dest)
    assert result.added["samples"] == len(rows) + 45
    assert old.read_bytes() == before  # a source is only read
    mine = [r for r in view_rows(dest) if r[0] == run_id]
    assert len(mine) == 45 and set(view_rows(dest)) - set(mine) == set(rows)


def test_duplicate_reads_are_kept_never_fatal(tmp_path: Path) -> None:
    with Store(tmp_path / "p.db") as store:
        store.insert_samples(
            [("r", 100, "nvml:0", "power_w", 1.0), ("r", 200, "nvml:0", "power_w", 2.0)]
        )
        # The same t_ns again, within one batch and against a row already written.
        store.insert_samples(
            [("r", 100, "nvml:0", "power_w", 3.0), ("r", 100, "nvml:0", "power_w", 4.0),
             ("r", 100, "nvml:1", "power_w", 5.0), ("r", 300, "nvml:0", "power_w", 6.0)]
        )  # fmt: skip
        got = [(r["t_ns"], r["sensor"], r["value"]) for r in store.samples("r")]
    assert got == [
        (100, "nvml:0", 1.0),
        (100, "nvml:1", 5.0),  # another series: no collision, nothing moved
        (101, "nvml:0", 3.0),
        (102, "nvml:0", 4.0),
        (200, "nvml:0", 2.0),
        (300, "nvml:0", 6.0),
    ]


def test_writers_in_parallel_lose_nothing(tmp_path: Path) -> None:
    """Two connections (as two profiles on one file) write runs at once, the same run's
    series included: every row lands, each series once."""
    path = tmp_path / "p.db"
    Store(path).close()
    errors: list[BaseException] = []

    def write(name: str) -> None:
        try:
            with Store(path) as store:
                for k in range(60):
                    store.insert_samples(
                        [(run, k * 1000 + j, f"{name}:{j % 3}", "power_w", float(k))
                         for run in ("shared", name) for j in range(20)]
                    )  # fmt: skip
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=write, args=(n,)) for n in ("w1", "w2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with Store(path) as store:
        assert store.count("samples") == 2 * 60 * 40
        keys = store.db.execute("SELECT run_id, sensor, metric FROM series").fetchall()
    assert len(keys) == len(set(keys)) == 12


def test_merge_remaps_series_ids_and_keeps_rows(tmp_path: Path) -> None:
    a, b, dest = tmp_path / "a.db", tmp_path / "b.db", tmp_path / "all.db"
    with Store(a) as store:
        add_run(store, device_row("laptop"), n_samples=50)
        add_run(store, device_row("laptop"), n_samples=10)
    with Store(b) as store:
        add_run(store, device_row("pi"), n_samples=20)  # series ids 1, 2: a's too
        add_run(store, device_row("pi"), n_samples=8)
    merge([a, b], dest)
    assert view_rows(dest) == sorted(view_rows(a) + view_rows(b))
    again = merge([a, b], dest)
    assert not again.changed and len(view_rows(dest)) == len(view_rows(a)) + len(view_rows(b))
    with sqlite3.connect(dest) as conn:
        orphans = conn.execute(
            "SELECT count(*) FROM sample_points WHERE series_id NOT IN (SELECT id FROM series)"
        ).fetchone()[0]
    assert orphans == 0


def test_reads_probe_keys_never_scan_nor_sort(tmp_path: Path) -> None:
    """The queries behind `Store.samples` (report's GPU-memory peak, plots, energy) find the
    run's series through their unique index and each one's points as a key range in time
    order; the series are merged in Python, so nothing is scanned or sorted."""
    with Store(tmp_path / "p.db") as store:
        add_run(store, device_row("box"), n_samples=10)
        plans = []
        for sql, args in (series_query("r", ["gpu_mem_bytes", "power_w"]), points_query(0, 9)):
            rows = store.db.execute(f"EXPLAIN QUERY PLAN {sql}", [*args, 1][: sql.count("?")])
            plans.append(" | ".join(r[3] for r in rows))
    series_plan, points_plan = plans
    assert series_plan.startswith("SEARCH series USING COVERING INDEX sqlite_autoindex_series")
    assert (
        points_plan == "SEARCH sample_points USING PRIMARY KEY (series_id=? AND t_ns>? AND t_ns<?)"
    )
    assert "SCAN" not in series_plan + points_plan and "TEMP B-TREE" not in points_plan


def test_reads_merge_series_in_time_order(tmp_path: Path) -> None:
    with Store(tmp_path / "p.db") as store:
        store.insert_samples(
            [("r", t, f"gpu{t % 3}", "gpu_mem_bytes", float(t)) for t in range(0, 90, 2)]
            + [("r", t, "gpu0", "gpu_mem_bytes", float(t)) for t in range(1, 90, 6)]
            + [("r", 5, "cpu", "power_w", 1.0), ("other", 7, "gpu0", "gpu_mem_bytes", 1.0)]
        )
        got = [(r["t_ns"], r["sensor"]) for r in store.samples("r", 10, 40, ["gpu_mem_bytes"])]
        assert [(r["t_ns"], r["metric"]) for r in store.samples("r", metrics=["power_w"])] == [
            (5, "power_w")
        ]
    expected = [(t, f"gpu{t % 3}") for t in range(10, 41, 2)] + [
        (t, "gpu0") for t in range(13, 41, 6)
    ]
    assert got == sorted(expected)


def test_few_bytes_per_sample(tmp_path: Path) -> None:
    """Recorder-shaped writes (a dozen series read at each 100 ms tick, fractional watts,
    integral bytes) take under 30 bytes a sample on disk, every table and index included."""
    path = tmp_path / "p.db"
    n_ticks, series = 4_000, 12
    with Store(path) as store:
        for start in range(0, n_ticks, 100):
            store.insert_samples(
                [("run", k * 100_000_000 + k % 7, f"s{j}", "power_w" if j % 2 else "rss_bytes",
                  (k * 0.731 + j) if j % 2 else float(2 << 27))
                 for k in range(start, start + 100) for j in range(series)]
            )  # fmt: skip
    assert not Path(f"{path}-wal").exists()  # checkpointed into the file on close
    assert path.stat().st_size / (n_ticks * series) < 30


def test_a_strangers_view_is_refused_ours_is_not(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    Store(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("DROP VIEW samples")
        conn.execute(
            "CREATE VIEW samples AS SELECT s.run_id AS run_id, 0 AS t_ns, s.sensor AS sensor, "
            "s.metric AS metric, 0 AS value FROM series AS s"
        )
    with pytest.raises(ProfileDBError, match="view samples"):
        Store(path)
    with pytest.raises(ProfileDBError, match="view samples"):
        merge([path], tmp_path / "all.db")
