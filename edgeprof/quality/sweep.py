"""`edgeprof sweep`: every quantization of a model, profiled and scored in one go.

Quantize (llama.cpp's own quantizer; the F32 reference first when the source is quantized),
export to ONNX, profile each variant (speed, memory, energy) and score it against the reference
(perplexity, KL divergence, top-1). Everything already in the database or on disk is reused,
so an interrupted sweep continues where it stopped.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from edgeprof.decision.config import StepEvent, StepFn
from edgeprof.errors import EdgeprofError, UsageError
from edgeprof.measure.options import MeasureOptions

DEFAULT_TYPES = ("Q8_0", "Q6_K", "Q4_K_M", "Q4_0", "Q3_K_M", "Q2_K")
ONNX_FORMATS = ("int4", "int8", "fp32")


@dataclass(kw_only=True)
class SweepConfig(MeasureOptions):
    model: str | None = None  # a GGUF, a name under models/, or None for the demo
    types: tuple[str, ...] = DEFAULT_TYPES
    onnx: tuple[str, ...] = ("int4",)
    out_dir: Path | None = None  # default: models/<model name>/, as `edgeprof quantize`
    db: Path | None = None
    text: Path | None = None  # default: the bundled evaluation text
    quality_ctx: int = 512
    fresh: bool = False
    # short profiles: a sweep measures many variants
    max_tokens: int = 64
    repetitions: int = 2
    ctx: int = 2048
    idle_seconds: float = 1.0


@dataclass(frozen=True)
class Variant:
    name: str  # "Q8_0", "F32 (reference)", "ONNX int4"
    backend: str
    path: Path
    bits_per_weight: float | None = None


@dataclass(frozen=True)
class SweepRow:
    name: str
    backend: str
    quant: str | None
    path: str
    size_bytes: int | None
    bits_per_weight: float | None
    run_id: str
    run_reused: bool
    decode_tps: float | None
    prefill_tps: float | None
    j_per_output_token: float | None
    energy_method: str | None
    peak_rss_bytes: int | None
    quality_id: str | None
    quality_reused: bool
    ppl: float | None
    delta_ppl_pct: float | None
    kld_mean: float | None
    kld_p99: float | None
    top1_agreement: float | None
    is_reference: bool = False


@dataclass(frozen=True)
class SweepResult:
    rows: tuple[SweepRow, ...]
    reference: str
    reference_note: str
    text_name: str
    db_path: str
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_onnx(value: str | Sequence[str]) -> tuple[str, ...]:
    items = [v.strip() for v in value.split(",")] if isinstance(value, str) else list(value)
    items = [v for v in items if v and v != "none"]
    bad = [v for v in items if v not in ONNX_FORMATS]
    if bad:
        raise UsageError(
            f"--onnx takes {', '.join(ONNX_FORMATS)} or none, comma-separated (got {bad[0]!r})"
        )
    return tuple(dict.fromkeys(items))


def sweep(config: SweepConfig, on_step: StepFn | None = None) -> SweepResult:
    """Quantize, export, profile and score; KeyboardInterrupt keeps every finished piece."""
    from edgeprof.models.files import resolve_model
    from edgeprof.quality.quantize import default_out_dir, parse_types
    from edgeprof.store.db import default_db_path

    step = on_step or (lambda _e: None)
    source = resolve_model(config.model)
    types = tuple(parse_types(config.types))
    onnx = parse_onnx(config.onnx)
    db_path = Path(config.db or default_db_path())
    out_dir = config.out_dir or default_out_dir(source)
    notes: list[str] = []

    reference, note, variants, n_params = _quantized(source, types, out_dir, config, step)
    variants += _exports(source, onnx, config, step, notes)
    runs = _profiles(variants, config, db_path, step, notes)
    qualities = _qualities([v for v, _ in runs], reference, config, db_path, step)
    rows = _rows(runs, qualities, reference, db_path, n_params)
    from edgeprof.quality.store import load_text

    return SweepResult(tuple(rows), reference.name, note, load_text(config.text).name,
                       str(db_path), tuple(notes))  # fmt: skip


def _quantized(
    source: Path, types: tuple[str, ...], out_dir: Path, config: SweepConfig, step: StepFn
) -> tuple[Path, str, list[Variant], int | None]:
    """The reference and every type: files already written for this source are reused."""
    from edgeprof.models.files import sha256_file
    from edgeprof.quality.quantize import MANIFEST_NAME, quantize_model

    manifest = _manifest(out_dir / MANIFEST_NAME)
    source_sha = sha256_file(source)
    done = _done_types(manifest, source_sha) if not config.fresh else {}
    missing = [t for t in types if t not in done]
    step(StepEvent("quantize", "start", total=len(missing), detail=f"into {out_dir}"))
    if missing or not manifest:

        def progress(stage: str, i: int, n: int) -> None:
            if stage.startswith("quantize:"):
                step(StepEvent("quantize", "progress", done=i, total=n, detail=stage[9:]))

        # The reference is written again with the rest: dequantizing is deterministic, so its
        # bytes and hash do not change, and a half-finished earlier sweep cannot leave a stale one.
        quantize_model(source, missing, out_dir, force=True, threads=config.threads,
                       progress=progress)  # fmt: skip
        manifest = _manifest(out_dir / MANIFEST_NAME)
        done = _done_types(manifest, source_sha)
    ref = manifest.get("reference") or {}
    reference = Path(str(ref.get("path") or source))
    note = str(ref.get("note") or f"reference: {reference.name}")
    step(StepEvent("quantize", "done" if missing else "reused",
                   detail=f"{len(types)} types, {note}"))  # fmt: skip
    variants = [Variant("F32 reference" if reference != source else "reference", "llamacpp",
                        reference)]  # fmt: skip
    if reference != source:
        variants.append(Variant(f"{_type_of(manifest)} (source)", "llamacpp", source))
    for t in types:
        entry = done[t]
        variants.append(Variant(t, "llamacpp", Path(entry["path"]), entry.get("bits_per_weight")))
    n_params = (manifest.get("source") or {}).get("n_params")
    return reference, note, variants, int(n_params) if n_params else None


def _manifest(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _done_types(manifest: dict[str, Any], source_sha: str) -> dict[str, dict[str, Any]]:
    """Types the manifest lists for this very source whose files are still there."""
    if (manifest.get("source") or {}).get("sha256") != source_sha:
        return {}
    ref = manifest.get("reference") or {}
    if not Path(str(ref.get("path", ""))).is_file():
        return {}
    return {
        str(e["type"]): e
        for e in manifest.get("types") or []
        if e.get("type") and Path(str(e.get("path", ""))).is_file()
    }


def _type_of(manifest: dict[str, Any]) -> str:
    return str((manifest.get("source") or {}).get("type") or "source")


def _exports(
    source: Path, formats: tuple[str, ...], config: SweepConfig, step: StepFn, notes: list[str]
) -> list[Variant]:
    from edgeprof.models.export_cache import cached_export

    variants = []
    for weights in formats:
        name = f"ONNX {weights}"
        step(StepEvent(name, "start", detail=f"convert {source.name}"))
        try:
            export = cached_export(source, weights=weights, threads=config.threads)
        except EdgeprofError as e:
            notes.append(f"{name} skipped: {e}")
            step(StepEvent(name, "skipped", detail=str(e)))
            continue
        detail = f"{export.onnx_path} (top-1 {export.top1:.0%})"
        step(StepEvent(name, "reused" if export.reused else "done", detail=detail))
        variants.append(Variant(name, "onnx", Path(export.onnx_path)))
    return variants


def _profiles(
    variants: list[Variant], config: SweepConfig, db_path: Path, step: StepFn, notes: list[str]
) -> list[tuple[Variant, Any]]:
    """One run per variant, reused when the database already holds one that matches."""
    from edgeprof.decision.targets import Probe, TargetSpec, profile_or_reuse, prompt_label_for
    from edgeprof.measure.workload import load_suite, suite_sha256
    from edgeprof.models.files import sha256_file
    from edgeprof.models.gguf_header import file_quant

    probe = Probe.this_device(config.tdp_w)
    suite = suite_sha256(load_suite(config.prompts))
    runs = []
    for v in variants:
        if v.backend == "onnx":
            sha, quant = _onnx_identity(v.path)
        else:
            sha, quant = sha256_file(v.path), file_quant(v.path)
        spec = TargetSpec(v.name, v.backend, str(v.path), sha, quant, suite)
        try:
            label = prompt_label_for(v.path, config) if v.backend != "onnx" else None
            spec = replace(spec, prompt_label=label)
            run = profile_or_reuse(spec, config, probe, db_path, step, fresh=config.fresh)
        except EdgeprofError as e:
            notes.append(f"{v.name} not profiled: {e}")
            step(StepEvent(v.name, "skipped", detail=str(e)))
            continue
        runs.append((v, run))
    return runs


def _onnx_identity(path: Path) -> tuple[str, str | None]:
    """(source GGUF sha256, weights) as an onnx run records them."""
    from edgeprof.convert import sidecar_paths

    config = json.loads(sidecar_paths(path)["config"].read_text(encoding="utf-8"))
    return str((config.get("source") or {}).get("sha256")), config.get("weights")


def _qualities(
    variants: list[Variant], reference: Path, config: SweepConfig, db_path: Path, step: StepFn
) -> dict[str, dict[str, Any]]:
    """Quality rows by the variant's path, scored against the reference."""
    from edgeprof.quality.store import assess, load_text
    from edgeprof.store.db import Store

    def progress(what: str, done: int, total: int) -> None:
        step(StepEvent("quality", "progress", done=done, total=total, detail=what))

    step(StepEvent("quality", "start", detail=f"against {reference.name}"))
    targets = [v.path for v in variants if v.path != reference]
    with Store(db_path) as store:
        outcomes = assess(store, targets, reference=reference, text=load_text(config.text),
                          ctx=config.quality_ctx, threads=config.threads, fresh=config.fresh,
                          progress=progress)  # fmt: skip
    reused = all(o.reused for o in outcomes)
    detail = f"{len(outcomes)} scored"
    step(StepEvent("quality", "reused" if reused else "done", detail=detail))
    return {
        str(Path(o.row["model_path"]).resolve()): {**o.row, "reused": o.reused} for o in outcomes
    }


def _rows(
    runs: list[tuple[Variant, Any]],
    qualities: dict[str, dict[str, Any]],
    reference: Path,
    db_path: Path,
    n_params: int | None,
) -> list[SweepRow]:
    from edgeprof.analysis.summary import summarize_run
    from edgeprof.store.db import Store

    rows = []
    with Store(db_path) as store:
        for v, run in runs:
            s = summarize_run(store, run.run_id)
            q = qualities.get(str(v.path.resolve()), {})
            is_ref = v.path.resolve() == reference.resolve()
            bits = v.bits_per_weight
            if bits is None and s.model_size_bytes and n_params:
                bits = s.model_size_bytes * 8 / n_params  # the file's bits per weight
            rows.append(
                SweepRow(
                    name=v.name, backend=v.backend, quant=s.quant, path=str(v.path),
                    size_bytes=s.model_size_bytes, bits_per_weight=bits, run_id=run.run_id,
                    run_reused=run.reused, decode_tps=s.decode_tps_mean,
                    prefill_tps=s.prefill_tps_mean, j_per_output_token=s.j_per_output_token,
                    energy_method=s.energy_method, peak_rss_bytes=s.peak_rss_bytes,
                    quality_id=q.get("id"), quality_reused=bool(q.get("reused")),
                    ppl=q.get("ppl"),
                    delta_ppl_pct=0.0 if is_ref else q.get("delta_ppl_pct"),
                    kld_mean=0.0 if is_ref else q.get("kld_mean"),
                    kld_p99=0.0 if is_ref else q.get("kld_p99"),
                    top1_agreement=1.0 if is_ref else q.get("top1_agreement"),
                    is_reference=is_ref,
                )
            )  # fmt: skip
    return rows
