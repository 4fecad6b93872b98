"""Aggregate decode speed of llama.cpp batching on the demo model: N sequences advanced by one
`llama_decode` per step, against one.

Each sequence gets the same short prompt and decodes `--tokens` tokens with EOG ignored, so the
measurement is decode alone: aggregate tok/s = N × (tokens - 1) / (last token - first token
of the batch). Levels take turns for `--rounds` rounds. Run:

    flock /tmp/edgeprof-bench.lock .venv/bin/python scripts/bench_batch_decode.py --threads 2
"""

from __future__ import annotations

import argparse
import statistics

from edgeprof.backends.base import BackendOptions, Request
from edgeprof.backends.llamacpp import LlamaCppBackend, LlamaCppSettings
from edgeprof.models import demo_model_path

PROMPT = ({"role": "user", "content": "Write a long story about a lighthouse keeper."},)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--levels", default="1,2,4,8")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    levels = [int(x) for x in a.levels.split(",")]
    backend = LlamaCppBackend(
        BackendOptions(model=str(demo_model_path()), threads=a.threads, ctx=4096),
        LlamaCppSettings(ignore_eos=True),
    )
    backend.load()
    speeds: dict[int, list[float]] = {n: [] for n in levels}
    for _ in range(a.rounds):
        for n in levels:
            requests = [Request(f"r{i}", PROMPT, max_tokens=a.tokens) for i in range(n)]
            results = [res for _, res in backend.serve(requests, n)]
            first = min(res.events[0][0] for res in results)
            last = max(res.events[-1][0] for res in results)
            tokens = sum(len(res.events) - 1 for res in results)
            speeds[n].append(tokens / ((last - first) / 1e9))
    backend.close()
    base = statistics.median(speeds[levels[0]])
    print(f"batched decode: demo model, {a.threads} threads, {a.tokens} tokens per sequence, "
          f"{a.rounds} rounds (median, min..max)")  # fmt: skip
    for n in levels:
        med = statistics.median(speeds[n])
        print(f"N={n:<3} aggregate decode {med:7.1f} tok/s  ({min(speeds[n]):.1f}.."
              f"{max(speeds[n]):.1f})  x{med / base:.2f} of N={levels[0]}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
