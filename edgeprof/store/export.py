"""Export a profile database to files: one CSV, JSONL or Parquet file per table.

`anonymize=True` drops hostnames, user names and local paths (model paths become file names);
labels, ids and measurements are kept.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
    """Write each profile table to `out_dir/<table>.<fmt>`; return the files by table."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    write = {"csv": _write_csv, "jsonl": _write_jsonl, "parquet": _write_parquet}[fmt]
    if fmt == "parquet":
        _pyarrow()  # fail before writing anything
    conn = open_profile_ro(Path(db), role="database")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    try:
        scrub = _Scrubber(conn) if anonymize else None
        present = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        for table in (t for t in TABLES if t in present):
            info = list(conn.execute(f"PRAGMA table_info([{table}])"))
            cols = [r[1] for r in info]
            types = [str(r[2]).upper() for r in info]
            cur = conn.execute(f"SELECT * FROM [{table}] ORDER BY rowid")
            rows = (scrub.row(table, cols, r) for r in cur) if scrub else iter(cur)
            files[table] = out / f"{table}.{fmt}"
            write(files[table], cols, types, rows)
    finally:
        conn.close()
    return files


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

    def arrow_type(t: str) -> Any:
        if "INT" in t:
            return pa.int64()
        if any(k in t for k in ("REAL", "FLOA", "DOUB")):
            return pa.float64()
        return pa.string()

    schema = pa.schema([(c, arrow_type(t)) for c, t in zip(cols, types, strict=True)])
    with pq.ParquetWriter(str(path), schema) as writer:
        batch: list[Row] = []
        for r in itertools.chain(rows, [None]):
            if r is not None:
                batch.append(r)
            if batch and (r is None or len(batch) >= 65_536):
                arrays = [
                    pa.array([b[i] for b in batch], type=schema.field(i).type)
                    for i in range(len(cols))
                ]
                writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
                batch = []
