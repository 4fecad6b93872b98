"""What edgeprof adds to each llama.cpp decode step, and how far apart two processes running
identical code land: the two parts of a fidelity gap that `bench_fidelity.py` cannot separate.

    flock /tmp/edgeprof-bench.lock .venv/bin/python scripts/bench_decode_loop.py

1. The loop (one process, one llama.cpp context, the variants interleaved, `--reps` each):
   every `llama_decode` is timed, so a step splits into the decode itself and the time
   outside it, which is the loop's own cost whatever the machine's noise does to the decode:
   - bare: a greedy ctypes loop (the argmax fed back): llama-bench's tg loop plus an argmax;
   - edgeprof, signals off / on: `LlamaCppBackend.generate`, as the runner consumes it;
   - the worker's side: the same generator drained by `Worker.do_generate`, the events
     batched for the pipe into a list (the pipe itself: `bench_pipe.py`).
   All decode 128 tokens after a 512-token prompt, at `--threads`. The bare loop and "signals
   off" share one llama.cpp context, so their time inside `llama_decode` is also compared
   pair by pair: whether edgeprof's loop slows the decode itself (its caches, say).
2. A/A (`--instances` worker processes, default 3, plus the model in this process): the
   same requests, round-robin, `--rounds` each. Identical code and inputs; what separates
   their medians is where each process's memory landed and how the VM scheduled it, which a
   comparison of one worker against one llama-bench process cannot tell from a real cost.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

N_PROMPT, N_GEN = 512, 128


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class DecodeTimer:
    """`llama_cpp.llama_decode`, replaced by itself timed (about 0.2 us a call)."""

    def __init__(self, lc: Any) -> None:
        self.lc, self.real = lc, lc.llama_decode
        self.inside_ns: list[int] = []

    def __call__(self, ctx: Any, batch: Any) -> int:
        t0 = time.perf_counter_ns()
        rc = int(self.real(ctx, batch))
        self.inside_ns.append(time.perf_counter_ns() - t0)
        return rc

    def __enter__(self) -> DecodeTimer:
        self.lc.llama_decode = self
        return self

    def __exit__(self, *exc: object) -> None:
        self.lc.llama_decode = self.real


def split(t_ns: list[int], inside_ns: list[int]) -> tuple[float, float]:
    """(step, outside llama_decode) in us, over the steps between the first token and the
    last: the steps edgeprof's decode tok/s is made of."""
    steps = len(t_ns) - 1
    step_us = (t_ns[-1] - t_ns[0]) / steps / 1e3
    inside_us = sum(inside_ns[-steps:]) / steps / 1e3
    return step_us, step_us - inside_us


def loop_variants(
    model: Path, msgs: Any, threads: int
) -> tuple[dict[str, Callable[[], list[int]]], Any]:
    """Each variant: a function that decodes one request and returns its token times."""
    import llama_cpp as lc
    import numpy as np

    from edgeprof.backends.base import BackendOptions, Request
    from edgeprof.backends.llamacpp import LlamaCppBackend, LlamaCppSettings
    from edgeprof.measure.worker import Worker
    from edgeprof.models.tokens import prompt_tokens

    opts = BackendOptions(model=str(model), threads=threads, ctx=N_PROMPT + N_GEN + 16)
    on = LlamaCppBackend(opts, LlamaCppSettings(ignore_eos=True, signals=True))
    off = LlamaCppBackend(opts, LlamaCppSettings(ignore_eos=True, signals=False))
    on.load()
    off.load()
    request = Request("p512", msgs, N_GEN)
    tokens = prompt_tokens(off.llm, msgs, off.fmt)
    ctx, n_vocab = off.llm._ctx.ctx, off._decoder().n_vocab

    def bare() -> list[int]:
        lc.llama_memory_clear(lc.llama_get_memory(ctx), True)
        arr = (lc.llama_token * len(tokens))(*tokens)
        lc.llama_decode(ctx, lc.llama_batch_get_one(arr, len(tokens)))
        step, times = (lc.llama_token * 1)(), []
        # llama.cpp writes every step's logits to one buffer: one numpy view of it serves all
        logits = np.ctypeslib.as_array(lc.llama_get_logits_ith(ctx, -1), shape=(n_vocab,))
        for i in range(N_GEN):
            step[0] = int(logits.argmax())
            times.append(time.perf_counter_ns())
            if i < N_GEN - 1:
                lc.llama_decode(ctx, lc.llama_batch_get_one(step, 1))
        return times

    def drained(backend: Any) -> Callable[[], list[int]]:
        return lambda: [ev.t_ns for ev in backend.generate(request)]

    class Sink:
        def __init__(self) -> None:
            self.times: list[int] = []

        def send(self, message: tuple[str, Any]) -> None:
            if message[0] == "ev":
                self.times += [t_ns for t_ns, _n, _text in message[1]]

    def through_worker_loop() -> list[int]:
        sink = Sink()
        worker = Worker(sink)
        worker.backend = on
        worker.do_generate(request)
        return sink.times

    variants = {
        "bare greedy ctypes loop": bare,
        "edgeprof, signals off": drained(off),
        "edgeprof, signals on (default)": drained(on),
        "  + the worker's event batching": through_worker_loop,
    }
    return variants, (on, off)


def measure_loop(model: Path, msgs: Any, threads: int, reps: int) -> None:
    import llama_cpp as lc

    variants, backends = loop_variants(model, msgs, threads)
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    with DecodeTimer(lc) as timer:
        for fn in variants.values():  # one warm-up each
            fn()
        for rep in range(reps):
            order = list(variants) if rep % 2 == 0 else list(variants)[::-1]
            for name in order:
                timer.inside_ns.clear()
                times = variants[name]()
                if len(times) != N_GEN:
                    raise RuntimeError(f"{name}: {len(times)} tokens, not {N_GEN}")
                results[name].append(split(times, timer.inside_ns))
            log(f"loop: rep {rep + 1}/{reps}")
    for b in backends:
        b.close()
    _heading(
        f"1. the loop: {N_GEN} tokens after {N_PROMPT}, {threads} thread(s), {reps} interleaved "
        "reps each; medians (quartiles)",
        f"{'variant':<34} {'step us':>18} {'outside llama_decode us':>26} {'% of step':>10}",
    )
    for name, rows in results.items():
        step = [s for s, _ in rows]
        out = [o for _, o in rows]
        print(f"{name:<34} {_q(step):>18} {_q(out):>26} "
              f"{100 * statistics.median(out) / statistics.median(step):>9.2f}%")  # fmt: skip
    # The bare loop and "signals off" share one context: the decode itself, paired by rep
    bare, off = results["bare greedy ctypes loop"], results["edgeprof, signals off"]
    inside = [(s1 - o1) - (s0 - o0) for (s0, o0), (s1, o1) in zip(bare, off, strict=True)]
    print(f"inside llama_decode, edgeprof (signals off) minus the bare loop, one context, "
          f"paired by rep: {_q(inside)} us")  # fmt: skip


def measure_instances(model: Path, msgs: Any, threads: int, n: int, rounds: int) -> None:
    from edgeprof.backends.base import BackendOptions, Request
    from edgeprof.backends.llamacpp import LlamaCppBackend, LlamaCppSettings
    from edgeprof.measure.isolation import WorkerBackend

    opts = BackendOptions(model=str(model), threads=threads, ctx=N_PROMPT + N_GEN + 16)

    def make() -> LlamaCppBackend:
        return LlamaCppBackend(opts, LlamaCppSettings(ignore_eos=True))

    backends: dict[str, Any] = {f"worker {i + 1}": WorkerBackend(make()) for i in range(n)}
    backends["this process"] = make()
    for b in backends.values():
        b.load()
    request = Request("p512", msgs, N_GEN)
    tps: dict[str, list[float]] = {name: [] for name in backends}

    def one(b: Any) -> float:
        times = [ev.t_ns for ev in b.generate(request)]
        return (len(times) - 1) / ((times[-1] - times[0]) / 1e9)

    for b in backends.values():
        one(b)
    for r in range(rounds):
        names = list(backends)
        names = names[r % len(names) :] + names[: r % len(names)]  # each goes first in turn
        for name in names:
            tps[name].append(one(backends[name]))
        log(f"instances: round {r + 1}/{rounds}")
    for b in backends.values():
        b.close()
    medians = {name: statistics.median(v) for name, v in tps.items()}
    _heading(
        f"2. A/A: {n} worker processes and this process, identical code and requests, "
        f"{rounds} round-robin rounds each; decode tok/s",
        f"{'instance':<16} {'median':>8} {'quartiles':>16}",
    )
    for name, v in tps.items():
        q = statistics.quantiles(v, n=4)
        print(f"{name:<16} {medians[name]:>8.1f} {f'{q[0]:.1f}..{q[2]:.1f}':>16}")
    lo, hi = min(medians.values()), max(medians.values())
    print(f"slowest / fastest instance: {lo / hi:.3f} "
          f"(a gap this size between two processes is not a cost of either)")  # fmt: skip


def _heading(title: str, head: str) -> None:
    print(f"\n{title}")
    print(head)
    print("-" * len(head))


def _q(values: list[float]) -> str:
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return f"{statistics.median(values):.1f} ({q[0]:.0f}..{q[2]:.0f})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=12, help="interleaved requests per loop variant")
    ap.add_argument("--instances", type=int, default=3, help="worker processes in the A/A part")
    ap.add_argument("--rounds", type=int, default=8, help="requests per instance in the A/A part")
    ap.add_argument("--model", type=Path, default=None, help="GGUF (default: the demo model)")
    ap.add_argument("--skip", choices=("loop", "instances"), default=None)
    a = ap.parse_args()

    from bench_fidelity import prompt_of_exactly

    from edgeprof.models.files import demo_model_path

    model = a.model or demo_model_path()
    msgs = prompt_of_exactly(model, N_PROMPT)
    print(f"decode loop: {model.name}, {a.threads} thread(s)")
    if a.skip != "loop":
        measure_loop(model, msgs, a.threads, a.reps)
    if a.skip != "instances":
        measure_instances(model, msgs, a.threads, a.instances, a.rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
