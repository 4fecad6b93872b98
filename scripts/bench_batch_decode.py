"""Aggregate decode speed of batching on the demo model: N sequences advanced by one
`llama_decode` (llama.cpp) or one session call (`--backend onnx`: the int4 export, converted
and cached once) per step, against one.

Each sequence gets the same short prompt and decodes `--tokens` tokens with EOG ignored, so the
measurement is decode alone: aggregate tok/s = tokens generated after every sequence has its
first one / the time from then to the last token. Levels take turns for `--rounds` rounds. Run:

    flock /tmp/edgeprof-bench.lock .venv/bin/python scripts/bench_batch_decode.py --threads 2
    flock /tmp/edgeprof-bench.lock .venv/bin/python scripts/bench_batch_decode.py --threads 2 \
        --backend onnx --levels 1,2,4
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable, Iterable
from typing import Any

from edgeprof.backends.base import BackendOptions, Request
from edgeprof.backends.batching import BatchResult
from edgeprof.backends.llamacpp import LlamaCppBackend, LlamaCppSettings
from edgeprof.models.files import demo_model_path

Serve = Callable[[list[Request], int], Iterable[BatchResult]]

PROMPT = ({"role": "user", "content": "Write a long story about a lighthouse keeper."},)


def _llamacpp(threads: int) -> tuple[Any, Serve]:
    backend = LlamaCppBackend(
        BackendOptions(model=str(demo_model_path()), threads=threads, ctx=4096),
        LlamaCppSettings(ignore_eos=True),
    )
    backend.load()
    return backend, lambda requests, n: (res for _, res in backend.serve(requests, n))


def _onnx(threads: int) -> tuple[Any, Serve]:
    from edgeprof.backends.batching import BatchJob
    from edgeprof.backends.onnx_batch import OnnxBatchDecoder
    from edgeprof.backends.onnxrt import OnnxBackend
    from edgeprof.models.export_cache import cached_export
    from edgeprof.models.tokens import prompt_tokens

    export = cached_export(demo_model_path(), weights="int4")
    backend = OnnxBackend(BackendOptions(model=str(export.onnx_path), threads=threads))
    backend.load()

    def serve(requests: list[Request], n: int) -> Iterable[BatchResult]:
        jobs = [BatchJob(r, prompt_tokens(backend._vocab, r.messages), r.max_tokens)
                for r in requests]  # fmt: skip
        return OnnxBatchDecoder(backend, n, ignore_eos=True).serve(jobs)

    return backend, serve


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backend", choices=("llamacpp", "onnx"), default="llamacpp")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--levels", default="1,2,4,8")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    levels = [int(x) for x in a.levels.split(",")]
    backend, serve = (_onnx if a.backend == "onnx" else _llamacpp)(a.threads)
    speeds: dict[int, list[float]] = {n: [] for n in levels}
    for _ in range(a.rounds):
        for n in levels:
            requests = [Request(f"r{i}", PROMPT, max_tokens=a.tokens) for i in range(n)]
            results = list(serve(requests, n))
            # from the step where every sequence has its first token (ONNX prefills one
            # request at a time; llama.cpp reads the N prompts in one batch)
            first = max(res.events[0][0] for res in results)
            last = max(res.events[-1][0] for res in results)
            tokens = sum(t > first for res in results for t, _ in res.events)
            speeds[n].append(tokens / ((last - first) / 1e9))
    backend.close()
    base = statistics.median(speeds[levels[0]])
    print(f"batched decode, {a.backend}: demo model, {a.threads} threads, {a.tokens} tokens "
          f"per sequence, {a.rounds} rounds (median, min..max)")  # fmt: skip
    for n in levels:
        med = statistics.median(speeds[n])
        print(f"N={n:<3} aggregate decode {med:7.1f} tok/s  ({min(speeds[n]):.1f}.."
              f"{max(speeds[n]):.1f})  x{med / base:.2f} of N={levels[0]}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
