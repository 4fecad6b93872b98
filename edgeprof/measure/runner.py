"""One profiling session: idle baseline, model load, warm-up, repetitions, attribution.

Every request is written to the profile database as soon as it ends, so a run stopped by Ctrl-C
or a crash keeps everything it measured, with status `aborted` or `failed`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgeprof import __version__
from edgeprof.analysis.energy import net_energy_j, shared_energy_j, window_energy
from edgeprof.analysis.metrics import request_metrics
from edgeprof.backends import Backend, BackendOptions, Generation, Request, create_backend
from edgeprof.backends.settings import settings_dict
from edgeprof.errors import EdgeprofError, ProfileDBError, UsageError, WorkerCrashed
from edgeprof.grading.grade_runs import grade_rules, suite_has_expectations
from edgeprof.grading.records import save_expectations
from edgeprof.measure.device import environment, fingerprint
from edgeprof.measure.isolation import WorkerBackend, isolate, worker_pid
from edgeprof.measure.options import MeasureOptions
from edgeprof.measure.passes import Passes, schedule
from edgeprof.measure.workload import Prompt, load_suite, suite_sha256, with_system_prompt
from edgeprof.models.files import sha256_file
from edgeprof.samplers import SensorEnv, discover
from edgeprof.samplers.base import Sampler, unit_of
from edgeprof.samplers.recorder import Recorder
from edgeprof.store.db import Store, default_db_path
from edgeprof.store.ids import ulid
from edgeprof.store.liveness import this_process


@dataclass(kw_only=True)
class RunConfig(MeasureOptions):
    """One profiling session: a backend and a model measured as `MeasureOptions` say."""

    backend: str = "llamacpp"
    model: str | None = None
    hz: float = 10.0
    db: Path | None = None
    label: str | None = None
    keep_cache: bool = False
    seed: int = 0
    concurrency: int = 1
    # A shared system prompt given to every request (replacing the suite's own): the prefix
    # prompt caching reuses (`keep_cache` on the device)
    system_prompt: str | None = None
    # Open-ended runs (edgeprof.measure.passes): a soak repeats the suite until `duration_s` is up;
    # `target_ci` repeats it (at least `repetitions`, at most `max_repetitions` times) until
    # the 95 % intervals of decode tok/s and J/token are that narrow (0.03 = ±3 %).
    duration_s: float | None = None
    target_ci: float | None = None
    max_repetitions: int = 30
    # what the user says of the setup (`--note cooling=passive`): stored in params["notes"]
    notes: dict[str, str] = field(default_factory=dict)
    # Backend-specific settings by name (see each backend's `Settings` dataclass).
    settings: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        # Upper bounds are far past any real use; they keep a typo (or an inf) from becoming
        # an overflow deep inside the run instead of a message now.
        checks = [
            (1 <= self.repetitions <= 100_000, "`repetitions` must be between 1 and 100000"),
            (0 <= self.warmup <= 10_000, "`warmup` must be between 0 and 10000"),
            (1 <= self.max_tokens <= 1_000_000, "`max_tokens` must be between 1 and 1000000"),
            (0 < self.hz <= 1000, "`hz` must be between 0 and 1000"),
            (0 <= self.idle_seconds <= 3600, "`idle_seconds` must be between 0 and 3600"),
            (1 <= self.concurrency <= 4096, "`concurrency` must be between 1 and 4096"),
            (
                self.tdp_w is None or 0 < self.tdp_w <= 100_000,
                "`tdp_w` must be a power in watts above 0",
            ),
            (
                self.threads is None or 1 <= self.threads <= 4096,
                "`threads` must be between 1 and 4096",
            ),
            (16 <= self.ctx <= 2**24, "`ctx` must be between 16 and 16777216 tokens"),
            (
                2 <= self.max_repetitions <= 100_000,
                "`max_repetitions` must be between 2 and 100000",
            ),
            (
                self.concurrency == 1 or not self.passes().open_ended,
                "--duration and --target-ci repeat the suite one request at a time; use "
                "--concurrency 1 with them",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(message)

    def passes(self) -> Passes:
        return Passes(self.repetitions, self.duration_s, self.target_ci, self.max_repetitions)

    def backend_options(self) -> BackendOptions:
        return BackendOptions(
            model=self.model,
            threads=self.threads,
            ctx=self.ctx,
            seed=self.seed,
            keep_cache=self.keep_cache,
            # the prompt format given as options (decide, sweep) joins the backend's settings
            settings={**{k: v for k, v in self.prompt_settings().items() if v}, **self.settings},
        )


@dataclass(frozen=True)
class Progress:
    phase: str  # "start" | "idle" | "load" | "warmup" | "measure" | "done"
    done: int = 0
    total: int = 0  # 0: open-ended (a soak, --target-ci)
    row: dict[str, Any] | None = None  # the request row just written
    detail: str = ""  # how far an open-ended run is: "soak 1:20 of 3:00", "±4.1% (target ±3%)"


OnProgress = Callable[[Progress], None]


@dataclass
class Measured:
    request: Request
    repetition: int
    warmup: bool
    t_start_ns: int
    t_end_ns: int
    events: list[tuple[int, int]]
    generation: Generation
    # Batched requests: (t0_ns, t1_ns, requests in the batch) pieces of the window.
    shares: tuple[tuple[int, int, int], ...] = ()


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
        return Request(
            p.id, p.messages, max_tokens=max_tokens, seed=seed, response_schema=p.response_schema
        )

    for i in range(warmup):
        yield request(prompts[i % len(prompts)]), 0, True
    for rep in range(repetitions):
        for p in prompts:
            yield request(p), rep, False


def profile(config: RunConfig, on_progress: OnProgress | None = None) -> str:
    """Profile one backend on one prompt suite; returns the run id. Raises EdgeprofError on
    bad input before any work starts; KeyboardInterrupt leaves an `aborted` run behind.
    A suite with expectations has every answer graded by its deterministic checks at the end
    (judged checks: `edgeprof grade --judge`)."""
    run_id = _profile(config, on_progress)
    with Store(Path(config.db or default_db_path())) as store:
        if suite_has_expectations(store, run_id):
            grade_rules(store, run_id)
    return run_id


def _record_prompts(store: Store, prompts: list[Prompt]) -> None:
    """The prompts, and beside them what their answers must satisfy (re-graded from here)."""
    store.insert_prompts(p.row() for p in prompts)
    save_expectations(store, prompts)


def _profile(config: RunConfig, on_progress: OnProgress | None) -> str:
    config.validate()
    prompts = load_suite(config.prompts)
    if config.system_prompt is not None:
        prompts = with_system_prompt(prompts, config.system_prompt)
    backend = create_backend(config.backend, config.backend_options())
    backend.check()
    batch_params = _check_concurrency(config, backend, prompts)
    backend, env, samplers = _start(config, backend)
    notify = on_progress or (lambda _p: None)

    db_path = Path(config.db or default_db_path())
    t0_ns = time.perf_counter_ns()
    with _closing_on_error(backend):
        store = Store(db_path)
        run_id = _open_run(store, config, backend, env, prompts, samplers, t0_ns, batch_params)
    notify(Progress("start", row={"run_id": run_id, "db": str(db_path)}))
    recorder = _recorder(backend, samplers, db_path, run_id, t0_ns, config.hz)
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
        # edgeprof's own errors already say what happened; others need their type to make sense.
        status, error = (
            "failed",
            str(e) if isinstance(e, EdgeprofError) else f"{type(e).__name__}: {e}",
        )
        if isinstance(e, WorkerCrashed):
            run_fields.update(_crash_fields(e, db_path, run_id))
            error = str(e)
        raise
    finally:
        # The run's status must land whatever else fails here (a second Ctrl-C, a backend
        # that cannot close cleanly after an interrupted decode).
        try:
            recorder.stop()
        finally:
            raising = status != "complete"  # an exception is on its way out already
            if recorder.write_error and not raising:
                status, error = "failed", f"samples were not all written: {recorder.write_error}"
            run_fields.update(
                status=status,
                error=error or recorder.error,
                ended_at=_now_iso(),
                recorder_cpu_s_per_s=recorder.cpu_s_per_s(),
            )
            problem = _finish(store, run_id, run_fields)
            with contextlib.suppress(Exception):
                backend.close()
            notify(Progress("done"))
            # With no other error on its way out, a write that failed is the error to show.
            if not raising and (problem or status == "failed"):
                raise problem or ProfileDBError(str(error))
    return run_id


def _recorder(
    backend: Backend, samplers: list[Sampler], db_path: Path, run_id: str, t0_ns: int, hz: float
) -> Recorder:
    recorder = Recorder(samplers, db_path, run_id, t0_ns, hz=hz)
    if isinstance(backend, WorkerBackend):  # a SIGKILL's message says how much it held
        backend.peak_rss_bytes = lambda: recorder.peak("rss_bytes")
    return recorder


def _open_run(
    store: Store,
    config: RunConfig,
    backend: Backend,
    env: SensorEnv,
    prompts: list[Prompt],
    samplers: list[Sampler],
    t0_ns: int,
    batch_params: dict[str, Any],
) -> str:
    """The device, the prompts and the run's row (status `running`); returns the run id."""
    device_id = _record_device(store, env, backend)
    _record_prompts(store, prompts)
    run_id = _insert_run(store, config, backend, prompts, device_id, samplers, t0_ns)
    if batch_params:
        params = {**store.runs([run_id])[0]["params"], **batch_params}
        store.update_run(run_id, {"params": params})
    return run_id


def _start(config: RunConfig, backend: Backend) -> tuple[Backend, SensorEnv, list[Sampler]]:
    """The backend in its worker (started now, so the samplers measure the worker's pid), and
    the run's samplers; the worker is stopped again if the samplers cannot be had."""
    backend = isolate(backend, config.in_process)
    with _closing_on_error(backend):
        if isinstance(backend, WorkerBackend):
            backend.start()
        # the worker's pid, or a local server's process (found by check())
        pid = worker_pid(backend) or backend.measured_pid()
        env = SensorEnv.from_environ(tdp_w=config.tdp_w, pid=pid)
        return backend, env, discover(env, config.sensors)


@contextlib.contextmanager
def _closing_on_error(backend: Backend) -> Iterator[None]:
    """Before the run's own try: a failure closes the backend (stops its worker) on its way."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            backend.close()
        raise


def _crash_fields(e: WorkerCrashed, db_path: Path, run_id: str) -> dict[str, Any]:
    """The crashed worker's trace and log for the run's row; their files move beside the
    database (`<db folder>/crashes/<run id>/`), out of the temporary folder."""
    import shutil

    files = e.files
    if files:
        dest = db_path.parent / "crashes" / run_id
        with contextlib.suppress(OSError):
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(files, dest)
            files = str(dest)
        # the one line the user sees, here and in `report`, says where to look
        e.args = (f"{e.args[0]}; its trace and last log lines are in {files}",)
    return {"worker_trace": e.trace or None, "worker_log": e.log or None, "worker_files": files}


def _check_concurrency(
    config: RunConfig, backend: Backend, prompts: list[Prompt]
) -> dict[str, Any]:
    """`--concurrency` above 1 on the device: a backend that batches, and a KV cache that holds
    that many requests at once; checked before the run is recorded."""
    if config.concurrency == 1 or not backend.runs_locally:
        return {}
    if not backend.batches:
        raise UsageError(
            f"the {config.backend} backend cannot decode several requests in one batch; use "
            "`concurrency` 1, or the llamacpp or onnx backend, which batch them"
        )
    schedule = _schedule(prompts, config.repetitions, config.warmup, config.max_tokens, config.seed)
    measured = [request for request, _, warmup in schedule if not warmup]
    return backend.check_concurrency(measured, config.concurrency)


def _finish(store: Store, run_id: str, fields: dict[str, Any]) -> ProfileDBError | None:
    """Land the run's final row and close; a failure is returned, never raised, so that the
    error already on its way out (Ctrl-C, a crash, a full disk) is the one the user sees."""
    problem: ProfileDBError | None = None
    try:
        store.settle()
    except ProfileDBError as e:
        problem = e
    try:
        store.update_run(run_id, fields)
    except ProfileDBError as e:
        problem = problem or e
        # A full disk: a checkpoint may free the write-ahead log's pages for this one row.
        with contextlib.suppress(Exception):
            store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            store.update_run(run_id, fields)
    finally:
        store.close()
    return problem


def _record_device(store: Store, env: SensorEnv, backend: Backend) -> str:
    device = fingerprint(env.sys_root)
    known = store.device(device["id"])
    if backend.runs_locally and not (known and known.get("mem_bandwidth_gbs")):
        # Once per device, ~1 s: the bandwidth that bounds decode speed (the report's roofline).
        from edgeprof.measure.bandwidth import measure_bandwidth_gbs

        device["mem_bandwidth_gbs"] = round(measure_bandwidth_gbs().gbs, 2)
    store.upsert_device(device)
    return str(device["id"])


def _insert_run(
    store: Store,
    config: RunConfig,
    backend: Backend,
    prompts: list[Prompt],
    device_id: str,
    samplers: list[Sampler],
    t0_ns: int,
) -> str:
    """The run's row (status `running`) and its sensors, before any measurement."""
    from edgeprof.measure.power_setup import power_setup

    run_id = ulid()
    store.insert_run(
        {
            "id": run_id,
            "device_id": device_id,
            "backend": config.backend,
            "target_kind": backend.kind,
            "target": config.model or "demo",
            "label": config.label,
            "prompt_suite": prompts[0].suite,
            "params": {
                **backend.params(),
                "max_tokens": config.max_tokens,
                "repetitions": config.repetitions,
                "warmup": config.warmup,
                "concurrency": config.concurrency,
                "planned_requests": config.passes().planned_requests(len(prompts)),
                "duration_s": config.duration_s,
                "target_ci": config.target_ci,
                "max_repetitions": config.max_repetitions if config.target_ci else None,
                "notes": config.notes,
                "idle_seconds": config.idle_seconds,
                "sensors": config.sensors,
                "tdp_w": config.tdp_w,
                # What makes two runs comparable (edgeprof.decision.reuse): the prompts'
                # content, not the suite's name, and every backend setting, including those
                # params() omits.
                "suite_sha256": suite_sha256(prompts),
                **_settings_params(backend),
                # Governor, nvpmodel mode, AC or battery: they change speed and energy.
                **({"power_setup": power_setup()} if backend.runs_locally else {}),
            },
            "environment": environment(),
            "edgeprof_version": __version__,
            "started_at": _now_iso(),
            "status": "running",
            "recorder_hz": config.hz,
            "t0_ns": t0_ns,
            **this_process(),
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
    return run_id


def _settings_params(backend: Backend) -> dict[str, Any]:
    """`{"settings": ...}`, a device backend's settings as JSON values (a plugin's value JSON
    cannot hold, an enum, as its text). Never a remote one's: its `base_url` may carry a key,
    which its own params() records only with the credentials removed."""
    settings = backend.settings
    if not backend.runs_locally or not dataclasses.is_dataclass(settings):
        return {}
    values = json.loads(json.dumps(settings_dict(settings), default=str))
    return {"settings": values}


def _run(
    config: RunConfig,
    backend: Backend,
    prompts: list[Prompt],
    recorder: Recorder,
    store: Store,
    run_id: str,
    t0_ns: int,
    notify: OnProgress,
) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    idle_power_w = None
    if backend.runs_locally and config.idle_seconds > 0:
        notify(Progress("idle"))
        idle_power_w = _measure_idle(recorder, config.idle_seconds, fields)
        store.update_run(run_id, fields)
    notify(Progress("load"))
    fields.update(_load_model(backend, recorder))
    run_params = store.runs([run_id])[0]["params"]
    fields["params"] = {**run_params, **fields.pop("model_params")}
    store.update_run(run_id, fields)

    record = _Recorder(store, recorder, run_id, t0_ns, idle_power_w, backend.runs_locally)
    passes = config.passes()
    if not passes.open_ended:
        planned = _schedule(
            prompts, config.repetitions, config.warmup, config.max_tokens, config.seed
        )
        _measure_all(backend, recorder, list(planned), config.concurrency, record, notify)
        return fields
    try:
        _measure_passes(backend, recorder, config, prompts, passes, record, notify)
    finally:
        # how the passes ended, written now so that an interrupted soak keeps it too
        fields["params"] = {**fields["params"], **passes.params()}
        with contextlib.suppress(ProfileDBError):
            store.update_run(run_id, {"params": fields["params"]})
    return fields


def _measure_idle(recorder: Recorder, seconds: float, fields: dict[str, Any]) -> float | None:
    """Idle power before the model loads: the baseline that net energy subtracts."""
    with recorder.window("idle") as w:
        time.sleep(seconds)
    if w.energy.energy_j is None:
        return None
    idle_power_w = w.energy.energy_j / w.duration_s
    fields.update(idle_power_w=idle_power_w, idle_method=w.energy.method)
    return idle_power_w


def _load_model(backend: Backend, recorder: Recorder) -> dict[str, Any]:
    """Load in its own timed and metered window; the file is hashed after it, outside."""
    from edgeprof.measure.page_cache import model_cached_fraction

    # Cold (read from storage) or warm (page cache): measured just before the load. llama.cpp
    # maps the file, so a cold start shows in the first request more than in load_s.
    model_file = getattr(backend, "path", None) or backend.options.model
    cached = model_cached_fraction(model_file) if backend.runs_locally and model_file else None
    a = recorder.mark()
    info = backend.load()
    b = recorder.mark()
    load = window_energy(recorder.power_series(a, b), a, b) if backend.runs_locally else None
    sha256 = info.sha256 or (sha256_file(Path(info.path)) if info.path else None)
    return {
        "target": info.target,
        "model_path": info.path,
        "model_sha256": sha256,
        "model_size_bytes": info.size_bytes,
        "quant": info.quant,
        "load_s": (b - a) / 1e9,
        "load_energy_j": load.energy_j if load else None,
        "model_params": {
            **backend.params(),
            **dict(info.extra),
            **({"page_cache_fraction": round(cached, 4)} if cached is not None else {}),
        },
    }


def _measure_all(
    backend: Backend,
    recorder: Recorder,
    schedule: list[tuple[Request, int, bool]],
    concurrency: int,
    record: _Recorder,
    notify: OnProgress,
) -> None:
    """Warm-up requests one at a time, then the measured ones, `concurrency` at once."""
    total = len(schedule)
    done = 0
    for request, rep, is_warmup in (s for s in schedule if s[2]):
        notify(Progress("warmup", done, total))
        row = record(_measure_one(backend, recorder, request, rep, is_warmup))
        done += 1
        notify(Progress("warmup", done, total, row))
    timed = [s for s in schedule if not s[2]]
    if concurrency > 1 and backend.runs_locally:
        measured: Iterator[Measured] = _measure_batched(backend, recorder, timed, concurrency)
    elif concurrency == 1:
        measured = (
            _measure_one(backend, recorder, request, rep, is_warmup)
            for request, rep, is_warmup in timed
        )
    else:
        measured = _measure_concurrently(backend, timed, concurrency)
    for m in measured:
        row = record(m)
        done += 1
        notify(Progress("measure", done, total, row))


def _measure_passes(
    backend: Backend,
    recorder: Recorder,
    config: RunConfig,
    prompts: list[Prompt],
    passes: Passes,
    record: _Recorder,
    notify: OnProgress,
) -> None:
    """An open-ended run, one request at a time: warm-up, then passes over the suite until
    `passes` says stop (the clock, or an interval narrow enough)."""
    warmups = list(_schedule(prompts, 0, config.warmup, config.max_tokens, config.seed))
    done = 0
    for request, rep, is_warmup in warmups:
        notify(Progress("warmup", done, len(warmups)))
        row = record(_measure_one(backend, recorder, request, rep, is_warmup))
        done += 1
        notify(Progress("warmup", done, len(warmups), row))
    start_ns = time.perf_counter_ns()

    def elapsed_s() -> float:
        return (time.perf_counter_ns() - start_ns) / 1e9

    for rep, i in schedule(passes, len(prompts), elapsed_s):
        p = prompts[i]
        request = Request(
            p.id,
            p.messages,
            max_tokens=config.max_tokens,
            seed=config.seed,
            response_schema=p.response_schema,
        )
        row = record(_measure_one(backend, recorder, request, rep, False))
        passes.observe(row)
        done += 1
        notify(Progress("measure", done, 0, row, passes.status(elapsed_s())))


def _measure_one(
    backend: Backend, recorder: Recorder, request: Request, rep: int, is_warmup: bool
) -> Measured:
    recorder.reset_peaks()
    recorder.mark()  # a reading just before the window opens, for the energy edge
    t_start, t_end, events, gen = measure(backend, request)
    recorder.mark()
    return Measured(request, rep, is_warmup, t_start, t_end, events, gen)


def _measure_batched(
    backend: Backend,
    recorder: Recorder,
    schedule: list[tuple[Request, int, bool]],
    concurrency: int,
) -> Iterator[Measured]:
    """The backend's own batching: `concurrency` requests decoded together, a new one joining
    as each finishes. Each result carries the pieces of its window and how many requests
    shared them, so that the device's energy is split between them, not counted N times."""
    reps = {id(request): (rep, is_warmup) for request, rep, is_warmup in schedule}
    recorder.reset_peaks()
    recorder.mark()
    for request, result in backend.serve([s[0] for s in schedule], concurrency):
        recorder.mark()
        rep, is_warmup = reps[id(request)]
        yield Measured(request, rep, is_warmup, result.t_start_ns, result.t_end_ns,
                       result.events, result.generation, tuple(result.shares))  # fmt: skip


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
            series = self.recorder.power_series(m.t_start_ns, m.t_end_ns)
            w = window_energy(series, m.t_start_ns, m.t_end_ns)
            energy_j, method, avg_w, peak_w = w.energy_j, w.method, w.avg_power_w, w.peak_power_w
            busy_s = (m.t_end_ns - m.t_start_ns) / 1e9
            if m.shares:  # a batch: this request's share of the device over its window
                energy_j, busy_s = shared_energy_j(series, m.shares)
                avg_w = energy_j / busy_s if energy_j is not None and busy_s > 0 else None
            energy_net = net_energy_j(energy_j, self.idle_power_w, busy_s)
        peak_rss = self.recorder.peak("rss_bytes")
        row = {
            "id": ulid(),
            "run_id": self.run_id,
            "prompt_id": m.request.prompt_id,
            "seq": self.seq,
            "repetition": m.repetition,
            "warmup": int(m.warmup),
            "input_tokens": g.input_tokens,
            "cached_input_tokens": g.cached_input_tokens,
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
            "attempts": g.attempts,
            "retry_wait_s": g.retry_wait_s,
            "ttft_final_attempt_s": _ttft_final_attempt_s(m, metrics.ttft_s),
            **(g.server_timings.row() if g.server_timings is not None else {}),
            **(g.signals.row() if g.signals is not None else {}),
        }
        self.store.insert_request(row)
        self.seq += 1
        return row


def _ttft_final_attempt_s(m: Measured, ttft_s: float | None) -> float | None:
    """TTFT counted from the start of the attempt that answered: the server's own latency,
    where `ttft_s` is what the user felt, retries and their waits included."""
    last = m.generation.last_attempt_ns
    if ttft_s is None or last is None or not m.events:
        return ttft_s
    return max(0.0, (m.events[0][0] - last) / 1e9)


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
