from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from edgeprof.errors import ProfileDBError
from edgeprof.store import SCHEMA_VERSION, Store
from edgeprof.store import migrations as mig
from edgeprof.store.ids import ulid


def test_migrations_from_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    path.touch()  # an empty file is a new database, not a corrupted one
    with Store(path) as store:
        assert mig.applied(store.db) == [name for name, _ in mig.MIGRATIONS]
        assert mig.schema_version(store.db) == SCHEMA_VERSION
        tables = set(store.db.table_names())
        assert {"devices", "runs", "requests", "series", "sample_points", "sensors"} <= tables
        assert "prompts" in tables and store.db.view_names() == ["samples"]
        assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        columns = {c.name for c in store.db.table("requests").columns}
        assert {"ttft_s", "prefill_tps", "decode_tps", "itl_p99_s", "energy_net_j"} <= columns
    with Store(path) as again:  # idempotent: nothing runs twice
        assert mig.pending(again.db) == []
        assert mig.migrate(again.db) == []


def test_failing_migration_rolls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def m999_broken(db: Any) -> None:
        db.execute("CREATE TABLE half_done (x INTEGER)")
        raise RuntimeError("boom")

    monkeypatch.setattr(mig, "MIGRATIONS", [*mig.MIGRATIONS, ("m999_broken", m999_broken)])
    monkeypatch.setattr(mig, "SCHEMA_VERSION", len(mig.MIGRATIONS))
    with pytest.raises(RuntimeError):
        Store(tmp_path / "p.db")
    conn = sqlite3.connect(tmp_path / "p.db")
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "half_done" not in tables and "runs" in tables
    names = [r[0] for r in conn.execute("SELECT name FROM _migrations")]
    assert "m999_broken" not in names


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(ProfileDBError, match="newer than this edgeprof"):
        Store(path)


def test_non_profile_files_are_refused(tmp_path: Path) -> None:
    text = tmp_path / "notes.db"
    text.write_text("hello")
    with pytest.raises(ProfileDBError, match="not an SQLite file"):
        Store(text)
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(ProfileDBError, match="not an edgeprof profile"):
        Store(other)


def test_ulids_are_unique_and_time_ordered() -> None:
    ids = [ulid(t_ms=1_700_000_000_000 + i) for i in range(50)]
    assert ids == sorted(ids)
    assert len({ulid() for _ in range(1000)}) == 1000
    assert all(len(i) == 26 for i in ids)


def test_samples_insert_and_window_query(tmp_path: Path) -> None:
    with Store(tmp_path / "p.db") as store:
        rows = [("r1", t, "process", "rss_bytes", float(t)) for t in range(0, 1000, 10)]
        store.insert_samples(rows)
        got = list(store.samples("r1", 100, 200, metrics=["rss_bytes"]))
        assert [r["t_ns"] for r in got] == list(range(100, 201, 10))
        assert store.count("samples") == 100
