"""The profile database: open (WAL, busy timeout, migrations), insert, query."""

from __future__ import annotations

import contextlib
import functools
import heapq
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, ParamSpec, TypeVar, cast

import sqlite_utils

from edgeprof.errors import ProfileDBError
from edgeprof.store.migrations import MIGRATIONS_TABLE, insert_points_nudging, migrate
from edgeprof.store.rows import QualityRow, RequestRow, RunRow, SensorRow
from edgeprof.store.trust import DB_ERRORS, check_columns, check_schema, harden

DEFAULT_DB = Path("profiles") / "edgeprof.db"
BUSY_TIMEOUT_MS = 10_000

SampleRow = tuple[str, int, str, str, float]  # run_id, t_ns, sensor, metric, value
P = ParamSpec("P")
R = TypeVar("R")


def default_db_path() -> Path:
    return Path(os.environ.get("EDGEPROF_DB") or DEFAULT_DB)


def check_profile_file(path: Path) -> None:
    """Refuse, with the fix, a file that exists but is not (or not yet) a profile database.

    The file is read through SQLite only, never with open(): closing any other descriptor of a
    database file drops every POSIX lock this process holds on it, so another process's last
    connection could then checkpoint and delete the WAL under this process's open
    connections, and their later commits would vanish (SQLite's "how to corrupt" §2.2).
    """
    if not path.exists() or (path.is_file() and path.stat().st_size == 0):
        return
    if path.is_dir():
        raise ProfileDBError(
            f"{path} is a directory; pass a database file such as {path}/edgeprof.db"
        )
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            tables = {
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
        finally:
            conn.close()
    except DB_ERRORS as e:
        if "not a database" in str(e):
            raise ProfileDBError(
                f"{path} is not an SQLite file; pass a profile database (.db)"
            ) from e
        raise ProfileDBError(f"{path} is corrupted ({e}); restore it from a copy") from e
    if tables and MIGRATIONS_TABLE not in tables:
        raise ProfileDBError(
            f"{path} is an SQLite database but not an edgeprof profile; pass another --db path"
        )


def write_problem(e: Exception) -> str:
    """What went wrong with a write, in words that point at the fix."""
    text = str(e)
    if "disk is full" in text or "disk I/O error" in text:
        # EFBIG from a file size limit reaches SQLite as an I/O error, ENOSPC as "full".
        return f"no space left on its disk, or a file size limit was hit ({text}); free space"
    if "readonly" in text or "read-only" in text:
        return f"the file is read-only ({text}); make it writable"
    if "locked" in text or "busy" in text:
        return f"another process kept it locked for over {BUSY_TIMEOUT_MS // 1000} s ({text})"
    return text


def _naming_the_file(
    errors: tuple[type[Exception], ...], explain: Callable[[Path, Exception], ProfileDBError]
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """A Store method whose SQLite error becomes a ProfileDBError naming the file and the fix."""

    def decorate(method: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(method)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return method(*args, **kwargs)
            except errors as e:
                store = args[0]
                assert isinstance(store, Store)
                raise explain(store.path, e) from e

        return wrapper

    return decorate


def cannot_write(path: Path, e: Exception) -> ProfileDBError:
    return ProfileDBError(f"cannot write {path}: {write_problem(e)}, or pass another `db` path")


def damaged(path: Path, e: Exception) -> ProfileDBError:
    text = " ".join(str(e).split())[:160]
    return ProfileDBError(f"{path} is damaged ({text}); restore it from a copy")


_writes = _naming_the_file((sqlite3.OperationalError,), cannot_write)
_reads = _naming_the_file(DB_ERRORS, damaged)


class Store:
    """A profile database. One per thread: SQLite connections are not shared across threads."""

    def __init__(self, path: Path | str, *, migrate_schema: bool = True) -> None:
        self.path = Path(path)
        check_profile_file(self.path)
        if self.path.parent and not self.path.parent.exists():
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise ProfileDBError(
                    f"cannot create {self.path.parent} ({e.strerror}); pass another `db` path"
                ) from e
        self.reaped: list[tuple[str, str]] = []
        self._series_ids: dict[tuple[str, str, str], int] = {}
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                self._open(migrate_schema)
                break
            except sqlite3.OperationalError as e:
                # Switching a new file to WAL takes an exclusive lock that SQLite does not wait
                # for: several processes creating one database together retry here.
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise self._cannot_open(e) from e
                self.db.close()
                time.sleep(0.05)
            except DB_ERRORS as e:
                raise self._cannot_open(e) from e

    def _open(self, migrate_schema: bool) -> None:
        conn = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_MS / 1000)
        self.db = sqlite_utils.Database(conn)
        harden(conn)
        check_schema(conn, self.path)
        self.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = NORMAL")
        if migrate_schema:
            migrate(self.db)
            check_columns(conn, self.path)
            self.reaped = self._reap()

    def _cannot_open(self, e: Exception) -> ProfileDBError:
        return ProfileDBError(
            f"cannot open {self.path} ({write_problem(e)}); check the path and file"
        )

    def close(self) -> None:
        self.db.close()

    def _reap(self) -> list[tuple[str, str]]:
        """Runs left `running` by a process that is gone become `aborted` (store.liveness)."""
        from edgeprof.store.liveness import reap_orphaned_runs

        try:
            return reap_orphaned_runs(self.db.conn)
        except sqlite3.OperationalError:  # a read-only copy: report what it holds as it is
            return []

    @_writes
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
                self.db.conn.rollback()  # never leave it open; and say that it was lost
                raise

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writes --------------------------------------------------------------------------

    @_writes
    def upsert_device(self, device: dict[str, Any]) -> None:
        row = dict(device)
        row["accelerators"] = json.dumps(row.get("accelerators") or [])
        cols = [c for c in row if c in self.db.table("devices").columns_dict]
        updates = ", ".join(
            # Keep a bandwidth measured earlier when this profile did not measure one.
            f"[{c}] = coalesce(excluded.[{c}], devices.[{c}])"
            if c == "mem_bandwidth_gbs"
            else f"[{c}] = excluded.[{c}]"
            for c in cols
            if c != "id"
        )
        # One statement: two runs starting together on a new device must not both insert it.
        with self.db.conn:
            self.db.conn.execute(
                f"INSERT INTO devices ({', '.join(f'[{c}]' for c in cols)}) "
                f"VALUES ({', '.join('?' for _ in cols)}) "
                f"ON CONFLICT(id) DO UPDATE SET {updates}",
                [row[c] for c in cols],
            )

    @_writes
    def insert_prompts(self, prompts: Iterable[dict[str, Any]]) -> None:
        self.db.table("prompts").insert_all(prompts, pk="id", ignore=True)

    @_writes
    def insert_run(self, run: dict[str, Any]) -> None:
        self.db.table("runs").insert(_jsonify(run, ("params", "environment")))

    @_writes
    def update_run(self, run_id: str, fields: dict[str, Any]) -> None:
        self.db.table("runs").update(run_id, _jsonify(fields, ("params", "environment")))

    @_writes
    def heartbeat(self, run_id: str) -> None:
        with self.db.conn:
            self.db.conn.execute(
                "UPDATE runs SET heartbeat_unix_s = ? WHERE id = ?", (time.time(), run_id)
            )

    @_writes
    def insert_request(self, row: dict[str, Any]) -> None:
        self.db.table("requests").insert(row)

    @_writes
    def insert_sensors(self, rows: Iterable[dict[str, Any]]) -> None:
        self.db.table("sensors").insert_all(rows, replace=True)

    @_writes
    def insert_samples(self, rows: Sequence[SampleRow]) -> None:
        """Write (run_id, t_ns, sensor, metric, value) rows in one transaction.

        Each (run, sensor, metric) is a `series` row, made the first time it is seen and
        remembered here; a sample is (series_id, t_ns, value). A second read of one series at
        a t_ns it already holds is kept, 1 ns later (migrations.insert_points_nudging): a
        run never fails, nor loses a row, over two reads in one clock tick.
        """
        if not rows:
            return
        conn = self.db.conn
        known = self._series_ids
        new = {(r[0], r[2], r[3]) for r in rows} - known.keys()
        with conn:
            # The first statement writes, so the transaction takes the write lock (waiting out
            # the busy timeout) before it reads anything another writer could change.
            ids = dict(known)
            if new:
                conn.executemany(
                    "INSERT INTO series (run_id, sensor, metric) VALUES (?, ?, ?) "
                    "ON CONFLICT DO NOTHING",
                    sorted(new),
                )
                for key in new:
                    ids[key] = conn.execute(
                        "SELECT id FROM series WHERE run_id = ? AND sensor = ? AND metric = ?", key
                    ).fetchone()[0]
            points = [(ids[(r[0], r[2], r[3])], r[1], r[4]) for r in rows]
            conn.execute("SAVEPOINT points")
            try:
                # executemany on a prepared statement: several times faster than dict inserts.
                conn.executemany(
                    "INSERT INTO sample_points (series_id, t_ns, value) VALUES (?, ?, ?)", points
                )
            except sqlite3.IntegrityError:
                conn.execute("ROLLBACK TO points")
                insert_points_nudging(conn, points)
            conn.execute("RELEASE points")
        # Only ids that were committed: a rolled-back series row may be reused by another.
        self._series_ids = ids

    @_writes
    def insert_quality(self, row: QualityRow) -> None:
        self.db.table("quality").insert(_jsonify(dict(row), ("environment",)))

    # -- reads ---------------------------------------------------------------------------

    @_reads
    def quality(
        self,
        where: str = "",
        args: Sequence[Any] = (),
    ) -> list[QualityRow]:
        """Quality rows, newest first; `where` filters with `?` placeholders."""
        rows = self.db.table("quality").rows_where(where or None, list(args), order_by="id desc")
        return [cast(QualityRow, _unjsonify(r, ("environment",))) for r in rows]

    @_reads
    def runs(self, run_ids: Sequence[str] | None = None) -> list[RunRow]:
        if run_ids:
            marks = ",".join("?" for _ in run_ids)
            rows = self.db.table("runs").rows_where(
                f"id IN ({marks})", list(run_ids), order_by="id"
            )
        else:
            rows = self.db.table("runs").rows_where(order_by="id")
        return [cast(RunRow, _unjsonify(r, ("params", "environment"))) for r in rows]

    @_reads
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

    @_reads
    def device(self, device_id: str) -> dict[str, Any] | None:
        rows = list(self.db.table("devices").rows_where("id = ?", [device_id]))
        if not rows:
            return None
        return _unjsonify(rows[0], ("accelerators",))

    @_reads
    def requests(self, run_id: str) -> list[RequestRow]:
        rows = self.db.table("requests").rows_where("run_id = ?", [run_id], order_by="seq")
        return [cast(RequestRow, r) for r in rows]

    @_reads
    def sensors(self, run_id: str) -> list[SensorRow]:
        return [
            cast(SensorRow, r) for r in self.db.table("sensors").rows_where("run_id = ?", [run_id])
        ]

    def samples(
        self,
        run_id: str,
        t_start_ns: int | None = None,
        t_end_ns: int | None = None,
        metrics: Sequence[str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """A run's samples as dicts (run_id, t_ns, sensor, metric, value), by t_ns (then
        series). The run's series (filtered by metric) come from their unique index; each
        one's points are a range of sample_points' key, already in time order, merged here:
        a metric the run never read costs one index probe, and no read sorts."""
        series_sql, series_args = series_query(run_id, metrics)
        points_sql, points_args = points_query(t_start_ns, t_end_ns)
        conn = self.db.conn
        try:
            found = conn.execute(series_sql, series_args).fetchall()
            streams = [
                _points(run_id, sensor, metric, conn.execute(points_sql, [sid, *points_args]))
                for sid, sensor, metric in found
            ]
            yield from streams[0] if len(streams) == 1 else heapq.merge(*streams, key=_t_ns)
        except DB_ERRORS as e:
            raise damaged(self.path, e) from e

    @_reads
    def count(self, table: str) -> int:
        if table == "samples":  # the view's rows, without joining every one to its series
            return int(self.db.execute("SELECT count(*) FROM sample_points").fetchone()[0])
        return self.db.table(table).count


def series_query(run_id: str, metrics: Sequence[str] | None = None) -> tuple[str, list[Any]]:
    """A run's series (id, sensor, metric), by id, through UNIQUE (run_id, sensor, metric)."""
    sql = "SELECT id, sensor, metric FROM series WHERE run_id = ?"
    if metrics:
        sql += f" AND metric IN ({','.join('?' for _ in metrics)})"
    return sql + " ORDER BY id", [run_id, *(metrics or ())]


def points_query(t_start_ns: int | None, t_end_ns: int | None) -> tuple[str, list[Any]]:
    """One series' (t_ns, value) in time order: a range of the primary key, the series id the
    first parameter."""
    sql = "SELECT t_ns, value FROM sample_points WHERE series_id = ?"
    args: list[Any] = []
    if t_start_ns is not None:
        sql += " AND t_ns >= ?"
        args.append(t_start_ns)
    if t_end_ns is not None:
        sql += " AND t_ns <= ?"
        args.append(t_end_ns)
    return sql + " ORDER BY t_ns", args


def _points(
    run_id: str, sensor: str, metric: str, rows: Iterable[tuple[int, float]]
) -> Iterator[dict[str, Any]]:
    for t_ns, value in rows:
        yield {"run_id": run_id, "t_ns": t_ns, "sensor": sensor, "metric": metric, "value": value}


def _t_ns(row: dict[str, Any]) -> int:
    return int(row["t_ns"])


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
