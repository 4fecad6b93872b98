"""The stored rows as types: what `Store.runs()`, `requests()`, `sensors()` and `quality()`
return, column for column (edgeprof/store/migrations.py creates them), so that mypy checks
every `row["column"]` read. A column a migration adds is added here too; a test compares
these with the schema."""

from __future__ import annotations

from typing import Any, Literal, TypedDict


class RunRow(TypedDict):
    id: str
    device_id: str
    backend: str
    target: str
    model_path: str | None
    model_sha256: str | None
    model_size_bytes: int | None
    quant: str | None
    label: str | None
    prompt_suite: str | None
    params: dict[str, Any]  # stored as JSON, read back as a dict
    environment: dict[str, Any]
    edgeprof_version: str | None
    started_at: str | None
    ended_at: str | None
    status: str  # "running" | "complete" | "aborted" | "failed"
    error: str | None
    idle_power_w: float | None
    idle_method: str | None
    load_s: float | None
    load_energy_j: float | None
    recorder_hz: float | None
    recorder_cpu_s_per_s: float | None
    t0_ns: int | None
    target_kind: str | None  # "device" | "remote"
    pid: int | None
    host_id: str | None
    heartbeat_unix_s: float | None
    # a crashed model worker's faulthandler trace, stderr tail and their folder (m009)
    worker_trace: str | None
    worker_log: str | None
    worker_files: str | None


class RequestRow(TypedDict):
    id: str
    run_id: str
    prompt_id: str
    seq: int
    repetition: int
    warmup: int  # 0 or 1
    input_tokens: int
    output_tokens: int
    token_count_method: str | None
    t_start_ns: int
    t_end_ns: int
    ttft_s: float | None
    prefill_tps: float | None
    decode_tps: float | None
    e2e_s: float | None
    itl_p50_s: float | None
    itl_p90_s: float | None
    itl_p99_s: float | None
    finish_reason: str | None
    energy_j: float | None
    energy_net_j: float | None
    energy_method: str | None
    avg_power_w: float | None
    peak_rss_bytes: int | None
    cost_usd: float | None
    output_text: str | None
    error: str | None
    peak_power_w: float | None
    attempts: int | None
    retry_wait_s: float | None
    ttft_final_attempt_s: float | None
    cached_input_tokens: int | None
    # a local server's own figures (m010; NULL where it reports none)
    server_timings_source: str | None  # "ollama" | "llama-server"
    server_load_s: float | None
    server_prompt_tokens: int | None
    server_prompt_s: float | None
    server_output_tokens: int | None
    server_decode_s: float | None
    # how sure the model was of its answer (m011; backends/signals.py; NULL where not read)
    signal_source: str | None  # "logits" | "api-top-logprobs"
    signal_tokens: int | None
    logprob_mean: float | None
    logprob_min: float | None
    entropy_mean: float | None
    first_margin: float | None


# The request columns that hold a number (a figure summarized over requests).
RequestFigure = Literal[
    "ttft_s", "ttft_final_attempt_s", "prefill_tps", "decode_tps", "e2e_s", "itl_p50_s",
    "itl_p90_s", "itl_p99_s", "energy_j", "energy_net_j", "avg_power_w", "peak_power_w",
    "peak_rss_bytes", "cost_usd", "retry_wait_s",
]  # fmt: skip


class SensorRow(TypedDict):
    run_id: str
    sensor: str
    metric: str
    domain: str | None
    unit: str | None
    method: str | None  # "measured" | "estimated"
    detail: str | None


class QualityRow(TypedDict):
    id: str
    device_id: str | None
    created_at: str | None
    edgeprof_version: str | None
    target: str
    model_path: str
    backend: str | None
    quant: str | None
    model_sha256: str | None
    file_sha256: str | None
    size_bytes: int | None
    reference: str | None
    reference_sha256: str | None
    reference_note: str | None
    text_name: str | None
    text_sha256: str | None
    text_tokens: int | None
    ctx: int | None
    n_chunks: int | None
    n_scored: int | None
    ppl: float | None
    ppl_se: float | None
    ref_ppl: float | None
    ref_ppl_se: float | None
    delta_ppl: float | None
    delta_ppl_pct: float | None
    delta_ppl_pct_se: float | None
    kld_mean: float | None
    kld_se: float | None
    kld_p99: float | None
    kld_max: float | None
    top1_agreement: float | None
    top1_se: float | None
    threads: int | None
    seconds: float | None
    peak_rss_bytes: int | None
    environment: dict[str, Any]
