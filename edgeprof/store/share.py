"""Share profile databases: merge many into one, export the tables to files.

Runs, requests, prompts and devices have globally unique ids (ULIDs, sha256, fingerprints);
samples and sensors have none of their own, so they travel with their run: a run already in
the destination brings nothing twice, and merging the same file again adds nothing. A
sample's series gets a new id in the destination (`series` ids are per file): its series rows
are copied first, then its points through an id map, in the destination's key order.

A run found in both a source and the destination: the copy that got further wins, ranking
`running` < `aborted` = `failed` < `complete` (a snapshot taken mid-run loses to the finished
run; an interrupted run loses to a complete one). The winner's run row and all its requests,
sensors and samples replace the other's; on a tie the destination keeps its own. Apart from
ties, the result does not depend on the order of the sources.

The destination is never written in place: it is copied into a temporary file beside it,
the sources are merged into the copy, and the copy replaces it with one rename. Any refusal
(newer schema, corrupted file, not a profile) leaves the destination byte for byte as it was.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import sqlite_utils

from edgeprof.errors import ProfileDBError
from edgeprof.progress import ProgressFn
from edgeprof.store import migrations
from edgeprof.store.trust import DB_ERRORS, check_columns, check_schema, harden

TABLES = (
    "devices",
    "prompts",
    "runs",
    "requests",
    "sensors",
    "samples",
    "quality",
    "expectations",
    "grades",
)
# How far a run got; unknown statuses rank lowest.
STATUS_RANK = (
    "CASE {0} WHEN 'complete' THEN 2 WHEN 'failed' THEN 1 WHEN 'aborted' THEN 1 ELSE 0 END"
)

# (rows done, rows total, what is being copied).
Row = tuple[object, ...]


@dataclass
class MergeResult:
    dest: Path
    sources: list[Path]
    added: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 0))
    runs_replaced: int = 0
    devices_updated: int = 0
    # Runs still being written in their source: copied as they stood at that moment.
    in_progress: list[tuple[str, str]] = field(default_factory=list)  # (run id, source name)

    @property
    def changed(self) -> bool:
        return bool(sum(self.added.values()) or self.runs_replaced or self.devices_updated)


def ro_uri(path: Path) -> str:
    """Read-only URI. A closed WAL database (no -wal file) is opened immutable, because a plain
    read-only reader would leave empty -wal and -shm files beside someone's shared file."""
    mode = "mode=ro" if Path(f"{path}-wal").exists() else "mode=ro&immutable=1"
    return f"file:{quote(str(path.resolve()))}?{mode}"


def open_profile_ro(path: Path, *, role: str = "source") -> sqlite3.Connection:
    """Open a profile database read-only after checking it is one this edgeprof can read."""
    if not path.is_file():
        raise ProfileDBError(f"{role} {path} does not exist; check the path")
    if path.stat().st_size == 0:
        raise ProfileDBError(f"{role} {path} is empty; pass a database written by edgeprof")
    # Through SQLite only: closing a plain open() of a database file drops this process's
    # POSIX locks on it (see store.db.check_profile_file).
    conn = sqlite3.connect(ro_uri(path), uri=True)
    try:
        harden(conn)
        _check_profile(conn, path, role)
    except DB_ERRORS as e:
        conn.close()
        if "not a database" in str(e):
            raise ProfileDBError(
                f"{role} {path} is not an SQLite file; pass a profile database"
            ) from e
        raise ProfileDBError(
            f"{role} {path} is corrupted ({_one_line(str(e))}); restore it from a copy"
        ) from e
    except BaseException:
        conn.close()
        raise
    return conn


def _check_profile(conn: sqlite3.Connection, path: Path, role: str) -> None:
    """An edgeprof profile, of a schema this edgeprof reads, with nothing added and intact."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if migrations.MIGRATIONS_TABLE not in tables:
        raise ProfileDBError(
            f"{role} {path} is an SQLite database but not an edgeprof profile; "
            "pass a database written by edgeprof"
        )
    check_schema(conn, path, role)
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > migrations.SCHEMA_VERSION:
        raise ProfileDBError(
            f"{role} {path} has schema v{version}, newer than this edgeprof understands "
            f"(v{migrations.SCHEMA_VERSION}); upgrade edgeprof (pip install -U edgeprof)"
        )
    if not _needs_migration(conn):  # an older file gains its columns when migrated
        check_columns(conn, path, role)
    check = [r[0] for r in conn.execute("PRAGMA quick_check(3)")]
    if check != ["ok"]:
        raise ProfileDBError(
            f"{role} {path} is corrupted ({_one_line(check[0])}); restore it from a copy"
        )


def _one_line(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _needs_migration(conn: sqlite3.Connection) -> bool:
    if int(conn.execute("PRAGMA user_version").fetchone()[0]) < migrations.SCHEMA_VERSION:
        return True
    done = {r[0] for r in conn.execute(f"SELECT name FROM {migrations.MIGRATIONS_TABLE}")}
    return any(name not in done for name, _ in migrations.MIGRATIONS)


def _copy_db(src: sqlite3.Connection, dest_path: Path) -> None:
    # The backup API reads through a WAL, so committed but unchecked-pointed rows come along.
    dest = sqlite3.connect(str(dest_path))
    try:
        src.backup(dest)
    finally:
        dest.close()


def _migrate_file(path: Path, *, vacuum: bool = True) -> None:
    db = sqlite_utils.Database(sqlite3.connect(str(path)))
    try:
        migrations.migrate(db, vacuum=vacuum)
    finally:
        db.close()


def _prepare_source(path: Path, workdir: Path, n: int) -> Path:
    """Check a source; return what to attach: the file itself or a migrated temporary copy."""
    conn = open_profile_ro(path)
    try:
        if not _needs_migration(conn):
            return path
        copy = workdir / f"source-{n}.db"
        _copy_db(conn, copy)
    except DB_ERRORS as e:
        raise ProfileDBError(
            f"source {path} is corrupted ({_one_line(str(e))}); restore it from a copy"
        ) from e
    finally:
        conn.close()
    _migrate_file(copy, vacuum=False)  # read once, then deleted: compacting it buys nothing
    return copy


def _columns(conn: sqlite3.Connection, schema: str, table: str) -> list[str]:
    return [r[1] for r in conn.execute(f"PRAGMA {schema}.table_info([{table}])")]


def _shared_columns(conn: sqlite3.Connection, table: str) -> str:
    src = set(_columns(conn, "src", table))
    return ", ".join(f"[{c}]" for c in _columns(conn, "main", table) if c in src)


def _count(conn: sqlite3.Connection, schema: str, table: str) -> int:
    return int(conn.execute(f"SELECT count(*) FROM {schema}.[{table}]").fetchone()[0])


class _Merger:
    def __init__(self, conn: sqlite3.Connection, result: MergeResult, progress: ProgressFn | None):
        self.conn = conn
        self.result = result
        self.progress = progress
        self.done = 0
        self.total = 0

    def tick(self, rows: int, what: str) -> None:
        self.done += rows
        if self.progress:
            self.progress(what, min(self.done, self.total), self.total)

    def merge_source(self, attach: Path, label: str) -> None:
        c = self.conn
        c.execute("ATTACH DATABASE ? AS src", (ro_uri(attach),))
        try:
            c.execute("BEGIN")
            self._devices(label)
            self._insert_new("prompts", "INSERT OR IGNORE", "", label)
            self._pick_runs()
            self.result.in_progress += [
                (str(r[0]), label)
                for r in c.execute(
                    "SELECT id FROM src.runs WHERE status = 'running' "
                    "AND id IN (SELECT id FROM temp.merge_runs)"
                )
            ]
            self._insert_new(
                "runs", "INSERT", "WHERE id IN (SELECT id FROM temp.merge_runs)", label
            )
            for table in ("requests", "sensors"):
                where = "WHERE run_id IN (SELECT id FROM temp.merge_runs)"
                self._insert_new(table, "INSERT OR IGNORE", where, label)
            self._samples(label)
            self._insert_new("quality", "INSERT OR IGNORE", "", label)
            self._insert_new("expectations", "INSERT OR IGNORE", "", label)
            # Grades of every run the result holds: also those graded after an earlier merge.
            self._insert_new(
                "grades", "INSERT OR IGNORE", "WHERE run_id IN (SELECT id FROM main.runs)", label
            )
            c.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):  # the work file is discarded anyway
                c.execute("ROLLBACK")
            raise
        finally:
            with contextlib.suppress(sqlite3.Error):
                c.execute("DETACH DATABASE src")

    def _devices(self, label: str) -> None:
        cols = _shared_columns(self.conn, "devices")
        before = _count(self.conn, "main", "devices")
        # A bandwidth measured on one machine fills a gap in another's copy of the same device.
        cur = self.conn.execute(
            f"INSERT INTO main.devices ({cols}) SELECT {cols} FROM src.devices WHERE true "
            "ON CONFLICT(id) DO UPDATE SET mem_bandwidth_gbs = excluded.mem_bandwidth_gbs "
            "WHERE devices.mem_bandwidth_gbs IS NULL AND excluded.mem_bandwidth_gbs IS NOT NULL"
        )
        added = _count(self.conn, "main", "devices") - before
        self.result.added["devices"] += added
        self.result.devices_updated += max(cur.rowcount - added, 0)
        self.tick(_count(self.conn, "src", "devices"), f"{label}: devices")

    def _pick_runs(self) -> None:
        c = self.conn
        c.execute("CREATE TEMP TABLE IF NOT EXISTS merge_runs (id TEXT PRIMARY KEY, repl INT)")
        c.execute("DELETE FROM temp.merge_runs")
        c.execute(
            "INSERT INTO temp.merge_runs (id, repl) SELECT s.id, d.id IS NOT NULL "
            "FROM src.runs s LEFT JOIN main.runs d ON d.id = s.id "
            f"WHERE d.id IS NULL OR {STATUS_RANK.format('s.status')} > "
            f"{STATUS_RANK.format('d.status')}"
        )
        replaced = "SELECT id FROM temp.merge_runs WHERE repl"
        for table in ("requests", "sensors", "grades"):
            c.execute(f"DELETE FROM main.[{table}] WHERE run_id IN ({replaced})")
        # Every series of a run coming in goes: a replaced run's, and any left without their
        # run row (the incoming run's samples replace them, as its requests do).
        gone = "SELECT id FROM main.series WHERE run_id IN (SELECT id FROM temp.merge_runs)"
        c.execute(f"DELETE FROM main.sample_points WHERE series_id IN ({gone})")
        c.execute("DELETE FROM main.series WHERE run_id IN (SELECT id FROM temp.merge_runs)")
        cur = c.execute(f"DELETE FROM main.runs WHERE id IN ({replaced})")
        self.result.runs_replaced += max(cur.rowcount, 0)
        self.result.added["runs"] -= max(cur.rowcount, 0)  # re-inserted below; not new rows

    def _insert_new(self, table: str, verb: str, where: str, label: str) -> None:
        cols = _shared_columns(self.conn, table)
        cur = self.conn.execute(
            f"{verb} INTO main.[{table}] ({cols}) SELECT {cols} FROM src.[{table}] {where}"
        )
        self.result.added[table] += max(cur.rowcount, 0)
        self.tick(_count(self.conn, "src", table), f"{label}: {table}")

    def _samples(self, label: str) -> None:
        """Series with new ids (appended in the source's id order, so the map is monotonic),
        then each series' points, one range scan of the source appended at the end of the
        destination's key: every page written once, no index probed at random."""
        c = self.conn
        c.execute(
            "INSERT INTO main.series (run_id, sensor, metric) SELECT run_id, sensor, metric "
            "FROM src.series WHERE run_id IN (SELECT id FROM temp.merge_runs) ORDER BY id"
        )
        c.execute(
            "CREATE TEMP TABLE IF NOT EXISTS series_map (src_id INTEGER PRIMARY KEY, dest_id INT)"
        )
        c.execute("DELETE FROM temp.series_map")
        c.execute(
            "INSERT INTO temp.series_map (src_id, dest_id) SELECT s.id, d.id FROM src.series s "
            "JOIN main.series d ON d.run_id = s.run_id AND d.sensor = s.sensor "
            "AND d.metric = s.metric WHERE s.run_id IN (SELECT id FROM temp.merge_runs)"
        )
        pairs = c.execute("SELECT src_id, dest_id FROM temp.series_map ORDER BY src_id")
        copied = 0
        # One statement per series keeps the progress bar moving on a pooled file.
        for src_id, dest_id in pairs.fetchall():
            cur = c.execute(
                "INSERT INTO main.sample_points (series_id, t_ns, value) "
                "SELECT ?, t_ns, value FROM src.sample_points WHERE series_id = ? ORDER BY t_ns",
                (dest_id, src_id),
            )
            copied += max(cur.rowcount, 0)
            self.tick(max(cur.rowcount, 0), f"{label}: samples")
        self.result.added["samples"] += copied
        # Samples of runs not taken (already here, as far or further) count as done too.
        self.tick(max(_count(c, "src", "sample_points") - copied, 0), f"{label}: samples")


def _source_units(attach: Path) -> int:
    conn = sqlite3.connect(ro_uri(attach), uri=True)
    try:
        n = sum(_count(conn, "main", t) for t in TABLES if t != "samples")
        return n + _count(conn, "main", "sample_points")
    finally:
        conn.close()


# SQLite's unix VFS: every open connection to a WAL database holds a read lock on this range
# of the database file for as long as it is open (os_unix.c: SHARED_FIRST, SHARED_SIZE).
_SHARED_FIRST, _SHARED_SIZE = 0x40000000 + 2, 510


def open_elsewhere(path: Path) -> bool:
    """Whether another process has `path` open through SQLite, asked of the OS's locks.

    Probing reads nothing and writes nothing: the file stays byte for byte as it was. Where the
    OS has no POSIX locks (Windows), this cannot tell, and answers False.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, _SHARED_SIZE, _SHARED_FIRST)
    except OSError:
        return True
    else:
        fcntl.lockf(fd, fcntl.LOCK_UN, _SHARED_SIZE, _SHARED_FIRST)
        return False
    finally:
        # Closing drops this process's locks on the file: none are held here by SQLite, since
        # merge checks the destination before opening any connection to it.
        os.close(fd)


def _refuse_if_open(dest: Path) -> None:
    """A profile still writing the destination would go on writing into the replaced file, and
    every row after the rename would be lost: refuse, before any work."""
    if open_elsewhere(dest):
        raise ProfileDBError(
            f"{dest} is open in another process (a profile still running?); retry when it "
            "ends, or merge into another file"
        )


def _settle_wal(dest: Path) -> None:
    """Fold a leftover write-ahead log into the old file, so it is not replayed onto the new one."""
    wal = Path(f"{dest}-wal")
    if not wal.exists() or wal.stat().st_size == 0:
        return
    conn = sqlite3.connect(str(dest))
    try:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        conn.close()
    if busy or (wal.exists() and wal.stat().st_size > 0):
        raise ProfileDBError(
            f"{dest} is open in another process (a profile still running?); retry when it ends"
        )


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def merge(
    sources: Sequence[Path | str], dest: Path | str, progress: ProgressFn | None = None
) -> MergeResult:
    """Merge profile databases into `dest` (created if absent); see the module doc for the rule."""
    dest = Path(dest)
    srcs = [Path(s) for s in sources]
    if not srcs:
        raise ProfileDBError("no source databases given; pass one or more SRC.db files")
    if dest.is_dir():
        raise ProfileDBError(f"{dest} is a directory; pass a database file such as {dest}/all.db")
    dest.parent.mkdir(parents=True, exist_ok=True)
    result = MergeResult(dest=dest, sources=srcs)
    dest_exists = dest.exists() and dest.stat().st_size > 0
    if dest_exists:
        _refuse_if_open(dest)
    _merge_into(srcs, dest, dest_exists, result, progress)
    return result


def _merge_into(
    srcs: list[Path],
    dest: Path,
    dest_exists: bool,
    result: MergeResult,
    progress: ProgressFn | None,
) -> None:
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{dest.name}.merge-") as tmp:
        workdir = Path(tmp)
        # Check every source before any work, so a bad one costs nothing.
        attach = [_prepare_source(s, workdir, i) for i, s in enumerate(srcs)]
        work = workdir / "dest.db"
        dest_migrated = False
        if dest_exists:
            conn = open_profile_ro(dest, role="destination")
            try:
                dest_migrated = _needs_migration(conn)
                _copy_db(conn, work)
            finally:
                conn.close()
        _migrate_file(work)
        conn = sqlite3.connect(f"file:{quote(str(work))}", uri=True, isolation_level=None)
        harden(conn)
        try:
            # A throwaway file until the rename: no journal, no fsync per commit.
            conn.execute("PRAGMA journal_mode = OFF")
            conn.execute("PRAGMA synchronous = OFF")
            conn.execute("PRAGMA cache_size = -65536")
            merger = _Merger(conn, result, progress)
            merger.total = sum(_source_units(a) for a in attach)
            for src, a in zip(srcs, attach, strict=True):
                try:
                    merger.merge_source(a, src.name)
                except DB_ERRORS as e:
                    raise ProfileDBError(
                        f"source {src} could not be merged ({_one_line(str(e))}); "
                        f"check it with `sqlite3 {src} 'PRAGMA integrity_check'`"
                    ) from e
            conn.execute("PRAGMA journal_mode = DELETE")
        finally:
            conn.close()
        if dest_exists and not result.changed and not dest_migrated:
            return  # nothing new: leave the destination untouched
        _fsync(work)
        if dest_exists:
            os.chmod(work, stat.S_IMODE(dest.stat().st_mode))
            _refuse_if_open(dest)  # again: a profile may have started on it meanwhile
            _settle_wal(dest)
        else:
            os.chmod(work, 0o644 & ~_umask())
        os.replace(work, dest)
        _fsync_dir(dest.parent)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be fsynced
        _fsync(path)
