"""Datasette metadata for a profile database: what each table and column means, with units.

`edgeprof datasette-metadata DB -o metadata.json`, then `datasette DB -m metadata.json`.
Units are Pint names (Datasette converts between them); money and token rates have no Pint
unit, so their descriptions say it instead.
"""

from __future__ import annotations

from typing import Any

# table -> (description, label column, {column: (description, pint unit or "")})
SCHEMA_DOC: dict[str, tuple[str, str | None, dict[str, tuple[str, str]]]] = {
    "devices": (
        "One row per physical device (the same machine profiled twice keeps one row).",
        "label",
        {
            "id": ("Stable fingerprint hash of the hardware", ""),
            "label": ("Human name for the device", ""),
            "hostname": ("Host name when profiled (dropped by `export --anonymize`)", ""),
            "cpu_model": ("CPU model string", ""),
            "cores": ("Physical CPU cores", ""),
            "threads": ("Logical CPUs (hardware threads)", ""),
            "ram_bytes": ("Installed memory", "byte"),
            "os": ("Operating system and kernel", ""),
            "arch": ("CPU architecture", ""),
            "accelerators": ("JSON list of GPUs / NPUs found", ""),
            "mem_bandwidth_gbs": ("Measured memory bandwidth (decode roofline), GB/s", ""),
        },
    ),
    "runs": (
        "One profiling session: a backend and model on a device over a prompt suite.",
        "label",
        {
            "id": ("Run id (ULID: time-ordered, globally unique)", ""),
            "device_id": ("Device that ran it", ""),
            "backend": ("Backend that ran it: llamacpp, onnx, openai, anthropic or a plugin's", ""),
            "target_kind": ("device (on this machine) or remote (a server elsewhere)", ""),
            "target": ("Model file name or endpoint model name", ""),
            "model_path": ("Local model path (file name only after anonymized export)", ""),
            "model_sha256": ("SHA-256 of the model file", ""),
            "model_size_bytes": ("Model file size", "byte"),
            "quant": ("Quantization (e.g. Q4_K_M)", ""),
            "label": ("User label for the run", ""),
            "prompt_suite": ("Prompt suite name", ""),
            "params": ("JSON: threads, ctx, max_tokens, repetitions, ... (never secrets)", ""),
            "environment": ("JSON: library versions, Python, edgeprof", ""),
            "edgeprof_version": ("edgeprof version that recorded the run", ""),
            "started_at": ("Start time, ISO 8601 UTC", ""),
            "ended_at": ("End time, ISO 8601 UTC", ""),
            "status": ("running, complete, aborted or failed", ""),
            "error": ("Why the run failed, if it did", ""),
            "idle_power_w": ("Idle power measured before the run", "watt"),
            "idle_method": ("How idle power was obtained (measured / estimated)", ""),
            "load_s": ("Model load time", "second"),
            "load_energy_j": ("Energy used while loading the model", "joule"),
            "recorder_hz": ("Sampling rate of the power recorder", "hertz"),
            "recorder_cpu_s_per_s": ("CPU seconds the recorder used per wall second", ""),
            "t0_ns": (
                "Monotonic clock at run start; request and sample times count from it",
                "nanosecond",
            ),
            "pid": ("Process id that wrote the run (to tell a killed run from a live one)", ""),
            "host_id": ("Hash of the host that wrote the run (never the host name)", ""),
            "heartbeat_unix_s": ("Last sign of life from the run's writer, Unix time", "second"),
            "worker_trace": ("The crashed model worker's faulthandler trace", ""),
            "worker_log": ("The last lines the crashed model worker wrote to stderr", ""),
            "worker_files": ("Folder holding the crashed worker's trace and log files", ""),
        },
    ),
    "prompts": (
        "Prompt texts, keyed by content hash so merged databases share them.",
        "name",
        {
            "id": ("SHA-256 of the prompt text", ""),
            "suite": ("Suite the prompt belongs to", ""),
            "name": ("Short name", ""),
            "text": ("Prompt text", ""),
        },
    ),
    "requests": (
        "One generation: timing, tokens, energy and cost (warm-up rows excluded from statistics).",
        None,
        {
            "id": ("Request id (ULID)", ""),
            "run_id": ("Run it belongs to", ""),
            "prompt_id": ("Prompt sent", ""),
            "seq": ("Order within the run", ""),
            "repetition": ("Repetition number", ""),
            "warmup": ("1: warm-up, recorded but excluded from statistics", ""),
            "input_tokens": ("Prompt tokens (from the tokenizer or API usage)", ""),
            "cached_input_tokens": (
                "Input tokens not computed again: a prefix kept in llama.cpp's KV cache, or "
                "the cached tokens the API reported",
                "",
            ),
            "output_tokens": ("Generated tokens", ""),
            "token_count_method": ("tokenizer, api or estimated", ""),
            "t_start_ns": ("Request start, since the run's t0", "nanosecond"),
            "t_end_ns": ("Last token, since the run's t0", "nanosecond"),
            "ttft_s": ("Time to first token", "second"),
            "prefill_tps": ("Prefill speed: input tokens / TTFT (tokens per second)", ""),
            "decode_tps": (
                "Decode speed: (output tokens - 1) / decode time (tokens per second)",
                "",
            ),
            "e2e_s": ("End-to-end latency", "second"),
            "itl_p50_s": ("Median inter-token latency", "second"),
            "itl_p90_s": ("90th percentile inter-token latency", "second"),
            "itl_p99_s": ("99th percentile inter-token latency", "second"),
            "finish_reason": ("stop, length or error", ""),
            "energy_j": (
                "Energy over the request window (non-overlapping domains summed)",
                "joule",
            ),
            "energy_net_j": ("Energy minus idle power x duration", "joule"),
            "energy_method": ("measured or estimated", ""),
            "avg_power_w": ("Average power over the request", "watt"),
            "peak_power_w": ("Highest power reading during the request", "watt"),
            "peak_rss_bytes": ("Peak resident memory of the process", "byte"),
            "cost_usd": ("Cloud cost of the request, US dollars", ""),
            "output_text": ("Generated text", ""),
            "error": ("Error message, if the request failed", ""),
            "attempts": ("HTTP attempts a remote request took (retries after 429/5xx)", ""),
            "retry_wait_s": ("Time spent waiting between those attempts", "second"),
            "ttft_final_attempt_s": (
                "Time to first token from the start of the attempt that answered",
                "second",
            ),
            "server_timings_source": (
                "Whose own timings the server_* columns hold: ollama or llama-server",
                "",
            ),
            "server_load_s": ("Model load the server reported for the request", "second"),
            "server_prompt_tokens": ("Prompt tokens the server says it evaluated", ""),
            "server_prompt_s": ("Prompt evaluation time the server reported", "second"),
            "server_output_tokens": ("Output tokens the server says it generated", ""),
            "server_decode_s": ("Generation time the server reported", "second"),
            "signal_source": (
                "Where the confidence signals came from: logits (the whole distribution) or "
                "api-top-logprobs (an API's top-k log-probabilities)",
                "",
            ),
            "signal_tokens": ("Chosen tokens the confidence signals are over", ""),
            "logprob_mean": ("Mean log-probability (nats) of the chosen tokens", ""),
            "logprob_min": ("Lowest log-probability (nats) of a chosen token", ""),
            "entropy_mean": ("Mean entropy (nats) of the next-token distribution", ""),
            "first_margin": ("First token: top-1 minus top-2 log-probability", ""),
        },
    ),
    "samples": (
        "Sensor readings over time, long format; the metric name carries the unit "
        "(power_w in watts, energy_j cumulative joules, rss_bytes, cpu_percent, temp_c). "
        "A view of series joined to sample_points, which store them compactly.",
        None,
        {
            "run_id": ("Run the reading belongs to", ""),
            "t_ns": ("Time since the run's t0", "nanosecond"),
            "sensor": ("Sensor instance (see the sensors table)", ""),
            "metric": ("What was read; its suffix is the unit", ""),
            "value": ("Reading, in the unit named by the metric", ""),
        },
    ),
    "series": (
        "One row per run, sensor and metric read: what sample_points.series_id refers to.",
        None,
        {
            "id": ("Series id (local to this file; merge gives new ones)", ""),
            "run_id": ("Run the readings belong to", ""),
            "sensor": ("Sensor instance (see the sensors table)", ""),
            "metric": ("What was read; its suffix is the unit", ""),
        },
    ),
    "sample_points": (
        "The readings themselves, keyed by series and time (the samples view names them).",
        None,
        {
            "series_id": ("Series the reading belongs to", ""),
            "t_ns": ("Time since the run's t0", "nanosecond"),
            "value": ("Reading, in the unit named by the series' metric", ""),
        },
    ),
    "sensors": (
        "The sensors read during a run: what they cover and whether they measure or estimate.",
        None,
        {
            "run_id": ("Run the sensor was read in", ""),
            "sensor": ("Sensor instance name", ""),
            "metric": ("Metric it provides", ""),
            "domain": ("What it covers: package, dram, psys, gpu, board, battery, ...", ""),
            "unit": ("Unit of the metric", ""),
            "method": ("measured or estimated", ""),
            "detail": ("Source path or command", ""),
        },
    ),
    "quality": (
        "What a model variant loses: perplexity on a text and divergence from a reference "
        "(`edgeprof quality`, llama-perplexity's convention).",
        "target",
        {
            "id": ("Quality row id (ULID)", ""),
            "device_id": ("Device that computed it (numerics differ slightly by CPU)", ""),
            "created_at": ("When, ISO 8601 UTC", ""),
            "edgeprof_version": ("edgeprof version that computed it", ""),
            "target": ("Model file name", ""),
            "model_path": ("Local model path", ""),
            "backend": ("llamacpp or onnx", ""),
            "quant": ("Quantization, as runs.quant records it", ""),
            "model_sha256": ("As runs.model_sha256 (an export: its source GGUF's)", ""),
            "file_sha256": ("SHA-256 of the evaluated file itself", ""),
            "size_bytes": ("File size", "byte"),
            "reference": ("Reference model file name (none: perplexity only)", ""),
            "reference_sha256": ("SHA-256 of the reference file", ""),
            "reference_note": ("How the reference came to be", ""),
            "text_name": ("The evaluation text", ""),
            "text_sha256": ("SHA-256 of the text's UTF-8 bytes", ""),
            "text_tokens": ("Tokens in the text", ""),
            "ctx": ("Tokens per chunk (the second half scored)", ""),
            "n_chunks": ("Chunks evaluated", ""),
            "n_scored": ("Positions scored", ""),
            "ppl": ("Perplexity", ""),
            "ppl_se": ("Standard error of the perplexity", ""),
            "ref_ppl": ("The reference's perplexity on the same positions", ""),
            "ref_ppl_se": ("Its standard error", ""),
            "delta_ppl": ("ppl - ref_ppl", ""),
            "delta_ppl_pct": ("Perplexity increase over the reference, percent", ""),
            "delta_ppl_pct_se": ("Its standard error (paired per position), percent", ""),
            "kld_mean": ("Mean KL(reference || target) of next-token distributions, nats", ""),
            "kld_se": ("Standard error of the mean KLD", ""),
            "kld_p99": ("99th percentile of the per-position KLD, nats", ""),
            "kld_max": ("Largest per-position KLD, nats", ""),
            "top1_agreement": ("Share of positions where both pick the same top token", ""),
            "top1_se": ("Its standard error", ""),
            "threads": ("CPU threads used", ""),
            "seconds": ("Time the evaluation took", "second"),
            "peak_rss_bytes": ("Peak resident memory while evaluating", "byte"),
            "environment": ("JSON: library versions", ""),
        },
    ),
    "expectations": (
        "What a good answer to a prompt must satisfy, per suite, beside the prompt "
        "(docs/quality.md); changed expectations re-grade stored answers.",
        "prompt_id",
        {
            "id": ("suite:prompt_id", ""),
            "suite": ("Suite the expectations belong to (runs.prompt_suite)", ""),
            "prompt_id": ("The prompt (SHA-256 of its messages)", ""),
            "kind": ("What the prompt exercises (classify, extract, qa, ...)", ""),
            "reference": ("A good answer, shown to judges", ""),
            "threshold": ("promptfoo's per-test threshold on the weighted score", ""),
            "assertions": ("JSON list of checks (type, value, weight, options)", ""),
            "sha256": ("SHA-256 of the checks, reference and threshold", ""),
            "updated_at": ("When stored, ISO 8601 UTC", ""),
        },
    ),
    "grades": (
        "One check of one answer: by a rule, or by a judge (whose own run is `grader`).",
        None,
        {
            "id": ("SHA-256 of request, grader, check and pairwise partner", ""),
            "run_id": ("Run of the graded answer", ""),
            "request_id": ("The graded answer (requests.id)", ""),
            "prompt_id": ("Its prompt", ""),
            "assertion_index": ("Position of the check in the prompt's list; -1 pairwise", ""),
            "assertion_type": ("icontains, number, choice, llm-rubric, pairwise, ...", ""),
            "grader": ("rule, or the judge's run id", ""),
            "passed": ("1 passed, 0 failed (a judge failure is never a pass)", ""),
            "score": ("0 to 1 (pairwise: 1 win, 0.5 tie, 0 loss)", ""),
            "reason": ("Why, in a few words", ""),
            "judge_failed": ("1: the judge's reply was not a JSON verdict", ""),
            "against_request_id": ("Pairwise: the other target's answer", ""),
            "expectations_sha256": ("The expectations the rule grade used", ""),
            "graded_at": ("When graded, ISO 8601 UTC", ""),
        },
    ),
}


def metadata(database: str = "edgeprof") -> dict[str, Any]:
    """Datasette metadata for a database served under `database` (its file name stem)."""
    tables: dict[str, Any] = {}
    for table, (description, label_column, columns) in SCHEMA_DOC.items():
        entry: dict[str, Any] = {
            "description": description,
            "columns": {c: d for c, (d, _) in columns.items()},
        }
        units = {c: u for c, (_, u) in columns.items() if u}
        if units:
            entry["units"] = units
        if label_column:
            entry["label_column"] = label_column
        tables[table] = entry
    tables["runs"]["sort_desc"] = "started_at"
    tables["_migrations"] = {"hidden": True}
    return {
        "title": "edgeprof profiles",
        "description": "On-device and cloud LLM profiles: speed, energy and cost per request.",
        "databases": {database: {"tables": tables}},
    }
