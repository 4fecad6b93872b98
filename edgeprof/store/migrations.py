"""Schema migrations: named functions applied once each, in order, each in its own transaction.

Applied names are recorded in `_migrations`; `PRAGMA user_version` holds the schema version so
that a reader can refuse a database written by a newer edgeprof. Never rename or reorder a
migration; add a new one.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable

import sqlite_utils

from edgeprof.errors import ProfileDBError

Migration = Callable[[sqlite_utils.Database], None]
Point = tuple[int, int, float]  # series_id, t_ns, value
MIGRATIONS: list[tuple[str, Migration]] = []
MIGRATIONS_TABLE = "_migrations"


def migration(fn: Migration) -> Migration:
    MIGRATIONS.append((fn.__name__, fn))
    return fn


@migration
def m001_initial(db: sqlite_utils.Database) -> None:
    db.table("devices").create(
        {
            "id": str,  # stable fingerprint hash
            "label": str,
            "hostname": str,
            "cpu_model": str,
            "cores": int,
            "threads": int,
            "ram_bytes": int,
            "os": str,
            "arch": str,
            "accelerators": str,  # JSON list
            "mem_bandwidth_gbs": float,
        },
        pk="id",
        if_not_exists=True,
    )
    db.table("runs").create(
        {
            "id": str,  # ULID: time-ordered, globally unique
            "device_id": str,
            "backend": str,
            "target": str,  # model file name or endpoint model name
            "model_path": str,
            "model_sha256": str,
            "model_size_bytes": int,
            "quant": str,
            "label": str,
            "prompt_suite": str,
            "params": str,  # JSON: threads, ctx, max_tokens, repetitions, ...; never secrets
            "environment": str,  # JSON: library versions, python, edgeprof
            "edgeprof_version": str,
            "started_at": str,  # ISO 8601 UTC
            "ended_at": str,
            "status": str,  # running | complete | aborted | failed
            "error": str,
            "idle_power_w": float,
            "idle_method": str,
            "load_s": float,
            "load_energy_j": float,
            "recorder_hz": float,
            "recorder_cpu_s_per_s": float,  # the sampling thread's own CPU cost
            "t0_ns": int,  # perf_counter_ns at run start: samples and requests are relative to it
        },
        pk="id",
        foreign_keys=[("device_id", "devices", "id")],
        if_not_exists=True,
    )
    db.table("prompts").create(
        {"id": str, "suite": str, "name": str, "text": str}, pk="id", if_not_exists=True
    )
    db.table("requests").create(
        {
            "id": str,
            "run_id": str,
            "prompt_id": str,
            "seq": int,  # order within the run
            "repetition": int,
            "warmup": int,  # 1: recorded, excluded from statistics
            "input_tokens": int,
            "output_tokens": int,
            "token_count_method": str,
            "t_start_ns": int,  # relative to runs.t0_ns
            "t_end_ns": int,
            "ttft_s": float,
            "prefill_tps": float,
            "decode_tps": float,
            "e2e_s": float,
            "itl_p50_s": float,
            "itl_p90_s": float,
            "itl_p99_s": float,
            "finish_reason": str,
            "energy_j": float,
            "energy_net_j": float,
            "energy_method": str,
            "avg_power_w": float,
            "peak_rss_bytes": int,
            "cost_usd": float,
            "output_text": str,
            "error": str,
        },
        pk="id",
        foreign_keys=[("run_id", "runs", "id"), ("prompt_id", "prompts", "id")],
        if_not_exists=True,
    )
    db.table("samples").create(
        {"run_id": str, "t_ns": int, "sensor": str, "metric": str, "value": float},
        if_not_exists=True,
    )
    db.table("sensors").create(
        {
            "run_id": str,
            "sensor": str,
            "metric": str,
            "domain": str,
            "unit": str,
            "method": str,
            "detail": str,
        },
        pk=("run_id", "sensor", "metric"),
        if_not_exists=True,
    )
    db.table("requests").create_index(["run_id"], if_not_exists=True)
    db.table("samples").create_index(["run_id", "t_ns"], if_not_exists=True)


@migration
def m002_request_peak_power(db: sqlite_utils.Database) -> None:
    requests = db.table("requests")
    if "peak_power_w" not in requests.columns_dict:
        requests.add_column("peak_power_w", float)


@migration
def m003_run_target_kind(db: sqlite_utils.Database) -> None:
    """runs.target_kind: "device" or "remote", from the backend class that made the run.

    Runs recorded before this column existed came from the built-in backends only, so their
    kind follows from the backend's name; from here on the backend itself says.
    """
    runs = db.table("runs")
    if "target_kind" not in runs.columns_dict:
        runs.add_column("target_kind", str)
    db.execute(
        "UPDATE runs SET target_kind = CASE WHEN backend IN ('openai', 'anthropic') "
        "THEN 'remote' ELSE 'device' END WHERE target_kind IS NULL"
    )


@migration
def m004_liveness_and_retries(db: sqlite_utils.Database) -> None:
    """Runs: who is writing them (`pid` on `host_id`) and a heartbeat, so a run whose process
    died is marked aborted instead of `running` forever. Requests: how many attempts a remote
    request took and how long it waited between them, and its TTFT from the final attempt."""
    runs, requests = db.table("runs"), db.table("requests")
    for name, kind in (("pid", int), ("host_id", str), ("heartbeat_unix_s", float)):
        if name not in runs.columns_dict:
            runs.add_column(name, kind)
    for name, kind in (("attempts", int), ("retry_wait_s", float), ("ttft_final_attempt_s", float)):
        if name not in requests.columns_dict:
            requests.add_column(name, kind)


@migration
def m005_quality(db: sqlite_utils.Database) -> None:
    """What a model variant loses, measured by `edgeprof quality` on a text.

    `model_sha256`, `backend` and `quant` mean what they mean in `runs` (an ONNX export's
    model_sha256 is its source GGUF's), so a quality row joins the runs of the same target;
    `file_sha256` is the evaluated file's own. One row per evaluation; rows are only written
    complete. Reused when target, reference, text and ctx match.
    """
    db.table("quality").create(
        {
            "id": str,  # ULID
            "device_id": str,  # where it was computed: numerics differ slightly by CPU
            "created_at": str,
            "edgeprof_version": str,
            "target": str,
            "model_path": str,
            "backend": str,
            "quant": str,
            "model_sha256": str,
            "file_sha256": str,
            "size_bytes": int,
            "reference": str,
            "reference_sha256": str,
            "reference_note": str,  # "reference: dequantized from Q4_1"
            "text_name": str,
            "text_sha256": str,
            "text_tokens": int,
            "ctx": int,
            "n_chunks": int,
            "n_scored": int,
            "ppl": float,
            "ppl_se": float,
            "ref_ppl": float,
            "ref_ppl_se": float,
            "delta_ppl": float,
            "delta_ppl_pct": float,
            "delta_ppl_pct_se": float,
            "kld_mean": float,
            "kld_se": float,
            "kld_p99": float,
            "kld_max": float,
            "top1_agreement": float,
            "top1_se": float,
            "threads": int,
            "seconds": float,
            "peak_rss_bytes": int,
            "environment": str,  # JSON: library versions
        },
        pk="id",
        if_not_exists=True,
    )
    db.table("quality").create_index(["model_sha256", "backend", "quant"], if_not_exists=True)


@migration
def m006_request_cached_input_tokens(db: sqlite_utils.Database) -> None:
    """requests.cached_input_tokens: input tokens not computed again (a prefix llama.cpp kept
    in its KV cache under --keep-cache, or the cached tokens a cloud API reported)."""
    requests = db.table("requests")
    if "cached_input_tokens" not in requests.columns_dict:
        requests.add_column("cached_input_tokens", int)


# The long-format `samples` rows as they were before m007, for every reader that selects from
# `samples` (export, Datasette, ad-hoc SQL). trust.check_schema lets exactly this view through.
SAMPLES_VIEW_SQL = (
    "CREATE VIEW samples AS SELECT s.run_id AS run_id, p.t_ns AS t_ns, s.sensor AS sensor, "
    "s.metric AS metric, p.value AS value "
    "FROM series AS s JOIN sample_points AS p ON p.series_id = s.id"
)
# A read of one sensor landing on a t_ns its series already holds moves this far later, up
# to this many times, rather than be dropped or fail the run.
MAX_NUDGE_NS = 1_000


def insert_points_nudging(conn: sqlite3.Connection, points: Iterable[Point]) -> int:
    """Insert (series_id, t_ns, value) rows one by one; a row whose (series_id, t_ns) is taken
    moves 1 ns later until it fits. Slow; only for batches that hold such a collision.
    Returns how many rows moved."""
    moved = 0
    for series_id, t_ns, value in points:
        for nudge in range(MAX_NUDGE_NS + 1):
            try:
                conn.execute(
                    "INSERT INTO sample_points (series_id, t_ns, value) VALUES (?, ?, ?)",
                    (series_id, t_ns + nudge, value),
                )
            except sqlite3.IntegrityError:
                continue
            moved += nudge > 0
            break
        else:
            raise ProfileDBError(
                f"series {series_id} has every t_ns from {t_ns} to {t_ns + MAX_NUDGE_NS} "
                "already; pass distinct sample times"
            )
    return moved


@migration
def m007_compact_samples(db: sqlite_utils.Database) -> None:
    """Samples as integer references: `series` names each (run, sensor, metric) once and
    `sample_points` holds (series_id, t_ns, value), keyed by (series_id, t_ns) in a WITHOUT
    ROWID table, so the key is the only b-tree and a series' points are one range. About
    235 bytes a sample before, under 30 after. A view named `samples` keeps the old columns.

    Existing rows are copied in their table's order (a run's samples were written together,
    so the copy appends to a few ranges at a time) and the old table dropped; `migrate` then
    VACUUMs to give the freed pages back. Two rows with one (run, sensor, metric, t_ns) are
    both kept: the later one (by rowid) moves 1 ns later, as `Store.insert_samples` does. A row
    without t_ns has no place in the key and is not copied (edgeprof never wrote one); NULL
    names become ''.
    """
    conn = db.conn
    conn.execute(
        "CREATE TABLE IF NOT EXISTS series (id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, "
        "sensor TEXT NOT NULL, metric TEXT NOT NULL, UNIQUE (run_id, sensor, metric))"
    )
    conn.execute(
        "CREATE TABLE IF NOT EXISTS sample_points (series_id INTEGER NOT NULL, "
        "t_ns INTEGER NOT NULL, value REAL, PRIMARY KEY (series_id, t_ns)) WITHOUT ROWID"
    )
    kind = conn.execute("SELECT type FROM sqlite_master WHERE name = 'samples'").fetchone()
    if kind and kind[0] == "table":
        _copy_old_samples(conn)
        conn.execute("DROP TABLE samples")
    if not kind or kind[0] == "table":
        conn.execute(SAMPLES_VIEW_SQL)


_OLD_KEY = "coalesce(o.run_id, ''), coalesce(o.sensor, ''), coalesce(o.metric, '')"


def _copy_old_samples(conn: sqlite3.Connection) -> None:
    conn.execute(
        f"INSERT OR IGNORE INTO series (run_id, sensor, metric) SELECT DISTINCT {_OLD_KEY} "
        "FROM samples AS o ORDER BY 1, 2, 3"
    )
    join = (
        "FROM samples AS o CROSS JOIN series AS s ON s.run_id = coalesce(o.run_id, '') "
        "AND s.sensor = coalesce(o.sensor, '') AND s.metric = coalesce(o.metric, '') "
        "WHERE o.t_ns IS NOT NULL"
    )
    # First (by rowid) of any duplicates wins here; the rest are placed one by one below.
    cur = conn.execute(
        "INSERT OR IGNORE INTO sample_points (series_id, t_ns, value) "
        f"SELECT s.id, o.t_ns, o.value {join} ORDER BY o.rowid"
    )
    wanted = conn.execute("SELECT count(*) FROM samples AS o WHERE o.t_ns IS NOT NULL").fetchone()
    if cur.rowcount >= int(wanted[0]):
        return
    extra = conn.execute(
        "SELECT s.id, o.t_ns, o.value FROM (SELECT o.rowid AS rid, o.*, row_number() OVER "
        f"(PARTITION BY {_OLD_KEY}, o.t_ns ORDER BY o.rowid) AS k FROM samples AS o) AS o "
        f"CROSS JOIN series AS s ON s.run_id = coalesce(o.run_id, '') "
        "AND s.sensor = coalesce(o.sensor, '') AND s.metric = coalesce(o.metric, '') "
        "WHERE o.t_ns IS NOT NULL AND o.k > 1 ORDER BY o.rid"
    ).fetchall()
    insert_points_nudging(conn, extra)


@migration
def m008_grades(db: sqlite_utils.Database) -> None:
    """Task quality. `expectations`: what a good answer to a prompt must satisfy, beside the
    prompt and per suite (the prompt's id is its messages' hash, so the same prompts with new
    expectations keep their ids and stored answers are re-graded, not generated again).
    `grades`: one row per (request, assertion, grader): `rule` for deterministic checks, or
    the id of the judge's own run; pairwise verdicts name the other answer's request."""
    db.table("expectations").create(
        {
            "id": str,  # "<suite>:<prompt_id>"
            "suite": str,
            "prompt_id": str,
            "kind": str,
            "reference": str,
            "threshold": float,
            "assertions": str,  # JSON list of assertion objects
            "sha256": str,  # of assertions, reference and threshold together
            "updated_at": str,
        },
        pk="id",
        if_not_exists=True,
    )
    db.table("grades").create(
        {
            "id": str,  # sha256 of request, grader, assertion index and pairwise partner
            "run_id": str,
            "request_id": str,
            "prompt_id": str,
            "assertion_index": int,  # position in the prompt's "assert" list; -1: pairwise
            "assertion_type": str,
            "grader": str,  # "rule" or the judge's run id
            "passed": int,  # 1 or 0; never 1 when the judge failed
            "score": float,  # 0..1 (pairwise: 1 win, 0.5 tie, 0 loss)
            "reason": str,
            "judge_failed": int,  # 1: the judge's reply did not parse as a verdict
            "against_request_id": str,  # pairwise: the other target's answer
            "expectations_sha256": str,
            "graded_at": str,
        },
        pk="id",
        if_not_exists=True,
    )
    db.table("grades").create_index(["run_id"], if_not_exists=True)
    db.table("grades").create_index(["request_id"], if_not_exists=True)
    db.table("expectations").create_index(["prompt_id"], if_not_exists=True)


@migration
def m009_worker_crash(db: sqlite_utils.Database) -> None:
    """runs.worker_trace, worker_log, worker_files: when the model's worker process died (a
    signal, an unexpected exit), its faulthandler trace, the tail of its stderr (the C side's
    last log lines) and the folder that keeps both as files."""
    runs = db.table("runs")
    for name in ("worker_trace", "worker_log", "worker_files"):
        if name not in runs.columns_dict:
            runs.add_column(name, str)


@migration
def m010_request_server_timings(db: sqlite_utils.Database) -> None:
    """A local server's own figures for each request, beside edgeprof's client-side ones:
    whose they are (`ollama`, `llama-server`), the model load it waited for, and the prompt
    and output tokens with the seconds it spent on each. NULL where a server reports none."""
    requests = db.table("requests")
    columns = {
        "server_timings_source": str,
        "server_load_s": float,
        "server_prompt_tokens": int,
        "server_prompt_s": float,
        "server_output_tokens": int,
        "server_decode_s": float,
    }
    for name, kind in columns.items():
        if name not in requests.columns_dict:
            requests.add_column(name, kind)


@migration
def m011_request_signals(db: sqlite_utils.Database) -> None:
    """How sure the model was of each answer (`edgeprof.backends.signals`): mean and minimum
    log-probability of the chosen tokens, mean entropy, the first token's top-1/top-2 margin,
    and where they came from. NULL where none was read (older runs, APIs without logprobs)."""
    requests = db.table("requests")
    columns = {
        "signal_source": str,
        "signal_tokens": int,
        "logprob_mean": float,
        "logprob_min": float,
        "entropy_mean": float,
        "first_margin": float,
    }
    for name, kind in columns.items():
        if name not in requests.columns_dict:
            requests.add_column(name, kind)


SCHEMA_VERSION = len(MIGRATIONS)


def applied(db: sqlite_utils.Database) -> list[str]:
    if not db.table(MIGRATIONS_TABLE).exists():
        return []
    return [row["name"] for row in db.table(MIGRATIONS_TABLE).rows_where(order_by="rowid")]


def pending(db: sqlite_utils.Database) -> list[str]:
    done = set(applied(db))
    return [name for name, _ in MIGRATIONS if name not in done]


def schema_version(db: sqlite_utils.Database) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def _old_samples_rows(db: sqlite_utils.Database) -> bool:
    kind = db.conn.execute("SELECT type FROM sqlite_master WHERE name = 'samples'").fetchone()
    return bool(
        kind and kind[0] == "table" and db.conn.execute("SELECT 1 FROM samples LIMIT 1").fetchone()
    )


def compact(db: sqlite_utils.Database) -> None:
    """VACUUM (the old samples table left most of the file free), then fold the WAL back.
    Best effort: with another process reading the file it stays as it is, its free pages
    reused by later writes, and the next `edgeprof merge` into a new file compacts it."""
    try:
        db.conn.execute("VACUUM")
        db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    except sqlite3.OperationalError:
        pass


def migrate(db: sqlite_utils.Database, *, vacuum: bool = True) -> list[str]:
    """Apply pending migrations; return their names. Refuse a database from a newer edgeprof.

    `vacuum`: compact the file after m007 converted existing samples (a throwaway copy that is
    read once need not be)."""
    found = schema_version(db)
    if found > SCHEMA_VERSION:
        raise ProfileDBError(
            f"{db.conn.execute('PRAGMA database_list').fetchone()[2] or 'database'} has schema "
            f"v{found}, newer than this edgeprof understands (v{SCHEMA_VERSION}); "
            "upgrade edgeprof (pip install -U edgeprof)"
        )
    if not pending(db):
        return []
    converting = "m007_compact_samples" in pending(db) and _old_samples_rows(db)
    ran: list[str] = []
    for name, fn in MIGRATIONS:
        # One transaction per migration (DDL included): all of it or none of it. IMMEDIATE
        # takes the write lock first (waiting out the busy timeout), so two processes opening
        # a new database at once cannot both apply the same migration.
        db.conn.execute("BEGIN IMMEDIATE")
        if name in applied(db):
            db.conn.rollback()
            continue
        try:
            db.conn.execute(
                f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} "
                "(name TEXT PRIMARY KEY, applied_at FLOAT)"
            )
            fn(db)
            db.conn.execute(
                f"INSERT INTO {MIGRATIONS_TABLE} (name, applied_at) VALUES (?, ?)",
                (name, time.time()),
            )
        except BaseException:
            db.conn.rollback()
            raise
        db.conn.commit()
        ran.append(name)
    if schema_version(db) != SCHEMA_VERSION:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    if vacuum and converting and "m007_compact_samples" in ran:
        compact(db)
    return ran
