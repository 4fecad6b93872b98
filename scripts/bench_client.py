"""Client overhead of the cloud backends, against the tests' canned streaming server.

1. Time edgeprof adds per chunk: the OpenAI backend draining a 2,000-chunk stream, against
   plain httpx reading the same bytes without parsing (the floor), and the official openai SDK
   for comparison. The server runs in its own process; the chunks come as fast as it can send.
   Goal: < 0.1 ms per chunk.
2. `--concurrency 32` keeps 32 streams in flight: the runner's thread pool against slow streams
   (20 chunks, 50 ms apart), counting simultaneous open streams at the server.

Run under the shared lock:  flock /tmp/edgeprof-bench.lock .venv/bin/python scripts/bench_client.py
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgeprof.backends import BackendOptions, Request, create_backend  # noqa: E402
from tests.cloud_fixtures import free_port  # noqa: E402
from tests.cloudserver import CloudServer  # noqa: E402

MESSAGES = ({"role": "user", "content": "Stream me some canned text."},)


def _serve(port: int) -> None:
    CloudServer(port).serve_forever()


def _start_server() -> tuple[multiprocessing.Process, str]:
    port = free_port()
    proc = multiprocessing.Process(target=_serve, args=(port,), daemon=True)
    proc.start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            httpx.get(url + "/v1/models", timeout=1)
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError("canned server did not start")


def _timed(fn: object, reps: int) -> tuple[float, float]:
    """Median wall and client-thread CPU seconds of `fn()` over `reps` runs (after one warm-up)."""
    fn()  # type: ignore[operator]
    walls, cpus = [], []
    for _ in range(reps):
        w0, c0 = time.perf_counter(), time.thread_time()
        fn()  # type: ignore[operator]
        walls.append(time.perf_counter() - w0)
        cpus.append(time.thread_time() - c0)
    return statistics.median(walls), statistics.median(cpus)


def overhead(url: str, chunks: int, reps: int) -> dict[str, float]:
    model = f"chunks={chunks}"
    body = {"model": model, "messages": list(MESSAGES), "max_tokens": chunks, "stream": True,
            "stream_options": {"include_usage": True}}  # fmt: skip
    client = httpx.Client(timeout=60)

    def raw() -> None:
        with client.stream("POST", url + "/v1/chat/completions", json=body) as r:
            for _ in r.iter_bytes():
                pass

    backend = create_backend(
        "openai",
        BackendOptions(model=model, settings={"base_url": url, "price_in_usd_per_m": 1.0,
                                           "price_out_usd_per_m": 1.0}),
    )  # fmt: skip
    backend.load()
    req = Request("bench", MESSAGES, max_tokens=chunks)

    def edgeprof() -> None:
        gen = backend.generate(req)
        n = 0
        try:
            while True:
                next(gen)
                n += 1
        except StopIteration as stop:
            assert stop.value.error is None and n == chunks, stop.value

    import openai

    sdk = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)

    def official_sdk() -> None:
        stream = sdk.chat.completions.create(
            model=model, messages=list(MESSAGES), max_tokens=chunks, stream=True,  # type: ignore[arg-type]
            stream_options={"include_usage": True},
        )  # fmt: skip
        for _ in stream:
            pass

    res: dict[str, float] = {}
    for name, fn in (("httpx_raw", raw), ("edgeprof", edgeprof), ("openai_sdk", official_sdk)):
        wall, cpu = _timed(fn, reps)
        res[f"{name}_wall_ms_per_chunk"] = wall / chunks * 1e3
        res[f"{name}_cpu_ms_per_chunk"] = cpu / chunks * 1e3
    res["edgeprof_added_wall_ms_per_chunk"] = (
        res["edgeprof_wall_ms_per_chunk"] - res["httpx_raw_wall_ms_per_chunk"]
    )
    res["edgeprof_added_cpu_ms_per_chunk"] = (
        res["edgeprof_cpu_ms_per_chunk"] - res["httpx_raw_cpu_ms_per_chunk"]
    )
    backend.close()
    return res


def concurrency(url: str, n: int) -> dict[str, float]:
    from edgeprof.measure.runner import RunConfig, profile
    from edgeprof.store.db import Store

    with tempfile.TemporaryDirectory() as tmp:
        prompts = Path(tmp) / "one.jsonl"
        prompts.write_text('{"name": "a", "prompt": "Stream slowly."}\n')
        db = Path(tmp) / "bench.db"
        httpx.get(url + "/stats")  # the server process's own counters, read after
        t0 = time.perf_counter()
        run_id = profile(
            RunConfig(
                backend="openai", model="chunks=20&delay_ms=50", prompts=str(prompts),
                repetitions=2 * n, warmup=0, max_tokens=20, idle_seconds=0, db=db,
                concurrency=n, settings={"base_url": url, "price_in_usd_per_m": 1.0,
                                      "price_out_usd_per_m": 1.0, "on_device": False},
            )
        )  # fmt: skip
        wall = time.perf_counter() - t0
        with Store(db) as store:
            rows = store.requests(run_id)
        stats = httpx.get(url + "/stats").json()
    ok = [r for r in rows if r["error"] is None]
    tokens = sum(r["output_tokens"] for r in ok)
    return {
        "concurrency": n,
        "requests": len(rows),
        "errors": len(rows) - len(ok),
        "max_streams_in_flight_at_server": stats["max_in_flight"],
        "wall_s": wall,
        "ideal_wall_s": 2 * 20 * 0.05,  # two waves of 1-second streams
        "aggregate_output_tps": tokens / wall,
        "ttft_p50_s": statistics.median(r["ttft_s"] for r in ok),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=2000)
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--concurrency", type=int, default=32)
    args = ap.parse_args()
    proc, url = _start_server()
    try:
        result = {
            "overhead": overhead(url, args.chunks, args.reps),
            "concurrency": concurrency(url, args.concurrency),
        }
    finally:
        proc.terminate()
    print(json.dumps(result, indent=2))
    added = result["overhead"]["edgeprof_added_wall_ms_per_chunk"]
    streams = result["concurrency"]["max_streams_in_flight_at_server"]
    print(
        f"edgeprof adds {added * 1000:.1f} µs per chunk (goal < 100 µs); "
        f"{streams} of {args.concurrency} streams were in flight at once",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
