"""Store figures: bytes per sample, inserts, merge, and `report` on the merged database.

    flock /tmp/edgeprof-bench.lock .venv/bin/python scripts/bench_store.py --rows 1000000
    flock /tmp/edgeprof-bench.lock .venv/bin/python scripts/bench_store.py --rows 5000000

Each database holds `--rows` samples over 4 runs, written the way the recorder writes them: a
tick every 100 ms (10 Hz) reads a dozen sensor metrics at one t_ns (power in W and energy
counters in J as fractional floats, temperatures, CPU %, RSS and GPU memory in bytes), in
batches of `--batch` rows. Each run has 200 requests, so `report` computes real windows.

- bytes/sample: the file's size after its last connection closed (the WAL checkpointed into
  it, every table and index included) over its samples; for a recorder-written file and for
  the merged one (written in key order).
- insert rows/s: time inside `Store.insert_samples` only (row generation is excluded).
- merge rows/s: samples added over the whole `merge()` call (checks, copy, INSERTs, fsync,
  rename), 2 x `--rows` into a new file.
- report seconds: `edgeprof report DB` and `edgeprof report DB --by device` through the CLI
  in this process (open, migrations check, summaries with each run's GPU-memory peak, render),
  and `summarize()` alone.

Targets (issue 17): <= 30 bytes/sample; merge rows/s at 2 x 5M within 20% of 2 x 1M; report
under 2 s on 10M samples. Issue 7: inserts >= 200,000 rows/s.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import random
import tempfile
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from edgeprof.store import Store
from edgeprof.store.ids import ulid
from edgeprof.store.share import merge

TICK_NS = 100_000_000  # 10 Hz
# (sensor, metric, first value, step per tick, noise): a dozen series, as a laptop with RAPL,
# hwmon, NVML and the process sampler records.
SERIES = (
    ("rapl:package-0", "energy_j", 1000.0, 1.83, 0.05),
    ("rapl:core", "energy_j", 800.0, 1.21, 0.05),
    ("rapl:dram", "energy_j", 300.0, 0.31, 0.01),
    ("rapl:package-0", "power_w", 18.0, 0.0, 4.0),
    ("rapl:core", "power_w", 12.0, 0.0, 3.0),
    ("nvml:0", "power_w", 35.0, 0.0, 8.0),
    ("hwmon:coretemp", "temp_c", 55.0, 0.0, 6.0),
    ("hwmon:nvme", "temp_c", 41.0, 0.0, 2.0),
    ("process", "cpu_percent", 380.0, 0.0, 20.0),
    ("process", "rss_bytes", 2.1e8, 0.0, 0.0),
    ("nvml:0", "gpu_mem_bytes", 1.5e9, 0.0, 0.0),
    ("nvml:0", "temp_c", 60.0, 0.0, 5.0),
)
RUNS = 4
REQUESTS = 200


def device(name: str) -> dict:
    return {
        "id": hashlib.sha256(name.encode()).hexdigest()[:32], "label": name, "hostname": name,
        "cpu_model": "bench", "cores": 4, "threads": 8, "ram_bytes": 8 << 30, "os": "Linux",
        "arch": "x86_64", "accelerators": [], "mem_bandwidth_gbs": None,
    }  # fmt: skip


def value(rng: random.Random, k: int, first: float, step: float, noise: float) -> float:
    if noise == 0.0:  # byte counts: integral, stored as integers
        return first + 4096.0 * (k % 50)
    if step:  # a counter: rises by about `step` a tick
        return first + k * step + rng.random() * noise
    return round(first + rng.uniform(-noise, noise), 3)


def add_run(store: Store, dev: dict, ticks: int, batch: int, rng: random.Random) -> float:
    """One run of `ticks` ticks; returns the seconds spent in insert_samples."""
    run_id = ulid()
    store.insert_run({"id": run_id, "device_id": dev["id"], "backend": "llamacpp",
                      "target": "bench.gguf", "model_sha256": "ab" * 32, "quant": "Q4_1",
                      "status": "complete", "t0_ns": 0, "target_kind": "device",
                      "params": {"threads": 4, "max_tokens": 64},
                      "started_at": "2026-11-27T00:00:00Z"})  # fmt: skip
    store.insert_sensors(
        [{"run_id": run_id, "sensor": s, "metric": m, "domain": "package", "unit": "",
          "method": "measured", "detail": "bench"} for s, m, *_ in SERIES]
    )  # fmt: skip
    span = ticks * TICK_NS // REQUESTS
    for seq in range(REQUESTS):
        store.insert_request({
            "id": ulid(), "run_id": run_id, "seq": seq, "repetition": 0, "warmup": 0,
            "input_tokens": 40, "output_tokens": 64, "t_start_ns": seq * span,
            "t_end_ns": seq * span + span // 2, "ttft_s": 0.05, "prefill_tps": 800.0,
            "decode_tps": 40.0, "e2e_s": span / 2e9, "energy_j": 10.0, "energy_net_j": 6.0,
            "energy_method": "measured", "avg_power_w": 20.0, "peak_rss_bytes": 2.1e8,
        })  # fmt: skip
    spent, rows = 0.0, []
    for k in range(ticks):
        t_ns = k * TICK_NS + rng.randrange(1000)  # perf_counter_ns jitter
        rows += [(run_id, t_ns, s, m, value(rng, k, *v)) for s, m, *v in SERIES]
        if len(rows) >= batch or k == ticks - 1:
            t = time.perf_counter()
            store.insert_samples(rows)
            spent += time.perf_counter() - t
            rows = []
    return spent


def fill(path: Path, host: str, rows: int, batch: int) -> tuple[float, int]:
    """`rows` samples over RUNS runs; returns (seconds in insert_samples, samples written)."""
    rng = random.Random(host)
    ticks = rows // (RUNS * len(SERIES))
    with Store(path) as store:
        dev = device(host)
        store.upsert_device(dev)
        spent = sum(add_run(store, dev, ticks, batch, rng) for _ in range(RUNS))
        return spent, store.count("samples")


def size(path: Path) -> int:
    """The file and whatever WAL is left beside it (none once the last connection closed)."""
    wal = Path(f"{path}-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def time_cli(*args: str) -> tuple[float, int]:
    from typer.testing import CliRunner

    from edgeprof.cli import app

    t = time.perf_counter()
    with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
        done = CliRunner().invoke(app, list(args))
    return time.perf_counter() - t, done.exit_code


def time_report(db: Path, results: dict[str, object]) -> None:
    from edgeprof.analysis.summary import summarize

    time_cli("report", str(db))  # once to import everything: later calls time the work
    for name, args in (("report_s", ()), ("report_by_device_s", ("--by", "device"))):
        seconds, code = time_cli("report", str(db), *args)
        results[name] = round(seconds, 3) if code == 0 else f"exit {code}"
    t = time.perf_counter()
    with Store(db) as store:
        n_runs = len(summarize(store))
    results["summarize_s"] = round(time.perf_counter() - t, 3)
    print(f"report  {n_runs} runs, {results['merged_samples']:,} samples: `report` "
          f"{results['report_s']} s, `report --by device` {results['report_by_device_s']} s, "
          f"summarize() {results['summarize_s']} s")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="samples per database")
    ap.add_argument("--batch", type=int, default=5_000, help="rows per insert_samples call")
    ap.add_argument("--dir", type=Path, default=None, help="work directory (default: a tmp dir)")
    args = ap.parse_args()
    results: dict[str, object] = {
        "rows": args.rows, "batch": args.batch, "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }  # fmt: skip
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        work = Path(tmp)
        a, b, dest = work / "a.db", work / "b.db", work / "merged.db"

        spent, n = fill(a, "bench-a", args.rows, args.batch)
        results["insert_rows_per_s"] = round(n / spent)
        results["insert_s"] = round(spent, 2)
        results["bytes_per_sample_recorded"] = round(size(a) / n, 1)
        print(f"insert  {n:,} samples in batches of {args.batch:,}: {spent:.2f} s in "
              f"insert_samples -> {n / spent:,.0f} rows/s; {size(a) / 1e6:.1f} MB, "
              f"{size(a) / n:.1f} bytes/sample")  # fmt: skip

        fill(b, "bench-b", args.rows, args.batch)
        t = time.perf_counter()
        result = merge([a, b], dest)
        merge_s = time.perf_counter() - t
        with Store(dest) as store:
            total = store.count("samples")
        assert total == 2 * n == result.added["samples"], (total, n, result.added)
        results["merged_samples"] = total
        results["merge_s"] = round(merge_s, 2)
        results["merge_rows_per_s"] = round(total / merge_s)
        results["bytes_per_sample_merged"] = round(size(dest) / total, 1)
        results["merged_mb"] = round(size(dest) / 1e6, 1)
        print(f"merge   2 x {n:,} samples -> {total:,}: {merge_s:.2f} s "
              f"({total / merge_s:,.0f} rows/s); {size(dest) / 1e6:.1f} MB, "
              f"{size(dest) / total:.1f} bytes/sample")  # fmt: skip

        t = time.perf_counter()
        again = merge([a, b], dest)
        results["remerge_noop_s"] = round(time.perf_counter() - t, 2)
        assert not again.changed
        print(f"re-merge of the same two files (adds nothing): {results['remerge_noop_s']} s")

        time_report(dest, results)
    print(json.dumps(results))
    ok_bytes = float(results["bytes_per_sample_recorded"]) <= 30  # type: ignore[arg-type]
    ok_insert = float(results["insert_rows_per_s"]) >= 200_000  # type: ignore[arg-type]
    ok_report = all(
        isinstance(results[k], float) and float(results[k]) < 2  # type: ignore[arg-type]
        for k in ("report_s", "report_by_device_s")
    )
    print(f"targets: <= 30 bytes/sample {'OK' if ok_bytes else 'MISSED'}; inserts >= 200,000 "
          f"rows/s {'OK' if ok_insert else 'MISSED'}; report < 2 s "
          f"{'OK' if ok_report else 'MISSED'} (merge linearity: compare merge_rows_per_s "
          "at --rows 1000000 and 5000000)")  # fmt: skip


if __name__ == "__main__":
    main()
