"""Memory: the recorder's buffer stays bounded, and edgeprof's own RSS beside the model is small.

1. Recorder: polls the real samplers at a high rate (default 200 Hz for 30 s = the polls of 10
   minutes at 10 Hz) while a watcher records the buffer's length and the process RSS; prints the
   largest buffer, and RSS at start and end (a leak would grow with the poll count).
2. Overhead beside the model: peak RSS of a process that only loads the demo model with
   llama-cpp-python and generates, against the peak RSS of a full `edgeprof run` of the same
   model (recorder, store, CLI, rich) read from its own samples. The difference is edgeprof's.

    .venv/bin/python scripts/bench_memory.py [--seconds 30] [--hz 200]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

BARE = """
import json, psutil
from llama_cpp import Llama
from edgeprof.models.files import demo_model_path
llm = Llama(model_path=str(demo_model_path()), n_ctx=4096, verbose=False)
toks = llm.tokenize(b"Write a haiku about the sea.", add_bos=True)
peak = 0
for i, t in enumerate(llm.generate(toks, top_k=1, temp=0.0)):
    peak = max(peak, psutil.Process().memory_info().rss)
    if i >= 32:
        break
print(json.dumps({"peak_rss_bytes": peak}))
"""


def recorder_buffer(seconds: float, hz: float) -> dict[str, float]:
    from edgeprof.samplers import SensorEnv, discover
    from edgeprof.samplers.recorder import Recorder
    from edgeprof.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "p.db"
        Store(db).close()
        rec = Recorder(discover(SensorEnv()), db, "bench", time.perf_counter_ns(), hz=hz)
        proc = psutil.Process()
        max_buffer = 0
        rss_start = proc.memory_info().rss
        stop = threading.Event()

        def watch() -> None:
            nonlocal max_buffer
            while not stop.wait(0.01):
                max_buffer = max(max_buffer, len(rec._buffer))

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        with rec:
            time.sleep(seconds)
        stop.set()
        watcher.join()
        rss_end = proc.memory_info().rss
        with Store(db) as store:
            rows = store.count("samples")
    return {
        "polls": rec.n_polls,
        "samples_written": rows,
        "max_buffer_rows": max_buffer,
        "rss_start_mib": rss_start / 2**20,
        "rss_end_mib": rss_end / 2**20,
        "recorder_cpu_s_per_s": rec.cpu_s_per_s() or 0.0,
    }


def rss_beside_model() -> dict[str, float]:
    bare = subprocess.run([sys.executable, "-c", BARE], capture_output=True, text=True, check=True)
    bare_peak = json.loads(bare.stdout)["peak_rss_bytes"]
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "p.db")
        run = subprocess.run(
            [sys.executable, "-m", "edgeprof", "run", "--max-tokens", "32", "--repetitions", "1",
             "--idle-seconds", "0", "--db", db, "--json"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        edgeprof_peak = json.loads(run.stdout)["peak_rss_bytes"]
    return {
        "bare_llama_cpp_peak_mib": bare_peak / 2**20,
        "edgeprof_run_peak_mib": edgeprof_peak / 2**20,
        "edgeprof_overhead_mib": (edgeprof_peak - bare_peak) / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--hz", type=float, default=200.0)
    args = parser.parse_args()
    buf = recorder_buffer(args.seconds, args.hz)
    print(f"recorder at {args.hz:g} Hz for {args.seconds:g} s ({buf['polls']} polls = "
          f"{buf['polls'] / 10 / 60:.1f} min at 10 Hz)")  # fmt: skip
    print(f"  samples written        {buf['samples_written']:>10,}")
    print(
        f"  largest buffer (rows)  {buf['max_buffer_rows']:>10,}   (flushed at least once a second)"
    )
    print(f"  process RSS start/end  {buf['rss_start_mib']:>7.1f} / {buf['rss_end_mib']:.1f} MiB")
    print(f"  recorder CPU s per s   {buf['recorder_cpu_s_per_s']:>10.4f}")
    mem = rss_beside_model()
    print("peak RSS, demo model, 32 tokens")
    print(f"  llama-cpp-python alone {mem['bare_llama_cpp_peak_mib']:>7.1f} MiB")
    print(f"  edgeprof run           {mem['edgeprof_run_peak_mib']:>7.1f} MiB")
    print(f"  edgeprof's own         {mem['edgeprof_overhead_mib']:>7.1f} MiB   (target < 100 MiB)")


if __name__ == "__main__":
    main()
