"""The row types (edgeprof/store/rows.py) name exactly the columns the migrations create, so
a column added without its type (or a typo in a type) fails here, not in a report."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from edgeprof.store import Store
from edgeprof.store.rows import QualityRow, RequestRow, RunRow, SensorRow


@pytest.mark.parametrize(
    ("table", "row_type"),
    [("runs", RunRow), ("requests", RequestRow), ("sensors", SensorRow), ("quality", QualityRow)],
)
def test_row_types_match_the_schema(tmp_path: Path, table: str, row_type: type) -> None:
    Store(tmp_path / "p.db").close()
    conn = sqlite3.connect(tmp_path / "p.db")
    try:
        columns = [c[1] for c in conn.execute(f"PRAGMA table_info({table})")]
    finally:
        conn.close()
    assert list(row_type.__annotations__) == columns
