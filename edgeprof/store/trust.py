"""Opening a profile database that came from someone else.

Sharing is the point of profile databases, so every file is opened as if a stranger wrote it:
- `trusted_schema = OFF`: functions and virtual tables named in its schema do not run;
- SQLite's defensive mode where Python exposes it (3.12+): no writing to the schema by hand;
- a length limit on every value read, so one giant string cannot exhaust memory;
- no triggers and no views but edgeprof's own `samples` view, word for word: a trigger in a file
  that is merged or reported on would run with this user's rights on this user's files.
"""

from __future__ import annotations

import functools
import sqlite3

from edgeprof.errors import ProfileDBError

# What reading a damaged file can raise: SQLite's errors, and a UnicodeDecodeError when the
# error message itself quotes the damaged bytes (a malformed schema, say).
DB_ERRORS: tuple[type[Exception], ...] = (sqlite3.DatabaseError, UnicodeDecodeError)
MAX_VALUE_BYTES = 64 * 2**20  # an output text or params blob is a few KB; 64 MiB is absurd


def _lenient_text(raw: bytes) -> str:
    # SQLite stores whatever bytes a writer gave it; one invalid UTF-8 sequence in a label
    # must not make the whole file unreadable.
    return raw.decode("utf-8", "replace")


def harden(conn: sqlite3.Connection) -> None:
    conn.text_factory = _lenient_text
    conn.execute("PRAGMA trusted_schema = OFF")
    # getattr: the names exist only on newer Pythons (3.12 and 3.11), checked here at run time.
    if hasattr(conn, "setconfig"):
        conn.setconfig(getattr(sqlite3, "SQLITE_DBCONFIG_DEFENSIVE"), True)  # noqa: B009
    if hasattr(conn, "setlimit"):
        conn.setlimit(getattr(sqlite3, "SQLITE_LIMIT_LENGTH"), MAX_VALUE_BYTES)  # noqa: B009


def _words(sql: object) -> list[str]:
    return str(sql or "").split()


def foreign_objects(conn: sqlite3.Connection, schema: str = "main") -> list[str]:
    """Triggers and views in `schema` that edgeprof did not create, as "trigger NAME" /
    "view NAME". The one view edgeprof makes (m007's `samples`) passes only as written."""
    from edgeprof.store.migrations import SAMPLES_VIEW_SQL

    rows = conn.execute(
        f"SELECT type, name, sql FROM {schema}.sqlite_master "
        "WHERE type IN ('trigger', 'view') ORDER BY type, name"
    ).fetchall()
    own = _words(SAMPLES_VIEW_SQL)
    return [
        f"{kind} {name}"
        for kind, name, sql in rows
        if not (kind == "view" and name == "samples" and _words(sql) == own)
    ]


def check_schema(conn: sqlite3.Connection, path: object, role: str = "database") -> None:
    found = foreign_objects(conn)
    if found:
        shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
        raise ProfileDBError(
            f"{role} {path} carries {shown}, which edgeprof never creates; refusing to open it "
            "(a trigger would run on your machine); ask its author for a clean copy"
        )


@functools.cache
def expected_columns() -> dict[str, frozenset[str]]:
    """Every table (and view) and column the migrations create, from a scratch database."""
    import sqlite_utils

    from edgeprof.store.migrations import migrate

    db = sqlite_utils.Database(memory=True)
    migrate(db)
    names = [*db.table_names(), *db.view_names()]
    return {n: frozenset(r[1] for r in db.execute(f"PRAGMA table_info([{n}])")) for n in names}


def check_columns(conn: sqlite3.Connection, path: object, role: str = "database") -> None:
    """A file at this edgeprof's schema version has every column the migrations create; one
    that lacks some was damaged (or hand-edited), and reading it would fail somewhere deep."""
    for table, wanted in expected_columns().items():
        have = {r[1] for r in conn.execute(f"PRAGMA table_info([{table}])")}
        missing = sorted(wanted - have)
        if missing:
            what = f"table {table}" if not have else f"{table}.{', '.join(missing[:3])}"
            raise ProfileDBError(
                f"{role} {path} is damaged: {what} is missing; restore it from a copy"
            )
