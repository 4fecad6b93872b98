"""A short check, run after every export, that ONNX Runtime computes what llama.cpp computes.

A quantizer can write a graph that loads and runs but produces noise on some CPUs (ORT's U8S8
dynamic int8 MatMul saturated on an AVX2 machine without VNNI: 2 % top-1 agreement there, 85 %
on an AVX-512 VNNI one). Such an export only shows itself in the numbers, so `verify_export`
decodes a few bundled prompts greedily on both runtimes, teacher-forced (agreement.py), and
compares the next-token choices on *this* machine, where the export is about to be profiled.
"""

from __future__ import annotations

import contextlib
import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeprof.convert.agreement import Agreement, agreement_on_prompts, pooled
from edgeprof.convert.sidecar import read_config, sidecar_paths
from edgeprof.errors import ModelLoadError, UsageError
from edgeprof.progress import ProgressFn

VERIFY_PROMPTS = 2
VERIFY_TOKENS = 16
# Minimum top-1 agreement with llama.cpp over VERIFY_PROMPTS x up to VERIFY_TOKENS
# teacher-forced steps (24 for the demo model: the first answer ends after 8 tokens). Healthy
# demo exports measure 92-96 % (one or two near-ties flip); broken ones (the saturating int8
# kernel under AVX2, corrupted weights) 0 % (docs/onnx.md). fp32 runs the very weights
# llama.cpp dequantizes, so it gets the tighter bound (two flips); the quantized formats add
# their own rounding and may flip a few more near-ties.
THRESHOLDS = {"fp32": 0.90, "int8": 0.80, "int4": 0.80}
DEFAULT_THRESHOLD = 0.80  # an export whose format the config does not name (hand-made)

# progress(stage, done, total), as convert_gguf reports it; the stage here is "verify"


@dataclass(frozen=True)
class Verification:
    onnx_path: Path
    weights: str
    top1: float  # share of steps where both runtimes chose the same next token
    threshold: float
    prompts: int
    steps: int
    min_common_prefix: int  # tokens the shortest-agreeing prompt shares with llama.cpp
    rel_l2_first_max: float  # worst relative logit error right after a prompt
    seconds: float
    per_prompt: tuple[Agreement, ...]

    @property
    def passed(self) -> bool:
        return self.top1 >= self.threshold


def _no_progress(stage: str, done: int, total: int) -> None:
    pass


def verify_export(
    onnx_path: Path,
    source: Path,
    *,
    threshold: float | None = None,
    n_prompts: int = VERIFY_PROMPTS,
    n_tokens: int = VERIFY_TOKENS,
    threads: int | None = None,
    progress: ProgressFn = _no_progress,
) -> Verification:
    """Score the export `onnx_path` against llama.cpp running `source` (the GGUF it came from).

    Never raises for a low score: the caller decides what a failed `Verification` means.
    `threshold` defaults to THRESHOLDS for the weight format in the export's config.
    """
    from edgeprof.backends import BackendOptions, create_backend
    from edgeprof.measure.workload import load_suite

    t0 = time.perf_counter()
    if n_prompts < 1 or n_tokens < 1:
        raise UsageError(
            f"verify_export needs n_prompts >= 1 and n_tokens >= 1, got {n_prompts}, {n_tokens}"
        )
    config_path = sidecar_paths(onnx_path)["config"]
    config = read_config(config_path) if config_path.is_file() else {}
    weights = str(config.get("weights") or "unknown")
    if threshold is None:
        threshold = THRESHOLDS.get(weights, DEFAULT_THRESHOLD)
    prompts = [p.messages for p in load_suite()[:n_prompts]]
    total = 2 * len(prompts) + 1  # loading, then llama.cpp and ONNX Runtime per prompt
    progress("verify", 0, total)
    backend = create_backend("onnx", BackendOptions(model=str(onnx_path), threads=threads))
    backend.load()
    try:
        llm = _load_reference(source, threads)
        try:
            progress("verify", 1, total)
            results = agreement_on_prompts(
                backend,
                llm,
                prompts,
                n_tokens,
                progress=lambda done, _: progress("verify", 1 + done, total),
            )
        finally:
            llm.close()
    finally:
        backend.close()
    summary = pooled(results)
    return Verification(
        onnx_path=onnx_path,
        weights=weights,
        top1=float(summary["top1"]),
        threshold=threshold,
        prompts=len(results),
        steps=int(summary["steps"]),
        min_common_prefix=int(summary["min_common_prefix"]),
        rel_l2_first_max=float(summary["rel_l2_first_max"]),
        seconds=time.perf_counter() - t0,
        per_prompt=tuple(results),
    )


def _load_reference(source: Path, threads: int | None) -> Any:
    import os

    import llama_cpp

    n = threads or max(1, os.cpu_count() or 1)
    try:
        # llama.cpp prints its load log on the C side; it would tear through the progress bar
        with contextlib.redirect_stderr(io.StringIO()):
            return llama_cpp.Llama(
                model_path=str(source),
                n_ctx=2048,
                n_threads=n,
                n_threads_batch=n,
                verbose=False,
            )
    except (ValueError, RuntimeError) as e:
        raise ModelLoadError(
            f"llama.cpp could not load {source} to verify the export against it ({e}); "
            "pass the GGUF the export was converted from as `source`"
        ) from e
