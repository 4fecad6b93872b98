"""ONNX Runtime (fp32/int8/int4 exports) next to llama.cpp on the same GGUF, threads and prompts.

    flock /tmp/edgeprof-bench.lock .venv/bin/python scripts/bench_onnx.py [--threads 2]

Prints decode tok/s, TTFT, peak RSS and model file size per target, and the ONNX int4 /
llama.cpp decode ratio. Each target runs in its own process so peak RSS is its own.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def measure(backend: str, model: str, threads: int, max_tokens: int, reps: int) -> dict:
    """Runs in a child process: load, one warm-up pass, then `reps` passes over the suite."""
    from edgeprof.backends import BackendOptions, Request, create_backend
    from edgeprof.workload import load_suite

    b = create_backend(backend, BackendOptions(model=model, threads=threads, ctx=2048))
    info = b.load()
    prompts = load_suite()
    ttft, decode = [], []
    for rep in range(reps + 1):
        for p in prompts:
            t0 = time.perf_counter_ns()
            gen = b.generate(Request(p.id, p.messages, max_tokens))
            times = []
            try:
                while True:
                    times.append(next(gen).t_ns)
            except StopIteration:
                pass
            if rep == 0 or len(times) < 2:
                continue  # warm-up pass
            ttft.append((times[0] - t0) / 1e9)
            decode.append((len(times) - 1) / ((times[-1] - times[0]) / 1e9))
    b.close()
    return {
        "target": info.target,
        "quant": info.quant,
        "size_bytes": info.size_bytes,
        "ttft_p50_s": statistics.median(ttft),
        "decode_tps_mean": statistics.mean(decode),
        "decode_tps_sd": statistics.stdev(decode) if len(decode) > 1 else 0.0,
        "peak_rss_bytes": _peak_rss_bytes(),
    }


def _peak_rss_bytes() -> int:
    """VmHWM resets at exec (ru_maxrss would carry the converting parent's peak over)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="Keep the exports here.")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        result = measure(*args.child, args.threads, args.max_tokens, args.reps)
        print(json.dumps(result))
        return

    from edgeprof.convert import convert_gguf
    from edgeprof.models import demo_model_path

    src = demo_model_path()
    out = args.out or Path(tempfile.mkdtemp(prefix="edgeprof-onnx-"))
    targets = [("llamacpp", str(src))]
    for weights in ("fp32", "int8", "int4"):
        r = convert_gguf(src, out / f"smollm2-{weights}.onnx", weights=weights)
        print(f"converted {weights} in {r.seconds:.1f} s", file=sys.stderr)
        targets.append(("onnx", str(r.onnx_path)))
    rows = []
    for backend, model in targets:
        cmd = [
            sys.executable,
            __file__,
            "--child",
            backend,
            model,
            "--threads",
            str(args.threads),
            "--max-tokens",
            str(args.max_tokens),
            "--reps",
            str(args.reps),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append({"backend": backend, **json.loads(done.stdout.strip().splitlines()[-1])})
    print(f"threads={args.threads} max_tokens={args.max_tokens} prompts=bundled default suite")
    print(
        f"{'backend':9} {'target':24} {'quant':6} {'decode tok/s':>14} {'TTFT p50':>9} "
        f"{'peak RSS':>9} {'file':>8}"
    )
    for r in rows:
        print(
            f"{r['backend']:9} {r['target']:24} {r['quant']:6} "
            f"{r['decode_tps_mean']:7.1f} ± {r['decode_tps_sd']:4.1f} "
            f"{r['ttft_p50_s'] * 1000:7.0f}ms {r['peak_rss_bytes'] / 2**20:7.0f}MB "
            f"{r['size_bytes'] / 1e6:6.0f}MB"
        )
    cpp = rows[0]["decode_tps_mean"]
    for r in rows[1:]:
        print(
            f"onnx {r['quant']} / llama.cpp {rows[0]['quant']} decode: "
            f"{r['decode_tps_mean'] / cpp:.0%}"
        )


if __name__ == "__main__":
    main()
