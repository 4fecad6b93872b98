"""What the answer signals cost (backends/signals.py): per-token time of `LogitSignals.add`
inside the decode loop, and decode tok/s with the `signals` setting on and off, interleaved.

    flock /tmp/edgeprof-bench.lock .venv/bin/python scripts/bench_signals.py --threads 1
    flock /tmp/edgeprof-bench.lock .venv/bin/python scripts/bench_signals.py --backend onnx
    flock /tmp/edgeprof-bench.lock .venv/bin/python scripts/bench_signals.py --backend server

Two backends are loaded in this process, one with signals and one without (llama.cpp: EOG
ignored, so every request decodes exactly `--max-tokens`; ONNX Runtime: the demo model's int4
export, converted and cached once, and a prompt that runs to the limit). `--reps` rounds each
run one request per condition, in alternating order, so drifting background load hits both
alike; decode tok/s is (tokens - 1) / (last token - first token), as the runner computes it.
The difference of two medians of a noisy machine cannot resolve a cost of a fraction of a
percent, so the cost is also timed directly: a last pass runs `--timed` requests with `add`
wrapped in `perf_counter_ns` calls (about 0.1 us of their own), and the per-token median is
set against the median decode step with signals off.

`--backend server`: llama-cpp-python's OpenAI-compatible server on the demo model (`--threads`
threads), asked through the openai backend with and without `logprobs` (setting `logprobs`):
what asking a server on this machine for them costs its decode. No timed pass there.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PROMPT = ({"role": "user", "content": "Tell me a long story about a lighthouse keeper."},)


def _backend(kind: str, threads: int, signals: bool, url: str | None = None) -> Any:
    from edgeprof.backends.base import BackendOptions
    from edgeprof.models.files import demo_model_path

    if kind == "server":
        from edgeprof.backends import create_backend

        settings = {"base_url": url, "on_device": False, "logprobs": signals,
                    "price_in_usd_per_m": 0.0, "price_out_usd_per_m": 0.0}  # fmt: skip
        return create_backend("openai", BackendOptions(model="smollm2", settings=settings))
    if kind == "llamacpp":
        from edgeprof.backends.llamacpp import LlamaCppBackend, LlamaCppSettings

        options = BackendOptions(model=str(demo_model_path()), threads=threads, ctx=1024)
        return LlamaCppBackend(options, LlamaCppSettings(ignore_eos=True, signals=signals))
    from edgeprof.backends.onnxrt import OnnxBackend, OnnxSettings
    from edgeprof.models.export_cache import cached_export

    export = cached_export(demo_model_path(), weights="int4")
    options = BackendOptions(model=str(export.onnx_path), threads=threads, ctx=1024)
    return OnnxBackend(options, OnnxSettings(signals=signals))


def _timed_add(kind: str, samples: list[tuple[int, int]]) -> None:
    """Replace the decode loop's LogitSignals with one that times each `add`: (wall ns, this
    thread's CPU ns; the second leaves out time the thread spent preempted)."""
    import importlib

    from edgeprof.backends.signals import LogitSignals

    clock, cpu = time.perf_counter_ns, time.thread_time_ns

    class Timed(LogitSignals):
        __slots__ = ()

        def add(self, logits: Any, token: int) -> None:
            c0, t0 = cpu(), clock()
            super().add(logits, token)
            t1, c1 = clock(), cpu()
            samples.append((t1 - t0, c1 - c0))

    module = importlib.import_module(
        "edgeprof.backends.llamacpp" if kind == "llamacpp" else "edgeprof.backends.onnxrt"
    )
    module.LogitSignals = Timed  # type: ignore[attr-defined]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backend", choices=("llamacpp", "onnx", "server"), default="llamacpp")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--timed", type=int, default=5, help="requests of the timed pass")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()

    from edgeprof.backends.base import Request

    load_before = os.getloadavg()
    request = Request("signals", PROMPT, max_tokens=a.max_tokens)
    res: dict[str, Any] = {
        "backend": a.backend,
        "threads": a.threads,
        "reps": a.reps,
        "max_tokens": a.max_tokens,
        "load_avg_before": [round(x, 2) for x in load_before],
    }
    if a.backend == "server":
        with _server(a.threads) as url:
            tps = _interleaved(a.backend, a.threads, request, a.reps, url)
    else:
        tps = _interleaved(a.backend, a.threads, request, a.reps)
        res.update(_timed_figures(_timed_pass(a.backend, a.threads, request, a.timed), tps))
    res |= {
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "conditions": [
            {
                "signals": on,
                "decode_tps_median": statistics.median(tps[on]),
                "decode_tps_all": tps[on],
            }
            for on in (False, True)
        ],
    }
    print_table(res)
    if a.json:
        a.json.write_text(json.dumps(res, indent=2) + "\n")
    return 0


def _timed_figures(timed: list[tuple[int, int]], tps: dict[bool, list[float]]) -> dict[str, Any]:
    add_ns = [wall for wall, _ in timed]
    step_off_us = 1e6 / statistics.median(tps[False])
    deciles = statistics.quantiles(add_ns, n=10)
    return {
        "add_us_median": statistics.median(add_ns) / 1e3,
        "add_us_p10": deciles[0] / 1e3,
        "add_us_p90": deciles[-1] / 1e3,
        "add_samples": len(add_ns),
        "add_cpu_us_median": statistics.median(c for _, c in timed) / 1e3,
        "decode_step_us_off": step_off_us,
        "add_share_of_step": statistics.median(add_ns) / 1e3 / step_off_us,
    }


@contextlib.contextmanager
def _server(threads: int) -> Iterator[str]:
    """llama-cpp-python's server on the demo model, on loopback; its base URL."""
    import httpx

    from edgeprof.models.files import demo_model_path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(demo_model_path()),
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "1024",
         "--n_threads", str(threads), "--seed", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/v1/models", timeout=2).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("llama_cpp.server did not start")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def _interleaved(
    kind: str, threads: int, request: Any, reps: int, url: str | None = None
) -> dict[bool, list[float]]:
    """Decode tok/s of `reps` requests with signals off and on, in alternating order."""
    from edgeprof.analysis.metrics import request_metrics
    from edgeprof.measure.runner import measure

    backends = {on: _backend(kind, threads, on, url) for on in (False, True)}
    for b in backends.values():
        b.load()
    tps: dict[bool, list[float]] = {False: [], True: []}
    texts: dict[bool, set[str]] = {False: set(), True: set()}

    def one(on: bool) -> float:
        t0, t1, events, gen = measure(backends[on], request)
        texts[on].add(gen.text)
        if (gen.signals is not None) != on:
            raise RuntimeError(f"signals {'missing' if on else 'present'} with signals={on}")
        m = request_metrics(t0, events, t1, gen.input_tokens, gen.output_tokens)
        if m.decode_tps is None:
            raise RuntimeError("fewer than two tokens: no decode rate")
        return m.decode_tps

    for on in (False, True):  # warm-up: page in the weights
        one(on)
    for rep in range(reps):
        for on in (False, True) if rep % 2 == 0 else (True, False):
            tps[on].append(one(on))
        print(f"round {rep + 1}/{reps}", file=sys.stderr, flush=True)
    for b in backends.values():
        b.close()
    if texts[False] != texts[True]:
        raise RuntimeError("the greedy text differs with signals on and off")
    return tps


def _timed_pass(kind: str, threads: int, request: Any, n: int) -> list[tuple[int, int]]:
    """(wall, CPU) nanoseconds of each `LogitSignals.add` call in the decode loop over n
    requests."""
    from edgeprof.measure.runner import measure

    add_ns: list[tuple[int, int]] = []
    _timed_add(kind, add_ns)
    backend = _backend(kind, threads, True)
    backend.load()
    for _ in range(n):
        measure(backend, request)
    backend.close()
    return add_ns


def print_table(res: dict[str, Any]) -> None:
    print(
        f"signals: demo model on {res['backend']}, threads {res['threads']}, "
        f"{res['max_tokens']} tokens, {res['reps']} interleaved reps per condition; "
        f"load average {res['load_avg_before'][0]:.2f} before, {res['load_avg_after'][0]:.2f} "
        "after"
    )
    head = (
        f"{'signals':<8} {'decode tok/s (median)':>22} {'min..max':>16} {'ms/token':>9} {'loss':>8}"
    )
    print(head)
    print("-" * len(head))
    off = res["conditions"][0]["decode_tps_median"]
    for c in res["conditions"]:
        spread = f"{min(c['decode_tps_all']):.1f}..{max(c['decode_tps_all']):.1f}"
        loss = f"{100 * (1 - c['decode_tps_median'] / off):+.2f}%" if c["signals"] else "-"
        name = "on" if c["signals"] else "off"
        ms = 1e3 / c["decode_tps_median"]
        print(f"{name:<8} {c['decode_tps_median']:>22.2f} {spread:>16} {ms:>9.2f} {loss:>8}")
    if "add_share_of_step" not in res:  # the server: no timed pass
        return
    share = res["add_share_of_step"]
    print(
        f"LogitSignals.add in the loop: median {res['add_us_median']:.1f} us a token "
        f"(p10..p90 {res['add_us_p10']:.1f}..{res['add_us_p90']:.1f}, n={res['add_samples']}; "
        f"CPU time {res['add_cpu_us_median']:.1f} us) = {100 * share:.2f}% of a "
        f"{res['decode_step_us_off'] / 1e3:.2f} ms decode step"
    )
    print(f"target: < 1% of decode: {'met' if share < 0.01 else 'NOT met'}")


if __name__ == "__main__":
    raise SystemExit(main())
