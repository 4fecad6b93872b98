"""The measuring half of `edgeprof decide`: this device probed once, then each target profiled,
or an earlier run of the same thing reused."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeprof.decision.compare import Figure
from edgeprof.decision.config import DecideConfig, StepEvent, StepFn, StepState, TargetRun
from edgeprof.errors import EdgeprofError, WorkerCrashed
from edgeprof.measure.options import MeasureOptions
from edgeprof.samplers.estimate import assumption_of

if TYPE_CHECKING:
    from edgeprof.measure.runner import RunConfig
    from edgeprof.store.db import Store

LLAMACPP_TARGET = "llama.cpp"
ONNX_TARGET = "ONNX int4"
ONNX_WEIGHTS = "int4"


@dataclass
class Probe:
    """This device, as `decide` sees it once before any profiling."""

    device: dict[str, Any]
    sensors: list[str]  # power sensors that read here (the estimator not counted)
    preset: Any = None  # edgeprof.decision.presets.DevicePreset
    preset_mismatch: str | None = None
    battery: Any = None  # edgeprof.samplers.battery.BatteryCapacity
    tdp_w: float | None = None  # for the estimator, where no sensor reads
    tdp_source: str | None = None
    notes: list[str] = field(default_factory=list)

    @classmethod
    def this_device(cls, tdp_w: float | None = None, preset: str | None = None) -> Probe:
        """Probe this machine; `tdp_w` is the user's TDP for the estimator, `preset` a
        device preset id to price the device with (checked against what is found here)."""
        from edgeprof.measure.device import fingerprint
        from edgeprof.samplers import FALLBACK_SOURCE, SensorEnv, probe_all
        from edgeprof.samplers.battery import battery_capacity

        env = SensorEnv.from_environ(tdp_w=tdp_w)
        device = fingerprint(env.sys_root)
        sensors = [p.sensor for p in probe_all(env) if p.available and p.source != FALLBACK_SOURCE]
        probe = cls(device, sensors, battery=battery_capacity(env))
        if tdp_w is not None:
            probe.tdp_w, probe.tdp_source = tdp_w, "--tdp-w"
        if preset:
            probe._apply_preset(preset)
        return probe

    def _apply_preset(self, preset_id: str) -> None:
        from edgeprof.decision.presets import get_preset, preset_mismatch

        self.preset = get_preset(preset_id)
        battery_wh = self.battery.wh if self.battery is not None else None
        # a copy: the battery is a matching clue (laptops), not part of the stored fingerprint
        self.preset_mismatch = preset_mismatch(
            self.preset, {**self.device, "battery_wh": battery_wh}
        )
        if self.preset_mismatch:
            self.notes.append(f"preset {self.preset.id}: {self.preset_mismatch}")
            return
        busy = self.preset.busy_power_w
        if self.tdp_w is None and busy is not None and not self.sensors:
            # The preset's measured draw under load beats a TDP table for the estimator.
            self.tdp_w = float(busy.value)
            self.tdp_source = f"preset {self.preset.id}: {busy.source} (as of {busy.as_of})"

    def summary(self) -> str:
        sensors = ", ".join(self.sensors) if self.sensors else "none (energy will be estimated)"
        return f"{self.device_name()}; power sensors: {sensors}"

    def device_name(self) -> str:
        here = str(self.device.get("label") or self.device.get("cpu_model") or "this device")
        if self.preset is None:
            return here
        if self.preset_mismatch:
            return f"this machine ({here}) priced as a {self.preset.name}"
        return str(self.preset.name)

    def figures(self) -> list[Figure]:
        if self.tdp_w is None:
            return []
        source = self.tdp_source or "--tdp-w"
        return [Figure("tdp_w", self.tdp_w, "W", "assumed", source)]

    def device_dict(self) -> dict[str, Any]:
        keys = ("id", "label", "cpu_model", "threads", "ram_bytes", "arch", "accelerators")
        out = {k: self.device.get(k) for k in keys}
        out["power_sensors"] = self.sensors
        out["preset"] = self.preset.id if self.preset is not None else None
        out["preset_mismatch"] = self.preset_mismatch
        return out

    def energy_sources(self, store: Store, run_ids: Sequence[str]) -> list[str]:
        """How each run's energy was obtained: the sensors that measured it, or the
        estimator's assumption (its TDP and where that came from)."""
        seen: list[str] = []
        for run_id in run_ids:
            for s in store.sensors(run_id):
                if s["metric"] != "power_w":
                    continue
                if s["method"] == "estimated":
                    # the estimator's TDP and where it came from is the news
                    words = "estimated, " + assumption_of(s["detail"] or "")
                else:
                    words = f"measured by {s['sensor']}"
                if words not in seen:
                    seen.append(words)
        return seen


# -- device targets ------------------------------------------------------------------------


def profile_devices(
    config: DecideConfig,
    probe: Probe,
    db_path: Path,
    step: StepFn,
    notes: list[str],
    crashed: list[str] | None = None,
) -> list[TargetRun]:
    """llama.cpp on the GGUF, and ONNX Runtime on its int4 export unless `onnx` is off or the
    export cannot be made (then a note says why). A target whose worker crashed is left out,
    named in `crashed` (for the verdict) and in `notes` (with its failed run's reason)."""
    crashed = [] if crashed is None else crashed
    from edgeprof.measure.workload import load_suite, suite_sha256
    from edgeprof.models.files import resolve_model, sha256_file
    from edgeprof.models.gguf_header import file_quant

    gguf = resolve_model(config.model)
    suite = suite_sha256(load_suite(config.prompts))
    sha = sha256_file(gguf)
    quant = file_quant(gguf)
    label = prompt_label_for(gguf, config)
    runs = []
    for n in config.concurrency:
        spec = TargetSpec(LLAMACPP_TARGET if n == 1 else f"{LLAMACPP_TARGET} ×{n}", "llamacpp",
                          config.model, sha, quant, suite, concurrency=n,
                          prompt_label=label)  # fmt: skip
        try:
            # each sequence of a batch gets the context one request alone has
            options = replace(config, ctx=config.ctx * n)
            runs.append(profile_or_reuse(spec, options, probe, db_path, step, fresh=config.fresh))
        except WorkerCrashed as e:  # a failed run: the other targets are still measured
            crashed.append(f"{spec.name} crashed ({e.signal_name or 'exited'}, {e.phase})")
            notes.append(f"{spec.name} left out: {e}")
            step(_event(spec.name, "skipped", detail=str(e)))
    if not config.onnx:
        return runs
    export = _export(gguf, config, step, notes)
    if export is None:
        return runs
    try:
        spec = TargetSpec(
            ONNX_TARGET, "onnx", str(export), sha, ONNX_WEIGHTS, suite, prompt_label=label
        )
        runs.append(profile_or_reuse(spec, config, probe, db_path, step, fresh=config.fresh))
    except EdgeprofError as e:  # the export loads but will not run here: llama.cpp still does
        if isinstance(e, WorkerCrashed):
            crashed.append(f"{ONNX_TARGET} crashed ({e.signal_name or 'exited'}, {e.phase})")
        notes.append(f"{ONNX_TARGET} skipped: {e}")
        step(_event(ONNX_TARGET, "skipped", detail=str(e)))
    return runs


def _event(step: str, state: StepState, **kw: Any) -> StepEvent:
    return StepEvent(step, state, **kw)


def prompt_label_for(gguf: Path, config: MeasureOptions) -> str:
    """The prompt format the runs will record ("builtin:gemma", "gguf", "raw", ...): how
    edgeprof chooses it may change between versions, so a reused run must have used it."""
    from edgeprof.models.gguf_header import read_gguf_header
    from edgeprof.models.prompt_format import choose_format

    meta = read_gguf_header(gguf).metadata
    return choose_format(meta, file_name=gguf.name, **config.prompt_settings()).label


def _export(gguf: Path, config: DecideConfig, step: StepFn, notes: list[str]) -> Path | None:
    from edgeprof.models.export_cache import cached_export

    def progress(stage: str, done: int, total: int) -> None:
        name = "verify" if stage == "verify" else "convert"
        step(_event(name, "progress", done=done, total=total, detail=stage))

    step(_event("convert", "start", detail=f"{gguf.name} to ONNX {ONNX_WEIGHTS}"))
    try:
        export = cached_export(
            gguf, weights=ONNX_WEIGHTS, progress=progress, threads=config.threads
        )
    except EdgeprofError as e:  # an architecture the exporter lacks, or a failed verification
        notes.append(f"{ONNX_TARGET} skipped: {e}")
        step(_event("convert", "skipped", detail=str(e)))
        return None
    how = "cached, verified" if export.reused else f"converted in {export.convert_s or 0:.0f} s"
    detail = f"{export.onnx_path} ({how}; top-1 agreement with llama.cpp {export.top1:.0%})"
    step(_event("convert", "reused" if export.reused else "done", detail=detail))
    return Path(export.onnx_path)


@dataclass(frozen=True)
class TargetSpec:
    """One target to profile: its display name, backend and model, and what identifies the
    measurement for reuse (model file sha256, quantization, prompt-suite hash)."""

    name: str
    backend: str
    model: str | None
    model_sha256: str
    quant: str | None
    suite_sha256: str
    concurrency: int = 1
    # the prompt format the run will record ("builtin:gemma", "gguf", "raw"): a reused run must
    # have used the same (`prompt_label_for`)
    prompt_label: str | None = None


def profile_or_reuse(
    spec: TargetSpec,
    options: MeasureOptions,
    probe: Probe,
    db_path: Path,
    step: StepFn,
    *,
    fresh: bool = False,
) -> TargetRun:
    """A run in the database that measured the same thing (`edgeprof.decision.reuse`), or a
    new one measured with `options` (what `decide` and `sweep` both do for each target)."""
    from edgeprof.decision.reuse import RunKey, describe_reuse, reusable_run, settings_key
    from edgeprof.store.db import Store

    key = RunKey(
        device_id=str(probe.device["id"]),
        backend=spec.backend,
        model_sha256=spec.model_sha256,
        quant=spec.quant,
        # as the backends resolve it: every logical CPU unless told
        threads=options.threads or max(1, os.cpu_count() or 1),
        max_tokens=options.max_tokens,
        suite_sha256=spec.suite_sha256,
        # decide runs each backend with its default settings and the prompt format asked for;
        # a run with others (a GPU offload, another batch size, another template) or another
        # context size measured something else
        settings=(
            *settings_key(spec.backend, options.prompt_settings()),
            ("ctx", json.dumps(options.ctx)),
        ),
        concurrency=spec.concurrency,
        prompt_format=spec.prompt_label,
    )
    if not fresh and db_path.exists():
        with Store(db_path) as store:
            found = reusable_run(store, key)
            if found is not None:
                words = describe_reuse(store, found)
                step(_event(spec.name, "reused", detail=words, run_id=found))
                return TargetRun(spec.name, spec.backend, found, True, words)
    run = _run_config(options, probe, spec, db_path)
    run_id = _profile(run, spec.name, step)
    return TargetRun(spec.name, spec.backend, run_id, False, f"new run {run_id}")


def _run_config(
    options: MeasureOptions, probe: Probe, spec: TargetSpec, db_path: Path
) -> RunConfig:
    from edgeprof.measure.runner import RunConfig

    measure = {**options.measure_options(), "tdp_w": probe.tdp_w}
    return RunConfig(backend=spec.backend, model=spec.model, db=db_path, label="decide",
                     concurrency=spec.concurrency, **measure)  # fmt: skip


def _profile(run: RunConfig, name: str, step: StepFn) -> str:
    from edgeprof.measure.runner import Progress, profile

    started: dict[str, str] = {}

    def on_progress(p: Progress) -> None:
        if p.phase == "start" and p.row:
            started["run_id"] = str(p.row["run_id"])
            step(_event(name, "start", run_id=started["run_id"]))
        elif p.phase != "done":
            step(_event(name, "progress", done=p.done, total=p.total, detail=p.phase))

    run_id = profile(run, on_progress=on_progress)
    step(_event(name, "done", run_id=run_id))
    return run_id


# -- cloud targets profiled live -----------------------------------------------------------


def profile_clouds(
    config: DecideConfig, clouds: Sequence[str], db_path: Path, step: StepFn
) -> list[TargetRun]:
    """Each cloud model at the endpoint the user gave, on the same prompts: latency measured,
    not assumed. Never reused: a network's latency is a fact of the hour it was measured."""
    from edgeprof.measure.runner import RunConfig

    runs = []
    for ref in clouds:
        provider, _, model = ref.rpartition(":")
        backend = "anthropic" if provider == "anthropic" else "openai"
        # a cloud, even when the endpoint given is on loopback (a proxy, a stand-in)
        settings: dict[str, Any] = {"base_url": config.base_url, "on_device": False}
        if config.api_key_env:
            settings["api_key_env"] = config.api_key_env
        if config.price_in_usd_per_m is not None:
            settings["price_in_usd_per_m"] = config.price_in_usd_per_m
            settings["price_out_usd_per_m"] = config.price_out_usd_per_m
        run = RunConfig(
            backend=backend, model=model or ref, prompts=config.prompts,
            repetitions=config.repetitions, warmup=config.warmup, max_tokens=config.max_tokens,
            db=db_path, label="decide", settings=settings,
        )  # fmt: skip
        name = f"cloud {ref}"
        run_id = _profile(run, name, step)
        runs.append(
            TargetRun(name, backend, run_id, False, f"new run {run_id} at {config.base_url}")
        )
    return runs
