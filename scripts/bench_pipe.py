"""What the worker's pipe costs per token: a backend that yields tokens as fast as Python can,
run in this process and in its worker process (edgeprof.measure.isolation).

    .venv/bin/python scripts/bench_pipe.py [--tokens 200000] [--reps 5]

The backend does no work, so every figure is overhead: the generator in this process; in the
worker, also the batching (`worker.Events`), pickling, the pipe and the unpickling here. A
request is measured as the runner measures it (`runner.measure`). Reported per token, median
of `--reps` interleaved requests: wall time in-process and through the worker, and the CPU
time each side spends (this process: receiving; the worker: generating and sending, less the
in-process cost of generating alone). A real decode step takes milliseconds (the demo model at
one thread, ~20 ms), so a pipe cost of a few microseconds is < 0.1 % of it.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Generator
from typing import ClassVar

from edgeprof.backends.base import Backend, Generation, ModelInfo, Request, TokenEvent


class Spin(Backend):
    """Tokens as fast as a generator yields them: the pipe's cost, nothing else."""

    name: ClassVar[str] = "spin"
    isolated: ClassVar[bool] = True

    def load(self) -> ModelInfo:
        return ModelInfo(target="spin")

    def generate(self, request: Request) -> Generator[TokenEvent, None, Generation]:
        clock = time.perf_counter_ns
        for _ in range(request.max_tokens):
            yield TokenEvent(clock(), " x")
        return Generation(1, request.max_tokens, finish_reason="length")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    # enough that the worker's CPU time (read in clock ticks, 10 ms) resolves well
    ap.add_argument("--tokens", type=int, default=200_000)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()

    import psutil

    # importable by the worker under this name (its sys.path is ours, this folder first)
    from bench_pipe import Spin as SpinByName

    from edgeprof.backends.base import BackendOptions
    from edgeprof.measure.isolation import WorkerBackend
    from edgeprof.measure.runner import measure

    here = SpinByName(BackendOptions())
    worker = WorkerBackend(SpinByName(BackendOptions()))
    worker.start()
    worker.load()
    proc = psutil.Process(worker.pid)
    request = Request("pipe", ({"role": "user", "content": "x"},), max_tokens=a.tokens)
    n = a.tokens
    keys = ("here", "worker", "here_cpu", "recv_cpu", "send_cpu")
    res: dict[str, list[float]] = {k: [] for k in keys}
    measure(worker, request)  # warm-up
    for rep in range(a.reps):
        for where in ("here", "worker") if rep % 2 == 0 else ("worker", "here"):
            backend = here if where == "here" else worker
            cpu0, wcpu0 = time.process_time(), sum(proc.cpu_times()[:2])
            t0, t1, events, gen = measure(backend, request)
            cpu1, wcpu1 = time.process_time(), sum(proc.cpu_times()[:2])
            assert gen.output_tokens == n == len(events)
            res[where].append((t1 - t0) / n)
            if where == "here":
                res["here_cpu"].append((cpu1 - cpu0) * 1e9 / n)
            else:
                res["recv_cpu"].append((cpu1 - cpu0) * 1e9 / n)
                res["send_cpu"].append((wcpu1 - wcpu0) * 1e9 / n)
    worker.close()
    med = {k: statistics.median(v) for k, v in res.items()}
    spread = {k: (min(v), max(v)) for k, v in res.items()}
    print(f"pipe cost: {n} tokens per request, {a.reps} interleaved requests each; ns per token")
    for key, label in (
        ("here", "in-process, wall"),
        ("here_cpu", "in-process, CPU"),
        ("worker", "through the worker, wall"),
        ("recv_cpu", "this process's CPU (receive)"),
        ("send_cpu", "worker's CPU (generate + send)"),
    ):
        lo, hi = spread[key]
        print(f"  {label:<34} {med[key]:>9.0f}   ({lo:.0f}..{hi:.0f})")
    send_us = (med["send_cpu"] - med["here_cpu"]) / 1e3
    print(
        f"  pipe cost per token: {send_us:.2f} µs CPU on the worker's decode thread (sending), "
        f"{med['recv_cpu'] / 1e3:.2f} µs CPU here (receiving, beside the decode, not in it)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
