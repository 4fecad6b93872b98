"""ONNX Runtime execution providers: short names, what each can run of an edgeprof export, and
the default choice.

Pure apart from `build_summary`, which asks the installed onnxruntime what it has: the rest
takes the available providers as a list, so every rule is testable on any machine.

An edgeprof export (docs/onnx.md) holds, besides standard ONNX ops, the `com.microsoft`
contrib ops GroupQueryAttention and SkipSimplifiedLayerNormalization (every weight format)
and MatMulNBits (int4: 4-bit plus one 8-bit lm_head; int8: 8-bit). A provider without a kernel
for a node leaves it to the next provider in the list, ending with CPU: the export still runs,
but each hand-over copies tensors between devices. `EXPORT_SUPPORT` says per provider what is
known, with the source; rows nobody checked say "unverified".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from edgeprof.errors import UsageError

CPU = "CPUExecutionProvider"

# Short name -> ONNX Runtime's name, as onnxruntime.get_all_providers() spells it.
SHORT_NAMES: dict[str, str] = {
    "cpu": CPU,
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "dml": "DmlExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "qnn": "QNNExecutionProvider",
    "xnnpack": "XnnpackExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "webgpu": "WebGpuExecutionProvider",
}
_SHORT_OF = {ort: short for short, ort in SHORT_NAMES.items()}

# How to get a build that has the provider (PyPI package names as of onnxruntime 1.2x-1.3x).
INSTALL_HINTS: dict[str, str] = {
    "cpu": "pip install onnxruntime",
    "cuda": "pip uninstall onnxruntime && pip install onnxruntime-gpu (NVIDIA, CUDA 12, cuDNN 9)",
    "tensorrt": "pip install onnxruntime-gpu plus NVIDIA TensorRT libraries on the library path",
    "coreml": "pip install onnxruntime on macOS (its macOS wheels include CoreML)",
    "dml": "pip uninstall onnxruntime && pip install onnxruntime-directml (Windows, DirectX 12)",
    "openvino": "pip uninstall onnxruntime && pip install onnxruntime-openvino (Intel CPU/GPU/NPU)",
    "qnn": "pip uninstall onnxruntime && pip install onnxruntime-qnn (Windows on Snapdragon)",
    "xnnpack": "a build of onnxruntime with --use_xnnpack (no desktop PyPI wheel has it)",
    "rocm": "onnxruntime-rocm from AMD (onnxruntime <= 1.22; 1.23 dropped ROCm for MIGraphX)",
    "webgpu": "a build of onnxruntime with --use_webgpu (edgeprof does not register plugin EPs)",
}

Coverage = Literal["full", "most", "few", "unverified"]


@dataclass(frozen=True)
class ExportSupport:
    """What one provider runs of an edgeprof export.

    full: every node; most: the weight MatMuls and more, some contrib nodes on CPU; few: no
    contrib op at all, so attention, norms and quantized MatMuls all run on CPU and the graph
    splits at every layer; unverified: not known.
    """

    coverage: Coverage
    why: str
    source: str


WEIGHTS = ("fp32", "int8", "int4")  # the export formats of `edgeprof convert`


def _every(coverage: Coverage, why: str, source: str) -> dict[str, ExportSupport]:
    return {w: ExportSupport(coverage, why, source) for w in WEIGHTS}


_CUDA_GQA = "GroupQueryAttention has fp16/bf16 CUDA kernels only: the fp32 GQA nodes run on CPU"
_CUDA_SRC = (
    "contrib_ops/cuda/bert/group_query_attention.cc (MLFloat16, BFloat16), "
    "bert/skip_layer_norm.cc (float, MLFloat16), quantization/matmul_nbits.cc + matmul_8bits*.cu"
)
_NO_CONTRIB = "no com.microsoft contrib op, so GQA, the norms and MatMulNBits run on CPU"

EXPORT_SUPPORT: dict[str, dict[str, ExportSupport]] = {
    CPU: _every(
        "full",
        "kernels for every op",
        "onnxruntime contrib_ops/cpu; measured here: 880 of 880 int4 nodes on CPU",
    ),
    "CUDAExecutionProvider": {
        "fp32": ExportSupport("most", _CUDA_GQA, _CUDA_SRC),
        "int8": ExportSupport(
            "most",
            "MatMulNBits 8-bit has float kernels in recent releases (older onnxruntime-gpu: "
            f"4-bit only, unverified which); {_CUDA_GQA}",
            _CUDA_SRC,
        ),
        "int4": ExportSupport("most", f"MatMulNBits 4-bit float kernels; {_CUDA_GQA}", _CUDA_SRC),
    },
    "TensorrtExecutionProvider": _every(
        "unverified",
        "TensorRT builds engines from standard ONNX ops; contrib nodes it rejects go to the "
        "next provider listed (CUDA, else CPU)",
        "not checked",
    ),
    "CoreMLExecutionProvider": _every(
        "few", _NO_CONTRIB, "CoreML EP docs, supported operators (ai.onnx only)"
    ),
    "DmlExecutionProvider": _every(
        "most",
        "DirectML has MatMulNBits (4 and 8 bits), GroupQueryAttention and SkipLayerNormalization "
        "operators; their fp32 registrations are unverified",
        "providers/dml/.../DmlOperatorMatMulNBits.cpp, DmlOperatorGroupQueryAttention.cpp",
    ),
    "OpenVINOExecutionProvider": _every(
        "most",
        "OpenVINO 2024.4+ lists MatMulNBits and (Skip)SimplifiedLayerNormalization, not "
        "GroupQueryAttention (GQA nodes run on CPU); not run here",
        "providers/openvino/ov_versions/data_ops.cc",
    ),
    "QNNExecutionProvider": _every(
        "few",
        "MatMulNBits only on QNN's GPU backend (4-bit, block 32, zero point 8), none on the HTP "
        "NPU; no GroupQueryAttention builder",
        "providers/qnn/builder/opbuilder/matmulnbits_op_builder.cc",
    ),
    "XnnpackExecutionProvider": _every("few", _NO_CONTRIB, "XNNPACK EP docs, supported operators"),
    "ROCMExecutionProvider": _every(
        "unverified", "ROCm EP not checked (removed in onnxruntime 1.23)", "none"
    ),
    "WebGpuExecutionProvider": _every(
        "most",
        "WebGPU has MatMulNBits and GroupQueryAttention kernels; 8-bit MatMulNBits and the norms "
        "unverified",
        "contrib_ops/webgpu/quantization/matmul_nbits.cc, bert/group_query_attention.cc",
    ),
}

# The order the default tries accelerators in; TensorRT, ROCm (unverified) and CoreML, QNN,
# XNNPACK (few) are never chosen by default, only when asked for.
_DEFAULT_ORDER = (
    "CUDAExecutionProvider",
    "DmlExecutionProvider",
    "WebGpuExecutionProvider",
    "OpenVINOExecutionProvider",
)

_PLATFORM_HINT = {
    "linux": "cuda",
    "win32": "dml",
}


def short_name(ort_name: str) -> str | None:
    return _SHORT_OF.get(ort_name)


def parse_providers(value: str | Sequence[str]) -> tuple[str, ...]:
    """`"cuda,cpu"` or `("cuda", "cpu")` (short or ONNX Runtime names) -> ORT names in order."""
    items = value.split(",") if isinstance(value, str) else list(value)
    names: list[str] = []
    for item in (str(i).strip() for i in items):
        if not item:
            continue
        ort = SHORT_NAMES.get(item.lower()) or (item if item in _SHORT_OF else None)
        if ort is None:
            raise UsageError(
                f"unknown execution provider {item!r} in `providers`; "
                f"known: {', '.join(SHORT_NAMES)}"
            )
        if ort not in names:
            names.append(ort)
    if not names:
        raise UsageError(f"`providers` is empty; give one or more of {', '.join(SHORT_NAMES)}")
    return tuple(names)


def check_available(requested: Iterable[str], available: Sequence[str], version: str) -> None:
    """Refuse a requested provider this onnxruntime build lacks, saying how to get it."""
    for ort in requested:
        if ort in available:
            continue
        short = short_name(ort) or ort
        has = ", ".join(short_name(a) or a for a in available)
        raise UsageError(
            f"this onnxruntime {version} has no {short} execution provider (it has {has}); "
            f"for {short}: {INSTALL_HINTS.get(short, 'a build of onnxruntime with it')}, "
            "or drop `providers`"
        )


def support_for(ort_name: str, export_weights: str | None) -> ExportSupport:
    """What `ort_name` runs of an edgeprof export with `export_weights`; other graphs (a
    user's own Optimum decoder) are unverified on every provider."""
    table = EXPORT_SUPPORT.get(ort_name, {})
    found = table.get(export_weights or "")
    if found is None:
        why = "not an edgeprof export: its ops are not in edgeprof's table"
        return ExportSupport("unverified", why, "none")
    return found


def choose_providers(
    available: list[str], export_weights: str, platform: str
) -> tuple[list[str], list[str]]:
    """The default: the first available accelerator that runs most of this export, then CPU.

    Returns (ONNX Runtime names in priority order, always ending with CPU; notes). `platform`
    is `sys.platform`: it decides which build the fallback note suggests.
    """
    notes: list[str] = []
    chosen = [
        ort
        for ort in _DEFAULT_ORDER
        if ort in available and support_for(ort, export_weights).coverage in ("full", "most")
    ][:1]
    for ort in chosen:
        notes.append(f"{short_name(ort)} chosen; {support_for(ort, export_weights).why}")
    for ort in available:
        if ort == CPU or ort in chosen or ort not in _SHORT_OF:
            continue  # AzureExecutionProvider and other non-compute providers stay silent
        support = support_for(ort, export_weights)
        notes.append(
            f"{short_name(ort)} available but not chosen ({support.coverage}: {support.why}); "
            f"ask for it with --provider {short_name(ort)}"
        )
    if not chosen:
        notes.append(_cpu_note(available, export_weights, platform))
    return [*chosen, CPU], notes


def _cpu_note(available: Sequence[str], export_weights: str, platform: str) -> str:
    accelerators = [a for a in available if a in _SHORT_OF and a != CPU]
    if accelerators:
        return f"CPU: no available provider is known to run most of this {export_weights} export"
    hint = _PLATFORM_HINT.get(platform)
    get = f"; for a GPU: {INSTALL_HINTS[hint]}" if hint else ""
    return f"CPU: this onnxruntime build has no GPU or NPU provider{get}"


def requested_notes(requested: Sequence[str], export_weights: str | None) -> list[str]:
    """Notes for providers asked for by name that cannot run all of the export."""
    notes = []
    for ort in requested:
        support = support_for(ort, export_weights)
        if ort != CPU and support.coverage != "full":
            notes.append(f"{short_name(ort) or ort}: {support.coverage}; {support.why}")
    return notes


def node_placement(assignment: Iterable[Any]) -> dict[str, int]:
    """{provider: nodes} from `InferenceSession.get_provider_graph_assignment_info()`."""
    counts: dict[str, int] = {}
    for subgraph in assignment:
        counts[subgraph.ep_name] = counts.get(subgraph.ep_name, 0) + len(subgraph.get_nodes())
    return counts


def not_started(requested: Sequence[str], used: Sequence[str]) -> list[str]:
    """Requested providers the session did not start (ONNX Runtime then falls back silently)."""
    return [ort for ort in requested if ort not in used]


def build_summary() -> dict[str, Any]:
    """This onnxruntime: version, device and every known provider, available or not; for
    `edgeprof probe`."""
    import onnxruntime as ort

    available = list(ort.get_available_providers())
    rows = [
        {"name": name, "short": short, "available": name in available}
        for short, name in SHORT_NAMES.items()
    ]
    rows += [{"name": a, "short": None, "available": True} for a in available if a not in _SHORT_OF]
    return {"version": ort.__version__, "device": ort.get_device(), "providers": rows}


def summary_lines(summary: Mapping[str, Any]) -> list[str]:
    """`build_summary()` as rich-markup lines for `edgeprof probe`."""
    lines = [f"[bold]onnxruntime {summary['version']}[/bold] (device {summary['device']})"]
    for row in summary["providers"]:
        label = f"{row['short']} → {row['name']}" if row["short"] else row["name"]
        if row["available"]:
            lines.append(f"  [green]✓[/green] {label}")
        else:
            lines.append(f"  [red]✗[/red] {label}: {INSTALL_HINTS.get(row['short'], '')}")
    return lines
