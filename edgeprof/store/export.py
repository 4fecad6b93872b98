"""Export a profile database to files: one CSV or JSONL file per table, or Parquet
partitioned by device (Hive style) so that many devices' exports share one directory.

`anonymize=True` drops hostnames, user names and local paths (model paths become file names);
labels, ids and measurements are kept.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from edgeprof.errors import UsageError
from edgeprof.store.share import TABLES, Row, open_profile_ro

FORMATS = ("csv", "jsonl", "parquet")
_HOME_RE = r"(?:/home/|/Users/|/var/home/)[^/\\\s\"':]+|/root|[A-Za-z]:\\+Users\\+[^\\\s\"':]+"
_SECRET_KEYS = {"hostname", "host", "user", "username", "login", "home", "cwd", "pwd", "node"}


class _Scrubber:
    """Drops hostnames, user names and local paths; keeps labels, ids and measurements."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        import getpass
        import re
        import socket

        self.re = re
        hosts = {socket.gethostname()}
        hosts |= {r[0] for r in conn.execute("SELECT hostname FROM devices") if r[0]}
        hosts |= {h.split(".")[0] for h in hosts}
        self.hosts = {h for h in hosts if h and h.lower() not in ("localhost", "")}
        texts = [
            str(v)
            for r in conn.execute("SELECT model_path, params, environment FROM runs")
            for v in r
            if v
        ]
        homes = {m for t in texts for m in re.findall(_HOME_RE, t)} | {str(Path.home())}
        homes.discard("/")
        self.users = {getpass.getuser()} | {re.split(r"[/\\]+", h)[-1] for h in homes}
        self.users.discard("")
        home_alt = "|".join(re.escape(h) for h in sorted(homes, key=len, reverse=True))
        self.home_re = re.compile(f"(?:{home_alt}|{_HOME_RE})(?=[/\\\\\\s\"':]|$)")
        host_alt = "|".join(re.escape(h) for h in sorted(self.hosts, key=len, reverse=True))
        self.host_re = (
            re.compile(rf"(?<![\w.-])(?:{host_alt})(?![\w-])", re.I) if host_alt else None
        )
        user_alt = "|".join(re.escape(u) for u in self.users)
        self.user_re = re.compile(rf"\b(?:{user_alt})\b", re.I) if user_alt else None
        self.memo: dict[str, str] = {}

    def text(self, value: str) -> str:
        out = self.memo.get(value)
        if out is None:
            out = self.home_re.sub("~", value)
            if self.host_re is not None:
                out = self.host_re.sub("<host>", out)
            if len(self.memo) < 100_000:
                self.memo[value] = out
        return out

    def _json(self, value: object) -> object:
        import json

        if not isinstance(value, str):
            return value
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return self.text(value)
        return json.dumps(self._walk(parsed), sort_keys=True)

    def _walk(self, v: object) -> object:
        """A parsed JSON value with secrets' keys dropped and every string anonymized."""
        if isinstance(v, dict):
            kept = {}
            for k, x in v.items():
                if str(k).lower() in _SECRET_KEYS:
                    continue
                y = self._walk(x)
                if y is not _DROP:
                    kept[k] = y
            return kept
        if isinstance(v, list):
            return [None if y is _DROP else y for y in (self._walk(x) for x in v)]
        if isinstance(v, str):
            if "/" in v or "\\" in v:
                v = self.text(v) if v.startswith(("http://", "https://")) else _file_name(v)
            if self.user_re is not None and self.user_re.search(v):
                return _DROP
            return self.text(v)
        return v

    def row(self, table: str, cols: list[str], row: tuple[object, ...]) -> tuple[object, ...]:
        out = list(row)
        for i, col in enumerate(cols):
            v = out[i]
            if table == "devices" and col == "hostname":
                out[i] = None
            elif table == "devices" and col == "label" and isinstance(v, str) and self._is_host(v):
                out[i] = f"device-{str(row[cols.index('id')])[:8]}"
            elif table in ("runs", "quality") and col == "model_path" and isinstance(v, str):
                out[i] = _file_name(v)
            elif table in ("runs", "quality") and col in ("params", "environment"):
                out[i] = self._json(v)
            elif isinstance(v, str):
                out[i] = self.text(v)
        return tuple(out)

    def _is_host(self, label: str) -> bool:
        return label.lower() in {h.lower() for h in self.hosts}


_DROP = object()


def _file_name(path: str) -> str:
    return path.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


def export(
    db: Path | str, fmt: str, out_dir: Path | str, anonymize: bool = False
) -> dict[str, Path]:
    """Write each profile table to `out_dir/<table>.<fmt>` (csv, jsonl), or for parquet to
    `out_dir/<table>/`, partitioned by device (see `_export_parquet`); return the file or
    directory of each table."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    if fmt == "parquet":
        _pyarrow()  # fail before writing anything
    conn = open_profile_ro(Path(db), role="database")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    try:
        scrub = _Scrubber(conn) if anonymize else None
        if fmt == "parquet":
            with _export_lock(out):
                return _export_parquet(conn, out, scrub)
        return _export_files(conn, fmt, out, scrub)
    finally:
        conn.close()


def _present(conn: sqlite3.Connection) -> dict[str, str]:
    """The profile tables this file has, each with its kind: "table", or "view" (a table kept
    in another form behind a view of its old columns, such as samples)."""
    kinds = dict(
        conn.execute("SELECT name, type FROM sqlite_master WHERE type IN ('table', 'view')")
    )
    return {t: str(kinds[t]) for t in TABLES if t in kinds}


def _columns(conn: sqlite3.Connection, table: str) -> tuple[list[str], list[str]]:
    info = list(conn.execute(f"PRAGMA table_info([{table}])"))
    return [r[1] for r in info], [str(r[2]).upper() for r in info]


def _export_files(
    conn: sqlite3.Connection, fmt: str, out: Path, scrub: _Scrubber | None
) -> dict[str, Path]:
    write = {"csv": _write_csv, "jsonl": _write_jsonl}[fmt]
    files: dict[str, Path] = {}
    for table, kind in _present(conn).items():
        cols, types = _columns(conn, table)
        order = " ORDER BY rowid" if kind == "table" else ""  # a view has no rowid
        cur = conn.execute(f"SELECT * FROM [{table}]{order}")
        rows = (scrub.row(table, cols, r) for r in cur) if scrub else iter(cur)
        files[table] = out / f"{table}.{fmt}"
        write(files[table], cols, types, rows)
    return files


# -- parquet: one directory per table, run-bearing tables partitioned by device ----------------

# Tables written whole: `id` is global (a fingerprint, a sha256), so the rows of several
# exports are merged by it. Every other table is split by device.
PLAIN_TABLES = ("devices", "prompts", "expectations")
PARTITION = "device_id"
PART_FILE = "part-0.parquet"
LOCK_FILE = ".edgeprof-export.lock"
NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"  # Hive's and Spark's name for a null key


@contextlib.contextmanager
def _export_lock(out: Path) -> Iterator[None]:
    """One export into `out` at a time (the plain tables are read, merged and rewritten)."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; exports there run one at a time
        yield
        return
    with (out / LOCK_FILE).open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _export_parquet(
    conn: sqlite3.Connection, out: Path, scrub: _Scrubber | None
) -> dict[str, Path]:
    """`out/devices/part-0.parquet` and `out/prompts/part-0.parquet`, merged by id with what an
    earlier export left there; every other table as `out/<table>/device_id=<id>/part-0.parquet`
    (Hive style: the column lives in the directory name, not in the file). A device's partition
    is replaced by each export of it: the new file is written beside it and renamed over it,
    so a reader sees the old file or the new one; a table where the device now has no rows
    loses its old partition. Rows that name no device (Hive's null partition) belong to no one
    export, so they are merged by id like the plain tables."""
    every = "SELECT id FROM devices UNION SELECT device_id FROM runs WHERE device_id IS NOT NULL"
    devices = [str(r[0]) for r in conn.execute(every)]
    files: dict[str, Path] = {}
    for table, kind in _present(conn).items():
        cols, types = _columns(conn, table)
        files[table] = out / table
        if table in PLAIN_TABLES:
            _merge_by_id(out / table / PART_FILE, cols, types, _rows(conn, table, cols, scrub))
            continue
        kept = [c for c in cols if c != PARTITION]
        kept_types = [types[cols.index(c)] for c in kept]
        for device in [*devices, None]:
            rows = _device_rows(conn, table, kind, cols, device)
            if scrub is not None:
                rows = (scrub.row(table, kept, r) for r in rows)
            path = out / table / f"{PARTITION}={_partition_name(device)}" / PART_FILE
            if device is None and "id" in kept:
                _merge_by_id(path, kept, kept_types, list(rows))
            elif device is not None:
                _replace_parquet(path, kept, kept_types, rows)
    return {table: path for table, path in files.items() if path.exists()}  # rows somewhere


def _partition_name(device_id: str | None) -> str:
    """The directory name of a device's partition: edgeprof's ids are hex; anything else a
    stranger's file holds is percent-encoded, as Hive does."""
    return NULL_PARTITION if device_id is None else quote(device_id, safe="")


def _rows(
    conn: sqlite3.Connection, table: str, cols: list[str], scrub: _Scrubber | None
) -> list[Row]:
    cur = conn.execute(f"SELECT * FROM [{table}] ORDER BY rowid")
    return [scrub.row(table, cols, r) for r in cur] if scrub else list(cur)


def _device_rows(
    conn: sqlite3.Connection, table: str, kind: str, cols: list[str], device: str | None
) -> Iterator[Row]:
    """`table`'s rows of one device (None: of no device), without its device_id column:
    directly where the table has one, else through its run."""
    kept = ", ".join(f"t.[{c}]" for c in cols if c != PARTITION)
    order = " ORDER BY t.rowid" if kind == "table" else ""
    owner = "t.device_id" if PARTITION in cols else "r.device_id"
    join = "" if PARTITION in cols else " JOIN runs r ON r.id = t.run_id"
    match, args = (f"{owner} IS NULL", ()) if device is None else (f"{owner} = ?", (device,))
    return iter(conn.execute(f"SELECT {kept} FROM [{table}] t{join} WHERE {match}{order}", args))


def _merge_by_id(path: Path, cols: list[str], types: list[str], rows: list[Row]) -> None:
    """These rows, and the rows an earlier export left in `path` whose id these lack."""
    if path.exists():
        import pyarrow.parquet as pq

        ids = {r[cols.index("id")] for r in rows}
        earlier = pq.read_table(path).to_pylist()
        rows = rows + [
            tuple(old.get(c) for c in cols) for old in earlier if old.get("id") not in ids
        ]
    _replace_parquet(path, cols, types, iter(rows))


def _replace_parquet(path: Path, cols: list[str], types: list[str], rows: Iterator[Row]) -> None:
    """Write `path` through a hidden temporary file and a rename; with no rows, remove it."""
    first = next(rows, None)
    if first is None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        with contextlib.suppress(OSError):  # not empty: something else lives there
            path.parent.rmdir()
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    # Readers skip names starting with "." (pyarrow, Spark) or not ending in .parquet (globs).
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        _write_parquet(tmp, cols, types, itertools.chain([first], rows))
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _write_csv(path: Path, cols: list[str], types: list[str], rows: Iterator[Row]) -> None:
    import csv

    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(cols)
        w.writerows(rows)


def _write_jsonl(path: Path, cols: list[str], types: list[str], rows: Iterator[Row]) -> None:
    import json

    with path.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(dict(zip(cols, r, strict=True)), ensure_ascii=False))
            f.write("\n")


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError as e:
        raise UsageError(
            "parquet export needs pyarrow; install it with `pip install 'edgeprof[parquet]'` "
            "or use `fmt` csv|jsonl"
        ) from e
    return pyarrow


def _write_parquet(path: Path, cols: list[str], types: list[str], rows: Iterator[Row]) -> None:
    pa = _pyarrow()
    import pyarrow.parquet as pq

    batches = _batches(rows, 65_536)
    first = next(batches, [])
    schema = pa.schema(
        [
            (c, _arrow_type(pa, t, [r[i] for r in first]))
            for i, (c, t) in enumerate(zip(cols, types, strict=True))
        ]
    )
    with pq.ParquetWriter(str(path), schema) as writer:
        for batch in itertools.chain([first], batches):
            arrays = [
                pa.array([b[i] for b in batch], type=schema.field(i).type) for i in range(len(cols))
            ]
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))


def _batches(rows: Iterator[Row], size: int) -> Iterator[list[Row]]:
    while batch := list(itertools.islice(rows, size)):
        yield batch


def _arrow_type(pa: Any, declared: str, sample: list[object]) -> Any:
    """The column's Arrow type from its SQLite declaration (SQLite's affinity rules); a view's
    computed column declares none, so its first rows decide."""
    if "INT" in declared:
        return pa.int64()
    if any(k in declared for k in ("REAL", "FLOA", "DOUB")):
        return pa.float64()
    if declared or not sample:
        return pa.string()
    seen = {type(v) for v in sample if v is not None}
    if seen and seen <= {int, bool}:
        return pa.int64()
    if seen and seen <= {int, float}:
        return pa.float64()
    return pa.string()
