"""TTFT with a shared system prompt: cold (every request prefills it) against cached (llama.cpp
keeps its KV state between requests, `--keep-cache`), on the demo model.

Each round profiles the bundled suite with the same ~320-token system prompt
(tests/data/system_prompt_300.txt) twice, cold then cached, through the real runner; rounds
alternate so background load hits both. Run:

    flock /tmp/edgeprof-bench.lock .venv/bin/python scripts/bench_prefix_cache.py --rounds 3
    ... --concurrency 4   # in the batched engine: the prefix computed once, copied per request
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--concurrency", type=int, default=1, help="requests decoded together")
    ap.add_argument("--system-prompt", type=Path, default=ROOT / "tests/data/system_prompt_300.txt")
    a = ap.parse_args()

    from edgeprof.measure.runner import RunConfig, profile
    from edgeprof.store import Store

    system = a.system_prompt.read_text("utf-8")
    ttft: dict[str, list[float]] = {"cold": [], "cached": []}
    cached_tokens: list[float] = []
    input_tokens: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "p.db"
        for r in range(a.rounds):
            for mode in ("cold", "cached"):
                run_id = profile(
                    RunConfig(
                        max_tokens=a.max_tokens, repetitions=1, warmup=1, threads=a.threads,
                        db=db, idle_seconds=0, system_prompt=system,
                        keep_cache=mode == "cached", label=mode, concurrency=a.concurrency,
                        ctx=4096 * (a.concurrency + 1),
                    )
                )  # fmt: skip
                with Store(db) as store:
                    rows = [x for x in store.requests(run_id) if not x["warmup"]]
                ttft[mode] += [x["ttft_s"] for x in rows]
                if mode == "cached":
                    cached_tokens += [x["cached_input_tokens"] for x in rows]
                    input_tokens += [x["input_tokens"] for x in rows]
                print(f"round {r + 1} {mode}: TTFT median "
                      f"{statistics.median(x['ttft_s'] for x in rows) * 1000:.0f} ms",
                      file=sys.stderr, flush=True)  # fmt: skip
    cold, warm = statistics.median(ttft["cold"]), statistics.median(ttft["cached"])
    print(
        f"prefix cache: demo model, {a.threads} threads, concurrency {a.concurrency}, bundled "
        f"suite with a shared system prompt, {a.rounds} rounds x 12 requests each way"
    )
    print(f"input tokens per request (median)   {statistics.median(input_tokens):.0f}")
    print(f"kept in the KV cache (median)       {statistics.median(cached_tokens):.0f}")
    print(f"TTFT cold   median {cold * 1000:7.1f} ms  (p90 "
          f"{statistics.quantiles(ttft['cold'], n=10)[-1] * 1000:.1f})")  # fmt: skip
    print(f"TTFT cached median {warm * 1000:7.1f} ms  (p90 "
          f"{statistics.quantiles(ttft['cached'], n=10)[-1] * 1000:.1f})")  # fmt: skip
    print(f"cached / cold: {warm / cold:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
