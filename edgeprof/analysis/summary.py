"""A run's headline figures, computed from its rows (warm-up requests excluded)."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from edgeprof.analysis.degenerate import Degeneracy, check_answers, run_answers
from edgeprof.analysis.metrics import (
    Interval,
    confidence_interval,
    first_differs,
    mean_sd,
    percentile,
)
from edgeprof.power import POWER_METRICS
from edgeprof.report.formatting import mib
from edgeprof.store.db import Store
from edgeprof.store.rows import RequestFigure, RequestRow, RunRow, SensorRow


@dataclass(frozen=True)
class RunSummary:
    """One run's figures. `to_dict()` is the JSON form (`run --json`, `report --json`)."""

    run_id: str
    device_id: str
    device_label: str | None
    cpu_model: str | None
    backend: str
    target_kind: str | None  # "device" | "remote"
    target: str | None
    quant: str | None
    label: str | None
    threads: int | None
    max_tokens: int | None
    concurrency: int
    status: str
    error: str | None  # why a run failed or was aborted
    started_at: str | None
    n_requests: int
    planned_requests: int | None  # measured requests the run set out to make
    n_warmup: int
    n_errors: int
    ttft_p50_s: float | None  # as the user felt it: from the first attempt, retries included
    ttft_p95_s: float | None
    ttft_p99_s: float | None
    ttft_final_attempt_p50_s: float | None  # from the attempt that answered
    retried_requests: int  # requests a remote API refused (429, 5xx) at least once
    retry_wait_s_total: float
    prefill_tps_mean: float | None
    prefill_tps_sd: float | None
    decode_tps_mean: float | None
    decode_tps_sd: float | None
    decode_tps_values: list[float]
    # 95 % intervals over complete repetitions of the suite (None below two): see
    # `repetition_figures` for what each repetition contributes
    n_repetitions: int
    decode_tps_ci: Interval | None
    prefill_tps_ci: Interval | None
    ttft_p50_ci: Interval | None  # of the repetitions' TTFT medians
    j_per_output_token_ci: Interval | None
    avg_power_w_ci: Interval | None
    # the first repetition's decode tok/s against the others' mean, when outside their interval
    first_repetition_differs: float | None
    # an open-ended run (edgeprof.measure.passes): duration_s or target_ci, and how it ended
    # (stopped_by, repetitions_done, ci_reached); empty for a fixed count of repetitions
    passes: dict[str, Any]
    notes: dict[str, str]  # `run --note KEY=VALUE`: the setup as the user describes it
    # what the system said of its power setup (governor, AC or battery, nvpmodel mode, ...)
    power_setup: dict[str, str]
    # the share of the model file in the page cache just before the load (0: a cold start)
    page_cache_fraction: float | None
    e2e_p50_s: float | None
    e2e_p99_s: float | None  # the whole answer, slowest 1 %
    itl_p50_s: float | None
    itl_p99_s: float | None
    peak_rss_bytes: int | None
    # this process's GPU memory, summed over GPUs (NVML); None with `gpu_mem_note` saying why
    peak_gpu_mem_bytes: int | None
    gpu_mem_note: str | None  # "unified: in RSS", "not available: no NVML", ...
    idle_power_w: float | None
    load_s: float | None
    load_energy_j: float | None
    energy_j: float | None
    j_per_output_token: float | None
    tokens_per_j: float | None
    avg_power_w: float | None
    peak_power_w: float | None
    energy_method: str | None  # "measured", "estimated", or both joined with "+"
    energy_sensors: list[str]
    mean_input_tokens: float | None
    mean_output_tokens: float | None
    mean_cached_input_tokens: float | None  # input tokens not computed again (prefix caching)
    output_tokens_total: int
    output_tps_aggregate: float | None  # output tokens over the busy span: all requests together
    requests_per_s: float | None  # completed requests over the same span
    cost_usd_total: float | None
    cost_per_request_usd: float | None
    recorder_cpu_s_per_s: float | None
    model_size_bytes: int | None
    mem_bandwidth_gbs: float | None
    decode_roofline_share: float | None
    # what the backend ran on: params["provenance"] (runtime, build_features, providers_used,
    # gpu_layers_offloaded, ...) and, as "environment", the library versions of runs.environment
    provenance: dict[str, Any]
    # how prompts were formatted: "builtin:gemma (chosen from architecture gemma3)", "raw",
    # "gguf (the GGUF's tokenizer.chat_template)"; None for a remote target or an old run
    prompt_format: str | None = None
    # no template and no sign of instruction tuning in the model's names: maybe a base model
    base_model_suspected: bool = False
    # most answers loop at max tokens or contain chat markup (edgeprof.analysis.degenerate)
    degenerate: Degeneracy | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)  # e.g. report's requests

    @property
    def is_remote(self) -> bool:
        return self.target_kind == "remote"

    @property
    def requests_done(self) -> str:
        """ "12", or "7 of 12" for a run that stopped early."""
        planned = self.planned_requests
        if planned is None or self.n_requests >= planned:
            return str(self.n_requests)
        return f"{self.n_requests} of {planned}"

    @property
    def rate_limited(self) -> bool:
        """Retries shaped the latency figures: TTFT includes waiting on the API's limits."""
        return self.retried_requests > 0

    @property
    def energy_estimated(self) -> bool:
        return "estimated" in (self.energy_method or "")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(out.pop("extra"))
        if self.degenerate is not None:
            raw = (self.prompt_format or "").startswith("raw")
            out["degenerate"]["message"] = self.degenerate.message(raw)
        out["warnings"] = answer_warnings([self])
        return out


def summarize_run(store: Store, run_id: str) -> RunSummary:
    run = store.runs([run_id])[0]
    device = store.device(run["device_id"]) or {}
    rows = store.requests(run_id)
    measured = [r for r in rows if not r["warmup"]]
    ok = [r for r in measured if not r["error"]]
    params = run.get("params") or {}

    def col(name: RequestFigure) -> list[float]:
        return [v for r in ok if (v := r[name]) is not None]

    prefill, decode = mean_sd(col("prefill_tps")), mean_sd(col("decode_tps"))
    out_tokens = sum(r["output_tokens"] or 0 for r in ok)
    in_tokens = sum(r["input_tokens"] or 0 for r in ok)
    energies = [r for r in ok if r["energy_j"] is not None]
    energy_j = sum(r["energy_j"] or 0.0 for r in energies)
    energy_out_tokens = sum(r["output_tokens"] or 0 for r in energies)
    methods = sorted({r["energy_method"] for r in energies if r["energy_method"]})
    costs = [r["cost_usd"] for r in ok if r["cost_usd"] is not None]
    rss = col("peak_rss_bytes")
    # Aggregate throughput across overlapping requests: tokens over the busy span.
    span_s = (
        (max(r["t_end_ns"] for r in ok) - min(r["t_start_ns"] for r in ok)) / 1e9 if ok else 0.0
    )
    # Overlapping requests (a batch) share the device: their power is the energy over the
    # span, not over the sum of their windows.
    concurrent = int(params.get("concurrency") or 1) > 1
    per_rep = repetition_figures(ok, concurrent)
    decode_reps = per_rep["decode_tps"]
    busy_s = span_s if concurrent else sum(r["e2e_s"] or 0.0 for r in energies)
    gpu_peak, gpu_note = gpu_memory(
        store, run, device, [(r["t_start_ns"], r["t_end_ns"]) for r in ok]
    )
    return RunSummary(
        run_id=run_id,
        device_id=run["device_id"],
        device_label=device.get("label"),
        cpu_model=device.get("cpu_model"),
        backend=run["backend"],
        target_kind=run.get("target_kind"),
        target=run["target"],
        quant=run["quant"],
        label=run["label"],
        threads=params.get("threads"),
        max_tokens=params.get("max_tokens"),
        concurrency=params.get("concurrency", 1),
        status=run["status"],
        error=run.get("error"),
        started_at=run["started_at"],
        n_requests=len(measured),
        planned_requests=params.get("planned_requests"),
        n_warmup=len(rows) - len(measured),
        n_errors=len(measured) - len(ok),
        ttft_p50_s=percentile(col("ttft_s"), 50),
        ttft_p95_s=percentile(col("ttft_s"), 95),
        ttft_p99_s=percentile(col("ttft_s"), 99),
        ttft_final_attempt_p50_s=percentile(col("ttft_final_attempt_s"), 50),
        retried_requests=sum(1 for r in measured if (r.get("attempts") or 1) > 1),
        retry_wait_s_total=sum(r.get("retry_wait_s") or 0.0 for r in measured),
        prefill_tps_mean=prefill.mean,
        prefill_tps_sd=prefill.sd,
        decode_tps_mean=decode.mean,
        decode_tps_sd=decode.sd,
        decode_tps_values=col("decode_tps"),
        n_repetitions=len(decode_reps),
        decode_tps_ci=confidence_interval(decode_reps),
        prefill_tps_ci=confidence_interval(per_rep["prefill_tps"]),
        ttft_p50_ci=confidence_interval(per_rep["ttft_p50_s"]),
        j_per_output_token_ci=confidence_interval(per_rep["j_per_output_token"]),
        avg_power_w_ci=confidence_interval(per_rep["avg_power_w"]),
        first_repetition_differs=first_differs(decode_reps) if len(decode_reps) > 2 else None,
        passes={k: params[k] for k in PASSES_PARAMS if params.get(k) is not None},
        notes=dict(params.get("notes") or {}),
        power_setup=dict(params.get("power_setup") or {}),
        page_cache_fraction=params.get("page_cache_fraction"),
        e2e_p50_s=percentile(col("e2e_s"), 50),
        e2e_p99_s=percentile(col("e2e_s"), 99),
        itl_p50_s=percentile(col("itl_p50_s"), 50),
        itl_p99_s=max(col("itl_p99_s"), default=None),
        peak_rss_bytes=int(max(rss)) if rss else None,
        peak_gpu_mem_bytes=gpu_peak,
        gpu_mem_note=gpu_note,
        idle_power_w=run["idle_power_w"],
        load_s=run["load_s"],
        load_energy_j=run["load_energy_j"],
        energy_j=energy_j if energies else None,
        j_per_output_token=energy_j / energy_out_tokens if energy_out_tokens else None,
        tokens_per_j=energy_out_tokens / energy_j if energies and energy_j > 0 else None,
        avg_power_w=energy_j / busy_s if energies and busy_s > 0 else None,
        peak_power_w=max(col("peak_power_w"), default=None),
        energy_method="+".join(methods) if methods else None,
        energy_sensors=_power_sensors(store, run_id),
        mean_input_tokens=in_tokens / len(ok) if ok else None,
        mean_output_tokens=out_tokens / len(ok) if ok else None,
        mean_cached_input_tokens=(
            sum(r.get("cached_input_tokens") or 0 for r in ok) / len(ok) if ok else None
        ),
        output_tokens_total=out_tokens,
        output_tps_aggregate=out_tokens / span_s if span_s > 0 else None,
        requests_per_s=len(ok) / span_s if span_s > 0 else None,
        cost_usd_total=sum(costs) if costs else None,
        cost_per_request_usd=sum(costs) / len(costs) if costs else None,
        recorder_cpu_s_per_s=run["recorder_cpu_s_per_s"],
        model_size_bytes=run["model_size_bytes"],
        mem_bandwidth_gbs=device.get("mem_bandwidth_gbs"),
        decode_roofline_share=_roofline_share(run, device, decode.mean),
        provenance=_provenance(run, params),
        **_prompt_fields(params, measured),
        # an import (edgeprof.store.llama_bench): the tool, its test and its definitions, in --json
        extra={"imported": params["imported"]} if params.get("imported") else {},
    )


def _prompt_fields(params: dict[str, Any], measured: list[RequestRow]) -> dict[str, Any]:
    """The prompt format the run used and whether its answers look degenerate."""
    fmt = params.get("prompt_format")
    fmt = fmt if isinstance(fmt, dict) else {}
    label = fmt.get("label") or params.get("chat_template")
    reason = fmt.get("reason")
    return {
        "prompt_format": f"{label} ({reason})" if label and reason else label,
        "base_model_suspected": bool(fmt.get("base_model_suspected")),
        "degenerate": check_answers(run_answers(measured)),
    }


PASSES_PARAMS = (
    "duration_s", "target_ci", "max_repetitions", "stopped_by", "repetitions_done", "ci_reached"
)  # fmt: skip
FIGURES = ("decode_tps", "prefill_tps", "ttft_p50_s", "j_per_output_token", "avg_power_w")


def complete_repetitions(ok: Sequence[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    """The measured requests grouped by repetition, keeping only repetitions that answered
    every prompt (a soak's last pass is cut off by the clock; a failed request leaves a gap)."""
    reps: dict[int, list[Mapping[str, Any]]] = {}
    for r in ok:
        reps.setdefault(r["repetition"], []).append(r)
    full = max((len(v) for v in reps.values()), default=0)
    return [v for _, v in sorted(reps.items()) if len(v) == full]


def repetition_figures(
    ok: Sequence[Mapping[str, Any]], concurrent: bool = False
) -> dict[str, list[float]]:
    """One value per complete repetition and figure: the unit a confidence interval counts.
    Requests within a pass differ by prompt, so they are not repeated measurements of one
    thing; whole passes over the suite are (as llama-bench's and pyperf's repetitions)."""
    out: dict[str, list[float]] = {name: [] for name in FIGURES}
    for rows in complete_repetitions(ok):
        decode = [r["decode_tps"] for r in rows if r.get("decode_tps") is not None]
        prefill = [r["prefill_tps"] for r in rows if r.get("prefill_tps") is not None]
        ttft = percentile([r["ttft_s"] for r in rows if r.get("ttft_s") is not None], 50)
        metered = [r for r in rows if r.get("energy_j") is not None]
        energy_j = sum(r["energy_j"] for r in metered)
        tokens = sum(r["output_tokens"] or 0 for r in metered)
        busy_s = sum(r["e2e_s"] or 0.0 for r in metered)
        values = {
            "decode_tps": sum(decode) / len(decode) if decode else None,
            "prefill_tps": sum(prefill) / len(prefill) if prefill else None,
            "ttft_p50_s": ttft,
            "j_per_output_token": energy_j / tokens if metered and tokens else None,
            # overlapping requests' windows do not add up to the time the device was busy
            "avg_power_w": energy_j / busy_s if metered and busy_s > 0 and not concurrent else None,
        }
        for name, value in values.items():
            if value is not None:
                out[name].append(value)
    return out


def summarize(store: Store, run_ids: list[str] | None = None) -> list[RunSummary]:
    return [summarize_run(store, r["id"]) for r in store.runs(run_ids)]


def _provenance(run: RunRow, params: dict[str, Any]) -> dict[str, Any]:
    out = dict(params.get("provenance") or {})
    if run.get("environment"):
        out["environment"] = run["environment"]
    return out


UNIFIED_NOTE = "unified: in RSS"
DELTA_NOTE = "device used-memory delta since before the load (NVML listed no processes)"
GPU_MEM_METRIC = "gpu_mem_bytes"
GPU_USED_METRIC = "gpu_mem_used_bytes"
EDGE_NS = 10_000_000  # a request's edge readings are taken within this of its start and end


def unified_memory(device: dict[str, Any]) -> bool:
    """A Jetson or Apple silicon: the GPU shares the CPU's RAM, so its memory is in RSS."""
    if "jetson" in (device.get("label") or "").lower():
        return True
    return device.get("arch") == "arm64" and (device.get("os") or "").startswith("Darwin")


def gpu_memory(
    store: Store,
    run: RunRow,
    device: dict[str, Any],
    windows: Sequence[tuple[int, int]],
) -> tuple[int | None, str | None]:
    """(peak GPU memory of this process in bytes, None), or (None, why there is no figure).

    The peak is taken inside `windows` (the measured requests), as `peak_rss_bytes` is, so
    the two stand side by side; over the whole run when no request finished.
    """
    if run.get("target_kind") == "remote":
        return None, "not applicable: remote target"
    if (run.get("params") or {}).get("imported"):
        return None, "not recorded: imported results"
    peak = peak_gpu_mem_bytes(store, run["id"], windows)
    if peak is not None:
        return peak, None
    if unified_memory(device):
        return None, UNIFIED_NOTE
    delta = device_gpu_mem_delta_bytes(store, run["id"], windows)
    if delta is not None:
        return delta, DELTA_NOTE
    return None, f"not available: {_no_gpu_mem_reason(store.sensors(run['id']))}"


def peak_gpu_mem_bytes(
    store: Store, run_id: str, windows: Sequence[tuple[int, int]] = ()
) -> int | None:
    """The largest sum over GPUs at one tick of the `gpu_mem_bytes` samples (one recorder
    tick stamps every sampler with the same t_ns), inside `windows` when given."""
    totals: dict[int, float] = {}
    for row in store.samples(run_id, metrics=[GPU_MEM_METRIC]):
        totals[row["t_ns"]] = totals.get(row["t_ns"], 0.0) + row["value"]
    if not totals:
        return None
    times = sorted(totals)
    if not windows:
        return int(max(totals.values()))
    # A little beyond each edge: the runner marks a reading just before a request starts and
    # just after it ends (the recorder's per-request peaks include both), and a request
    # shorter than the sampling interval has only those two.
    inside = [
        totals[t]
        for start, end in windows
        for t in times[bisect_left(times, start - EDGE_NS) : bisect_right(times, end + EDGE_NS)]
    ]
    return int(max(inside)) if inside else None


def device_gpu_mem_delta_bytes(
    store: Store, run_id: str, windows: Sequence[tuple[int, int]] = ()
) -> int | None:
    """Where NVML's process lists never held the model's process (a VM, a container's PID
    namespace): the devices' used memory at its peak inside `windows`, less what it was at the
    run's first tick, before the model loaded. Summed over GPUs per tick; other processes'
    allocations in between count too, hence its label (`DELTA_NOTE`)."""
    totals: dict[int, float] = {}
    for row in store.samples(run_id, metrics=[GPU_USED_METRIC]):
        if str(row["sensor"]).startswith("nvml:"):
            totals[row["t_ns"]] = totals.get(row["t_ns"], 0.0) + row["value"]
    if len(totals) < 2:
        return None
    times = sorted(totals)
    before = totals[times[0]]
    inside = [
        totals[t]
        for start, end in windows or [(times[0], times[-1])]
        for t in times[bisect_left(times, start - EDGE_NS) : bisect_right(times, end + EDGE_NS)]
    ]
    return int(max(0.0, max(inside) - before)) if inside else None


def _no_gpu_mem_reason(sensors: list[SensorRow]) -> str:
    nvml = [s for s in sensors if str(s["sensor"]).startswith("nvml:")]
    if not nvml:
        return "no NVML"
    if any(s["metric"] == GPU_MEM_METRIC for s in nvml):
        return "this process was not in NVML's process lists (no GPU memory, or a PID namespace)"
    marker = "this process's GPU memory not available: "
    for s in nvml:
        detail = str(s.get("detail") or "")
        if marker in detail:
            return detail.split(marker, 1)[1]
    return "not recorded (a run from before edgeprof sampled it)"


def _power_sensors(store: Store, run_id: str) -> list[str]:
    return sorted({s["sensor"] for s in store.sensors(run_id) if s["metric"] in POWER_METRICS})


def _roofline_share(run: RunRow, device: dict[str, Any], decode_tps: float | None) -> float | None:
    """Measured decode tok/s as a share of the memory-bandwidth bound (local runs only)."""
    bandwidth = device.get("mem_bandwidth_gbs")
    if not bandwidth or not decode_tps or run.get("target_kind") == "remote":
        return None
    from edgeprof.measure.bandwidth import roofline_share, weights_bytes_per_token

    return roofline_share(
        decode_tps, bandwidth, weights_bytes_per_token(run["model_path"], run["model_size_bytes"])
    )


def gpu_mem(s: RunSummary) -> str:
    """This process's peak GPU memory in MiB; "in RSS" where the GPU shares the RAM; else "–",
    with the reason in `gpu_mem_notes` (a cell too narrow for it would cut it short)."""
    if s.peak_gpu_mem_bytes is None and s.gpu_mem_note == UNIFIED_NOTE:
        return "in RSS"
    return mib(s.peak_gpu_mem_bytes)


def gpu_mem_notes(summaries: list[RunSummary]) -> list[str]:
    """One line saying why runs have no peak GPU figure, each reason once with its runs:
    "peak GPU MiB: unified: in RSS (run 3F9KQ2ZX); not available: no NVML (runs ...)"."""
    by_note: dict[str, list[str]] = {}
    for s in summaries:
        labelled = s.peak_gpu_mem_bytes is None or s.gpu_mem_note == DELTA_NOTE
        if labelled and s.gpu_mem_note and not s.is_remote:
            by_note.setdefault(s.gpu_mem_note, []).append(s.run_id[-8:])
    if not by_note:
        return []
    parts = [
        f"{note} ({'run' if len(ids) == 1 else 'runs'} {', '.join(ids)})"
        for note, ids in by_note.items()
    ]
    return [f"peak GPU MiB: {'; '.join(parts)}"]


def answer_warnings(summaries: Sequence[RunSummary]) -> list[str]:
    """What `run`, `report` and `decide` must say loudly: runs whose answers look degenerate,
    and models that may be base models given a chat format."""
    lines = []
    for s in summaries:
        head = f"run {s.run_id[-8:]} ({s.backend}, {s.target})"
        if s.degenerate is not None:
            raw = (s.prompt_format or "").startswith("raw")
            lines.append(f"{head}: {s.degenerate.message(raw)}")
        if s.base_model_suspected:
            lines.append(
                f"{head}: the model carries no chat template and its names do not say "
                f"instruction-tuned (-it/-instruct/chat): it may be a base model, yet prompts "
                f"were formatted as {s.prompt_format}; pass --raw to give it plain text, or "
                "--chat-template NAME if it is instruction-tuned"
            )
    return lines


def prompt_format_is_news(summaries: Sequence[RunSummary]) -> bool:
    """Whether a run used a prompt format other than its GGUF's own template (a family's
    built-in, a file, raw): only then do tables give the prompt format a column."""
    return any((s.prompt_format or "gguf").split(" (")[0] != "gguf" for s in summaries)
