"""Schema migrations: named functions applied once each, in order, each in its own transaction.

Applied names are recorded in `_migrations`; `PRAGMA user_version` holds the schema version so
that a reader can refuse a database written by a newer edgeprof. Never rename or reorder a
migration; add a new one.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import sqlite_utils

from edgeprof.errors import ProfileDBError

Migration = Callable[[sqlite_utils.Database], None]
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


def migrate(db: sqlite_utils.Database) -> list[str]:
    """Apply pending migrations; return their names. Refuse a database from a newer edgeprof."""
    found = schema_version(db)
    if found > SCHEMA_VERSION:
        raise ProfileDBError(
            f"{db.conn.execute('PRAGMA database_list').fetchone()[2] or 'database'} has schema "
            f"v{found}, newer than this edgeprof understands (v{SCHEMA_VERSION}); "
            "upgrade edgeprof (pip install -U edgeprof)"
        )
    if not pending(db):
        return []
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
    return ran
