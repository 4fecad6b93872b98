"""The profile database: open (WAL, busy timeout, migrations), insert, query."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import sqlite_utils

from edgeprof.errors import ProfileDBError
from edgeprof.store.migrations import MIGRATIONS_TABLE, migrate

DEFAULT_DB = Path("profiles") / "edgeprof.db"
BUSY_TIMEOUT_MS = 10_000
SQLITE_MAGIC = b"SQLite format 3\x00"

SampleRow = tuple[str, int, str, str, float]  # run_id, t_ns, sensor, metric, value


def default_db_path() -> Path:
    return Path(os.environ.get("EDGEPROF_DB") or DEFAULT_DB)


def check_profile_file(path: Path) -> None:
    """Refuse, with the fix, a file that exists but is not (or not yet) a profile database."""
    if not path.exists() or path.stat().st_size == 0:
        return
    if path.is_dir():
        raise ProfileDBError(
            f"{path} is a directory; pass a database file such as {path}/edgeprof.db"
        )
    with path.open("rb") as f:
        head = f.read(len(SQLITE_MAGIC))
    if head != SQLITE_MAGIC:
        raise ProfileDBError(f"{path} is not an SQLite file; pass a profile database (.db)")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            tables = {
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
        finally:
            conn.close()
    except sqlite3.DatabaseError as e:
        raise ProfileDBError(f"{path} is corrupted ({e}); restore it from a copy") from e
    if tables and MIGRATIONS_TABLE not in tables:
        raise ProfileDBError(
            f"{path} is an SQLite database but not an edgeprof profile; pass another --db path"
        )


class Store:
    """A profile database. One per thread: SQLite connections are not shared across threads."""

    def __init__(self, path: Path | str, *, migrate_schema: bool = True) -> None:
        self.path = Path(path)
        check_profile_file(self.path)
        if self.path.parent and not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_MS / 1000)
            self.db = sqlite_utils.Database(conn)
            self.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute("PRAGMA synchronous = NORMAL")
            if migrate_schema:
                migrate(self.db)
        except sqlite3.DatabaseError as e:
            raise ProfileDBError(f"cannot open {self.path} ({e}); check the path and file") from e

    def close(self) -> None:
        self.db.close()

    def settle(self) -> None:
        """Commit a transaction that an interrupt left open.

        SQLite applies each statement whole, so what is in it is consistent. Without this,
        sqlite-utils would nest the next write in a savepoint of the open transaction and
        closing the connection would silently discard both.
        """
        if self.db.conn.in_transaction:
            try:
                self.db.conn.commit()
            except sqlite3.Error:
                self.db.conn.rollback()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writes --------------------------------------------------------------------------

    def upsert_device(self, device: dict[str, Any]) -> None:
        row = dict(device)
        row["accelerators"] = json.dumps(row.get("accelerators") or [])
        existing = self.db.table("devices").count_where("id = ?", [row["id"]])
        if existing:
            # Keep a bandwidth measured earlier when this profile did not measure one.
            if row.get("mem_bandwidth_gbs") is None:
                row.pop("mem_bandwidth_gbs", None)
            self.db.table("devices").update(row["id"], row)
        else:
            self.db.table("devices").insert(row)

    def insert_prompts(self, prompts: Iterable[dict[str, Any]]) -> None:
        self.db.table("prompts").insert_all(prompts, pk="id", ignore=True)

    def insert_run(self, run: dict[str, Any]) -> None:
        self.db.table("runs").insert(_jsonify(run, ("params", "environment")))

    def update_run(self, run_id: str, fields: dict[str, Any]) -> None:
        self.db.table("runs").update(run_id, _jsonify(fields, ("params", "environment")))

    def insert_request(self, row: dict[str, Any]) -> None:
        self.db.table("requests").insert(row)

    def insert_sensors(self, rows: Iterable[dict[str, Any]]) -> None:
        self.db.table("sensors").insert_all(rows, replace=True)

    def insert_samples(self, rows: Sequence[SampleRow]) -> None:
        # executemany on a prepared statement: several times faster than dict-based inserts.
        with self.db.conn:
            self.db.conn.executemany(
                "INSERT INTO samples (run_id, t_ns, sensor, metric, value) VALUES (?, ?, ?, ?, ?)",
                rows,
            )

    # -- reads ---------------------------------------------------------------------------

    def runs(self, run_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
        if run_ids:
            marks = ",".join("?" for _ in run_ids)
            rows = self.db.table("runs").rows_where(
                f"id IN ({marks})", list(run_ids), order_by="id"
            )
        else:
            rows = self.db.table("runs").rows_where(order_by="id")
        return [_unjsonify(r, ("params", "environment")) for r in rows]

    def resolve_run_id(self, prefix: str) -> str:
        """A run id or a unique prefix of one (ids are long; users type the first few chars)."""
        ids = [r[0] for r in self.db.execute("SELECT id FROM runs WHERE id LIKE ?", [prefix + "%"])]
        if len(ids) == 1:
            return str(ids[0])
        if not ids:
            raise ProfileDBError(
                f"no run {prefix!r} in {self.path}; list runs with `edgeprof report`"
            )
        raise ProfileDBError(
            f"run prefix {prefix!r} is ambiguous ({len(ids)} runs); type more of it"
        )

    def device(self, device_id: str) -> dict[str, Any] | None:
        rows = list(self.db.table("devices").rows_where("id = ?", [device_id]))
        if not rows:
            return None
        return _unjsonify(rows[0], ("accelerators",))

    def requests(self, run_id: str) -> list[dict[str, Any]]:
        return list(self.db.table("requests").rows_where("run_id = ?", [run_id], order_by="seq"))

    def sensors(self, run_id: str) -> list[dict[str, Any]]:
        return list(self.db.table("sensors").rows_where("run_id = ?", [run_id]))

    def samples(
        self,
        run_id: str,
        t_start_ns: int | None = None,
        t_end_ns: int | None = None,
        metrics: Sequence[str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        where = ["run_id = ?"]
        args: list[Any] = [run_id]
        if t_start_ns is not None:
            where.append("t_ns >= ?")
            args.append(t_start_ns)
        if t_end_ns is not None:
            where.append("t_ns <= ?")
            args.append(t_end_ns)
        if metrics:
            where.append(f"metric IN ({','.join('?' for _ in metrics)})")
            args.extend(metrics)
        return self.db.table("samples").rows_where(" AND ".join(where), args, order_by="t_ns")

    def count(self, table: str) -> int:
        return self.db.table(table).count


def open_store(path: Path | str | None = None) -> Store:
    return Store(path or default_db_path())


def _jsonify(row: dict[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    out = dict(row)
    for k in keys:
        if k in out and not isinstance(out[k], str) and out[k] is not None:
            out[k] = json.dumps(out[k], sort_keys=True)
    return out


def _unjsonify(row: dict[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    out = dict(row)
    for k in keys:
        if isinstance(out.get(k), str):
            with contextlib.suppress(json.JSONDecodeError):
                out[k] = json.loads(out[k])
    return out
