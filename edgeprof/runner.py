"""One profiling session: idle baseline, model load, warm-up, repetitions, attribution.

Every request is written to the profile database as soon as it ends, so a run stopped by Ctrl-C
or a crash keeps everything it measured, with status `aborted` or `failed`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgeprof import __version__
from edgeprof.backends import Backend, BackendOptions, Generation, Request, create_backend
from edgeprof.device import environment, fingerprint
from edgeprof.energy import net_energy_j, window_energy
from edgeprof.errors import UsageError
from edgeprof.metrics import request_metrics
from edgeprof.models import sha256_file
from edgeprof.samplers import SensorEnv, discover
from edgeprof.samplers.base import unit_of
from edgeprof.samplers.recorder import Recorder
from edgeprof.store.db import Store, default_db_path
from edgeprof.store.ids import ulid
from edgeprof.workload import Prompt, load_suite


@dataclass
class RunConfig:
    backend: str = "llamacpp"
    model: str | None = None
    prompts: str | None = None  # a bundled suite name or a .jsonl path
    repetitions: int = 3
    warmup: int = 1  # warm-up requests before the measured ones: recorded, not counted
    max_tokens: int = 128
    threads: int | None = None
    ctx: int = 4096
    hz: float = 10.0
    db: Path | None = None
    label: str | None = None
    tdp_w: float | None = None
    sensors: list[str] | None = None
    idle_seconds: float = 3.0
    keep_cache: bool = False
    seed: int = 0
    concurrency: int = 1
    extra: dict[str, Any] = field(default_factory=dict)  # backend-specific options

    def validate(self) -> None:
        checks = [
            (self.repetitions >= 1, "--repetitions must be at least 1"),
            (self.warmup >= 0, "--warmup cannot be negative"),
            (self.max_tokens >= 1, "--max-tokens must be at least 1"),
            (0 < self.hz <= 1000, "--hz must be between 0 and 1000"),
            (self.idle_seconds >= 0, "--idle-seconds cannot be negative"),
            (self.concurrency >= 1, "--concurrency must be at least 1"),
            (self.tdp_w is None or self.tdp_w > 0, "--tdp-w must be positive"),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(message)

    def backend_options(self) -> BackendOptions:
        return BackendOptions(
            model=self.model,
            threads=self.threads,
            ctx=self.ctx,
            seed=self.seed,
            keep_cache=self.keep_cache,
            extra=dict(self.extra),
        )


@dataclass(frozen=True)
class Progress:
    phase: str  # "start" | "idle" | "load" | "warmup" | "measure" | "done"
    done: int = 0
    total: int = 0
    row: dict[str, Any] | None = None  # the request row just written


ProgressFn = Callable[[Progress], None]


@dataclass
class Measured:
    request: Request
    repetition: int
    warmup: bool
    t_start_ns: int
    t_end_ns: int
    events: list[tuple[int, int]]
    generation: Generation


def measure(
    backend: Backend, request: Request
) -> tuple[int, int, list[tuple[int, int]], Generation]:
    """Run one request: the only code inside a request's measured window."""
    events: list[tuple[int, int]] = []
    append = events.append
    t_start_ns = time.perf_counter_ns()
    gen = backend.generate(request)
    try:
        while True:
            ev = next(gen)
            append((ev.t_ns, ev.n_tokens))
    except StopIteration as stop:
        result: Generation = stop.value
    t_end_ns = time.perf_counter_ns()
    return t_start_ns, t_end_ns, events, result


def _schedule(
    prompts: list[Prompt], repetitions: int, warmup: int, max_tokens: int, seed: int
) -> Iterator[tuple[Request, int, bool]]:
    def request(p: Prompt) -> Request:
        return Request(p.id, p.messages, max_tokens=max_tokens, seed=seed)

    for i in range(warmup):
        yield request(prompts[i % len(prompts)]), 0, True
    for rep in range(repetitions):
        for p in prompts:
            yield request(p), rep, False


def profile(config: RunConfig, on_progress: ProgressFn | None = None) -> str:
    """Profile one backend on one prompt suite; returns the run id. Raises EdgeprofError on
    bad input before any work starts; KeyboardInterrupt leaves an `aborted` run behind."""
    config.validate()
    prompts = load_suite(config.prompts)
    backend = create_backend(config.backend, config.backend_options())
    backend.check()
    env = SensorEnv.from_environ(tdp_w=config.tdp_w)
    samplers = discover(env, config.sensors)
    notify = on_progress or (lambda _p: None)

    db_path = Path(config.db or default_db_path())
    store = Store(db_path)
    device = fingerprint(env.sys_root)
    known = store.device(device["id"])
    if backend.runs_locally and not (known and known.get("mem_bandwidth_gbs")):
        # Once per device, ~1 s: the bandwidth that bounds decode speed (the report's roofline).
        from edgeprof.bandwidth import measure_bandwidth_gbs

        device["mem_bandwidth_gbs"] = round(measure_bandwidth_gbs().gbs, 2)
    store.upsert_device(device)
    store.insert_prompts(p.row() for p in prompts)

    run_id = ulid()
    t0_ns = time.perf_counter_ns()
    store.insert_run(
        {
            "id": run_id,
            "device_id": device["id"],
            "backend": config.backend,
            "target": config.model or "demo",
            "label": config.label,
            "prompt_suite": prompts[0].suite,
            "params": {
                **backend.params(),
                "max_tokens": config.max_tokens,
                "repetitions": config.repetitions,
                "warmup": config.warmup,
                "concurrency": config.concurrency,
                "idle_seconds": config.idle_seconds,
                "sensors": config.sensors,
                "tdp_w": config.tdp_w,
            },
            "environment": environment(),
            "edgeprof_version": __version__,
            "started_at": _now_iso(),
            "status": "running",
            "recorder_hz": config.hz,
            "t0_ns": t0_ns,
        }
    )
    store.insert_sensors(
        {
            "run_id": run_id,
            "sensor": s.sensor,
            "metric": m,
            "domain": s.domain,
            "unit": unit_of(m),
            "method": s.method,
            "detail": s.detail,
        }
        for s in samplers
        for m in s.metrics
    )
    notify(Progress("start", row={"run_id": run_id, "db": str(db_path)}))
    recorder = Recorder(samplers, db_path, run_id, t0_ns, hz=config.hz)
    status, error = "failed", None
    run_fields: dict[str, Any] = {}
    recorder.start()
    try:
        run_fields = _run(config, backend, prompts, recorder, store, run_id, t0_ns, notify)
        status = "complete"
    except KeyboardInterrupt:
        status, error = "aborted", "interrupted (Ctrl-C)"
        raise
    except BaseException as e:
        status, error = "failed", f"{type(e).__name__}: {e}"
        raise
    finally:
        # The run's status must land whatever else fails here (a second Ctrl-C, a backend
        # that cannot close cleanly after an interrupted decode).
        try:
            recorder.stop()
        finally:
            run_fields.update(
                status=status,
                error=error or recorder.error,
                ended_at=_now_iso(),
                recorder_cpu_s_per_s=recorder.cpu_s_per_s(),
            )
            store.settle()
            store.update_run(run_id, run_fields)
            store.close()
            with contextlib.suppress(Exception):
                backend.close()
            notify(Progress("done"))
    return run_id


def _run(
    config: RunConfig,
    backend: Backend,
    prompts: list[Prompt],
    recorder: Recorder,
    store: Store,
    run_id: str,
    t0_ns: int,
    notify: ProgressFn,
) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    idle_power_w = None
    if backend.runs_locally and config.idle_seconds > 0:
        notify(Progress("idle"))
        a = recorder.mark()
        time.sleep(config.idle_seconds)
        b = recorder.mark()
        idle = window_energy(recorder.power_series(a, b), a, b)
        if idle.energy_j is not None:
            idle_power_w = idle.energy_j / ((b - a) / 1e9)
            fields.update(idle_power_w=idle_power_w, idle_method=idle.method)
            store.update_run(run_id, fields)

    notify(Progress("load"))
    a = recorder.mark()
    info = backend.load()
    b = recorder.mark()
    load = window_energy(recorder.power_series(a, b), a, b) if backend.runs_locally else None
    sha256 = info.sha256 or (sha256_file(Path(info.path)) if info.path else None)
    params = {**backend.params(), **dict(info.extra)}
    fields.update(
        target=info.target,
        model_path=info.path,
        model_sha256=sha256,
        model_size_bytes=info.size_bytes,
        quant=info.quant,
        load_s=(b - a) / 1e9,
        load_energy_j=load.energy_j if load else None,
    )
    run_params = store.runs([run_id])[0]["params"]
    fields["params"] = {**run_params, **params}
    store.update_run(run_id, fields)

    schedule = list(
        _schedule(prompts, config.repetitions, config.warmup, config.max_tokens, config.seed)
    )
    total = len(schedule)
    record = _Recorder(store, recorder, run_id, t0_ns, idle_power_w, backend.runs_locally)
    warm = [s for s in schedule if s[2]]
    timed = [s for s in schedule if not s[2]]
    done = 0
    for request, rep, is_warmup in warm:
        notify(Progress("warmup", done, total))
        row = record(_measure_one(backend, recorder, request, rep, is_warmup))
        done += 1
        notify(Progress("warmup", done, total, row))
    if config.concurrency == 1:
        for request, rep, is_warmup in timed:
            row = record(_measure_one(backend, recorder, request, rep, is_warmup))
            done += 1
            notify(Progress("measure", done, total, row))
    else:
        for measured in _measure_concurrently(backend, timed, config.concurrency):
            row = record(measured)
            done += 1
            notify(Progress("measure", done, total, row))
    return fields


def _measure_one(
    backend: Backend, recorder: Recorder, request: Request, rep: int, is_warmup: bool
) -> Measured:
    recorder.reset_peaks()
    recorder.mark()  # a reading just before the window opens, for the energy edge
    t_start, t_end, events, gen = measure(backend, request)
    recorder.mark()
    return Measured(request, rep, is_warmup, t_start, t_end, events, gen)


def _measure_concurrently(
    backend: Backend, schedule: list[tuple[Request, int, bool]], concurrency: int
) -> Iterator[Measured]:
    """Keep `concurrency` requests in flight (as llmperf does); yield each as it finishes."""
    pending: dict[Future[Any], tuple[Request, int, bool]] = {}
    queue = list(reversed(schedule))
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="edgeprof-req") as pool:
        try:
            while queue or pending:
                while queue and len(pending) < concurrency:
                    item = queue.pop()
                    pending[pool.submit(measure, backend, item[0])] = item
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    request, rep, is_warmup = pending.pop(fut)
                    t_start, t_end, events, gen = fut.result()
                    yield Measured(request, rep, is_warmup, t_start, t_end, events, gen)
        finally:
            for fut in pending:
                fut.cancel()


class _Recorder:
    """Turns a measured request into its database row (metrics, energy) and writes it."""

    def __init__(
        self,
        store: Store,
        recorder: Recorder,
        run_id: str,
        t0_ns: int,
        idle_power_w: float | None,
        local: bool,
    ) -> None:
        self.store, self.recorder, self.run_id = store, recorder, run_id
        self.t0_ns, self.idle_power_w, self.local = t0_ns, idle_power_w, local
        self.seq = 0

    def __call__(self, m: Measured) -> dict[str, Any]:
        g = m.generation
        metrics = request_metrics(
            m.t_start_ns, m.events, m.t_end_ns, g.input_tokens, g.output_tokens
        )
        energy_j = energy_net = method = avg_w = peak_w = None
        if self.local:
            w = window_energy(
                self.recorder.power_series(m.t_start_ns, m.t_end_ns), m.t_start_ns, m.t_end_ns
            )
            energy_j, method, avg_w, peak_w = w.energy_j, w.method, w.avg_power_w, w.peak_power_w
            energy_net = net_energy_j(
                energy_j, self.idle_power_w, (m.t_end_ns - m.t_start_ns) / 1e9
            )
        peak_rss = self.recorder.peak("rss_bytes")
        row = {
            "id": ulid(),
            "run_id": self.run_id,
            "prompt_id": m.request.prompt_id,
            "seq": self.seq,
            "repetition": m.repetition,
            "warmup": int(m.warmup),
            "input_tokens": g.input_tokens,
            "output_tokens": g.output_tokens,
            "token_count_method": g.token_count_method,
            "t_start_ns": m.t_start_ns - self.t0_ns,
            "t_end_ns": m.t_end_ns - self.t0_ns,
            "ttft_s": metrics.ttft_s,
            "prefill_tps": metrics.prefill_tps,
            "decode_tps": metrics.decode_tps,
            "e2e_s": metrics.e2e_s,
            "itl_p50_s": metrics.itl_p50_s,
            "itl_p90_s": metrics.itl_p90_s,
            "itl_p99_s": metrics.itl_p99_s,
            "finish_reason": g.finish_reason,
            "energy_j": energy_j,
            "energy_net_j": energy_net,
            "energy_method": method,
            "avg_power_w": avg_w,
            "peak_power_w": peak_w,
            "peak_rss_bytes": int(peak_rss) if peak_rss is not None else None,
            "cost_usd": g.cost_usd,
            "output_text": g.text,
            "error": g.error,
        }
        self.store.insert_request(row)
        self.seq += 1
        return row


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
