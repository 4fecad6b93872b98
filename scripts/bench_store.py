"""Store throughput: sample inserts the way the recorder writes them, then a merge of two DBs.

    flock /tmp/edgeprof-bench.lock .venv/bin/python scripts/bench_store.py [--rows N] [--batch N]

Targets (issue 7): inserts >= 200,000 rows/s; merging 2 x 1,000,000 samples in under 20 s.
Row generation is kept out of the insert timing; the merge timing is the whole `merge()` call
(source checks, copying the destination, the INSERT ... SELECTs, fsync and rename).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from edgeprof.store import Store
from edgeprof.store.ids import ulid
from edgeprof.store.share import merge

SENSORS = (("rapl:package-0", "energy_j"), ("rapl:dram", "energy_j"), ("process", "rss_bytes"))


def device(name: str) -> dict:
    return {
        "id": hashlib.sha256(name.encode()).hexdigest()[:32], "label": name, "hostname": name,
        "cpu_model": "bench", "cores": 4, "threads": 8, "ram_bytes": 8 << 30, "os": "Linux",
        "arch": "x86_64", "accelerators": [], "mem_bandwidth_gbs": None,
    }  # fmt: skip


def fill(path: Path, host: str, rows: int, batch: int, runs: int = 4) -> tuple[float, int]:
    """Write `rows` samples over `runs` runs; return (seconds spent in insert_samples, rows)."""
    spent, written = 0.0, 0
    with Store(path) as store:
        dev = device(host)
        store.upsert_device(dev)
        per_run = rows // runs
        for _ in range(runs):
            run_id = ulid()
            store.insert_run({"id": run_id, "device_id": dev["id"], "backend": "llamacpp",
                              "status": "complete", "t0_ns": 0})  # fmt: skip
            for start in range(0, per_run, batch):
                n = min(batch, per_run - start)
                chunk = [
                    (run_id, (start + i) * 33_333_333, *SENSORS[(start + i) % 3], 1.5 * (start + i))
                    for i in range(n)
                ]
                t = time.perf_counter()
                store.insert_samples(chunk)
                spent += time.perf_counter() - t
                written += n
    return spent, written


def count(path: Path) -> int:
    with Store(path) as store:
        return store.count("samples")


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

        wall = time.perf_counter()
        spent, n = fill(a, "bench-a", args.rows, args.batch)
        wall = time.perf_counter() - wall
        results["insert_rows_per_s"] = round(n / spent)
        results["insert_s"] = round(spent, 2)
        results["insert_wall_s_incl_row_generation"] = round(wall, 2)
        print(
            f"insert  {n:,} samples in batches of {args.batch:,}: {spent:.2f} s in insert_samples"
            f" -> {n / spent:,.0f} rows/s (wall with generation {wall:.2f} s)"
        )

        fill(b, "bench-b", args.rows, args.batch)
        t = time.perf_counter()
        result = merge([a, b], dest)
        merge_s = time.perf_counter() - t
        total = count(dest)
        assert total == 2 * (args.rows // 4) * 4, total
        results["merge_s"] = round(merge_s, 2)
        results["merge_rows_per_s"] = round(result.added["samples"] / merge_s)
        print(f"merge   2 x {args.rows:,} samples -> {total:,} rows: {merge_s:.2f} s "
              f"({result.added['samples'] / merge_s:,.0f} rows/s)")  # fmt: skip

        t = time.perf_counter()
        again = merge([a, b], dest)
        again_s = time.perf_counter() - t
        assert not again.changed and count(dest) == total
        results["remerge_noop_s"] = round(again_s, 2)
        print(f"re-merge of the same two files (adds nothing): {again_s:.2f} s")

        t = time.perf_counter()
        merge([a], work / "one.db")
        results["merge_into_new_1x_s"] = round(time.perf_counter() - t, 2)
        results["db_mb"] = round(dest.stat().st_size / 1e6, 1)
    print(json.dumps(results))
    ok_insert = results["insert_rows_per_s"] >= 200_000  # type: ignore[operator]
    ok_merge = merge_s < 20
    print(f"targets: inserts >= 200,000 rows/s {'OK' if ok_insert else 'MISSED'}; "
          f"merge 2 x 1M < 20 s {'OK' if ok_merge else 'MISSED'}")  # fmt: skip


if __name__ == "__main__":
    main()
