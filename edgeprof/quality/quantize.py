"""GGUF -> GGUF quantization through llama.cpp's own `llama_model_quantize`, with a reference.

Each type is written from an unquantized source, never re-quantized from a quantized one. A
quantized source (the demo model is Q4_1) is first dequantized to an F32 GGUF: that file is the
source of every type *and* the reference quality is measured against ("reference: dequantized
from Q4_1"), so a loss is relative to the weights the variants actually came from.

llama.cpp's K-quants work on rows of 256 weights. A tensor whose rows are not a multiple of 256
(the demo model's n_embd is 576) falls back, tensor by tensor, to a type that fits (in the
llama.cpp of llama-cpp-python 0.3.36: Q2_K and Q3_K to Q4_0, Q4_K to Q5_0, Q5_K to Q5_1, Q6_K
to Q8_0, IQ4_XS to IQ4_NL). On such a model a K-quant file is larger than its name suggests:
`bits_per_weight` and `tensor_types` say what it really holds.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import struct
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgeprof.errors import ModelLoadError, UsageError
from edgeprof.models.files import MODELS_DIR, check_gguf, sha256_file
from edgeprof.models.gguf_header import FILE_TYPE_KEY, quant_name
from edgeprof.progress import ProgressFn

# llama_ftype names (LLAMA_FTYPE_MOSTLY_<NAME>) that quantize well without an importance
# matrix. IQ1/IQ2/IQ3 and Q2_K_S need one (llama-quantize refuses them without it); TQ and the
# FP4 formats are for models trained for them.
QUANT_TYPES = (
    "F16", "BF16", "Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q5_1", "Q5_0", "Q4_K_M", "Q4_K_S",
    "Q4_1", "Q4_0", "IQ4_NL", "IQ4_XS", "Q3_K_L", "Q3_K_M", "Q3_K_S", "Q2_K",
)  # fmt: skip
DEFAULT_TYPES = ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0", "Q3_K_M", "Q2_K")
MANIFEST_NAME = "edgeprof-quantize.json"
PARTIAL_SUFFIX = ".partial"  # not .gguf: an unfinished file never passes for a model
# ggml type names: not quantized blocks, and (of those) copied into the F32 file unchanged
_PLAIN_TYPES = ("F32", "F16", "BF16", "F64", "I8", "I16", "I32", "I64")
_KEPT_TYPES = ("F32", "F64", "I8", "I16", "I32", "I64")
_GGML_LOG_ERROR, _GGML_LOG_CONT = 4, 5  # enum ggml_log_level in ggml.h
# "name.Q4_1", "name-q4_k_m", "name.F16": the quantization a file name ends in
_QUANT_SUFFIX = re.compile(r"[._-](?:I?Q\d(?:_[A-Z0-9]+)*|TQ\d_\d|B?F16|F32)$", re.IGNORECASE)

__all__ = [
    "DEFAULT_TYPES",
    "MANIFEST_NAME",
    "PARTIAL_SUFFIX",
    "QUANT_TYPES",
    "ProgressFn",
    "QuantizeResult",
    "QuantizedFile",
    "ReferenceFile",
    "default_out_dir",
    "dequantize_to_f32",
    "parse_types",
    "quantize_model",
]

# progress(stage, done, total): "dequantize" counts tensors; "quantize:<TYPE>" counts types
# done before <TYPE> (and all of them, once the last is written).


@dataclass(frozen=True)
class ReferenceFile:
    path: Path
    sha256: str
    note: str  # "reference: dequantized from Q4_1" or "reference: the source, F16"
    size_bytes: int
    seconds: float  # dequantizing it; 0 when the source is the reference


@dataclass(frozen=True)
class QuantizedFile:
    type: str
    path: Path
    sha256: str
    size_bytes: int
    bits_per_weight: float  # file size over the source's parameter count
    seconds: float
    tensor_types: dict[str, int]  # ggml type -> tensors of it: what the fallbacks made


@dataclass(frozen=True)
class QuantizeResult:
    source_path: Path
    source_sha256: str
    source_type: str  # "Q4_1", "F16", ...
    n_params: int
    reference: ReferenceFile
    files: list[QuantizedFile]  # this run's, in the order asked
    manifest_path: Path
    manifest: dict[str, Any]  # what manifest_path holds (earlier types of the source too)


@dataclass(frozen=True)
class _Source:
    path: Path
    type: str
    quantized: bool
    n_params: int


def quantize_model(
    source: Path,
    types: Sequence[str],
    out_dir: Path,
    *,
    force: bool = False,
    threads: int | None = None,
    progress: ProgressFn | None = None,
) -> QuantizeResult:
    """Write `<name>.<TYPE>.gguf` per type into out_dir (and `<name>.F32.gguf` first when the
    source is quantized), then the manifest. Every check runs before anything is written."""
    report = progress or _no_progress
    wanted = parse_types(types)
    if threads is not None and threads < 1:
        raise UsageError(f"`threads` must be at least 1, not {threads}")
    src = _inspect(source)
    base = out_dir / _base_name(source)
    ref_path = base.with_name(f"{base.name}.F32.gguf") if src.quantized else source
    outputs = {t: base.with_name(f"{base.name}.{t}.gguf") for t in wanted}
    planned = ([ref_path] if src.quantized else []) + list(outputs.values())
    _refuse_overwrites(source, planned, force)
    _make_dir(out_dir)
    source_sha = sha256_file(source)
    manifest_path = out_dir / MANIFEST_NAME
    earlier = _earlier_entries(manifest_path, source_sha, wanted, force)

    reference = _reference(src, ref_path, source_sha, report)
    files: list[QuantizedFile] = []
    for i, t in enumerate(wanted):
        report(f"quantize:{t}", i, len(wanted))
        files.append(_quantize_one(ref_path, outputs[t], t, threads, src.n_params))
    if wanted:
        report(f"quantize:{wanted[-1]}", len(wanted), len(wanted))
    manifest = _manifest(src, source_sha, reference, earlier + [_entry(f) for f in files])
    _write_json(manifest_path, manifest)
    return QuantizeResult(
        source, source_sha, src.type, src.n_params, reference, files, manifest_path, manifest
    )


def dequantize_to_f32(src: Path, dst: Path, progress: ProgressFn | None = None) -> None:
    """Write dst: src with every tensor as float32 (F32 and integer tensors copied as they are),
    the same tensor order, names and shapes, every metadata field copied and general.file_type
    set to ALL_F32. One tensor is held in memory at a time; dst appears only once complete."""
    import gguf
    import numpy as np

    from edgeprof.convert.gguf_read import open_gguf

    report = progress or _no_progress
    _check_file(src)
    reader = open_gguf(src)
    tmp = _partial(dst)
    arch = str(_field(reader, "general.architecture", "llama"))
    try:
        with contextlib.closing(gguf.GGUFWriter(tmp, arch=arch)) as writer:
            _copy_metadata(reader, writer)
            for t in reader.tensors:
                kind = _written_type(t)
                dtype = np.dtype(np.float32) if kind.name == "F32" else t.data.dtype
                n_bytes = int(t.n_elements) * dtype.itemsize
                writer.add_tensor_info(t.name, _numpy_shape(t), dtype, n_bytes, kind)
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_ti_data_to_file()
            for i, t in enumerate(reader.tensors, 1):
                writer.write_tensor_data(_values(t))
                report("dequantize", i, len(reader.tensors))
        _publish(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def default_out_dir(source: Path) -> Path:
    """models/NAME/: ignored by git, beside the models `--model NAME` finds, and one folder
    (so one manifest) per source."""
    return MODELS_DIR / _base_name(source)


def parse_types(types: Sequence[str]) -> list[str]:
    """Upper-cased, de-duplicated, each one llama.cpp can write; UsageError names the rest."""
    wanted = list(dict.fromkeys(t.strip().upper() for t in types if t.strip()))
    unknown = [t for t in wanted if t not in QUANT_TYPES]
    if unknown or not wanted:
        what = f"unknown type {', '.join(unknown)}" if unknown else "no type given"
        raise UsageError(
            f"`types`: {what}; choose from {','.join(QUANT_TYPES)} "
            f"(e.g. `types` {','.join(DEFAULT_TYPES)})"
        )
    return wanted


def _no_progress(stage: str, done: int, total: int) -> None:
    pass


# -- the source ----------------------------------------------------------------------------


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise ModelLoadError(f"model file {path} not found; pass the path to a .gguf file")
    check_gguf(path)


def _inspect(path: Path) -> _Source:
    """What the plan needs from the header alone (milliseconds, nothing decoded)."""
    from gguf import GGMLQuantizationType

    from edgeprof.models.gguf_header import read_gguf_header

    _check_file(path)
    try:
        header = read_gguf_header(path)
    except (ValueError, struct.error, IndexError) as e:
        raise ModelLoadError(
            f"cannot read {path} as GGUF ({e}); the file is damaged, truncated or big-endian: "
            "pass a complete llama.cpp .gguf file"
        ) from e
    n_params = 0
    for t in header.tensors:
        n = 1
        for d in t.shape:
            n *= d
        n_params += n
    plain = {int(GGMLQuantizationType[n]) for n in _PLAIN_TYPES}
    quantized = any(t.type_id not in plain for t in header.tensors)
    return _Source(path, _type_name(header), quantized, n_params)


def _type_name(header: Any) -> str:
    """llama.cpp's name for the file's quantization: general.file_type, else its commonest
    matrix type."""
    from collections import Counter

    from gguf import GGMLQuantizationType

    name = quant_name(header.metadata.get(FILE_TYPE_KEY))
    if name is not None and not name.startswith("ftype"):
        return name
    matrices = Counter(t.type_id for t in header.tensors if len(t.shape) > 1)
    if not matrices:
        return "unknown"
    return GGMLQuantizationType(matrices.most_common(1)[0][0]).name


def _base_name(source: Path) -> str:
    """The file name without .gguf and without the quantization it ends in."""
    stem = source.name.removesuffix(".gguf")
    return _QUANT_SUFFIX.sub("", stem) or stem


# -- checks before any work ------------------------------------------------------------------


def _refuse_overwrites(source: Path, planned: list[Path], force: bool) -> None:
    for path in planned:
        if path.exists() and path.resolve() == source.resolve():
            raise UsageError(
                f"{path} would replace the source it is made from; pass another `out_dir`"
            )
    existing = [p for p in planned if p.exists()]
    if existing and not force:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise UsageError(f"{existing[0]} exists{more}; pass `force` to overwrite it")


def _make_dir(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as e:
        raise UsageError(f"`out_dir` {out_dir} is a file; pass a folder") from e
    except OSError as e:
        raise UsageError(f"cannot create `out_dir` {out_dir} ({e.strerror}); pass another") from e


def _earlier_entries(
    manifest_path: Path, source_sha: str, wanted: list[str], force: bool
) -> list[dict[str, Any]]:
    """The manifest's entries for other types of the same source whose files are unchanged
    in size, kept so that quantizing in several runs builds one manifest. A manifest of
    another source is an output like the files: replaced only with `force`."""
    if not manifest_path.is_file():
        return []
    try:
        old = json.loads(manifest_path.read_text(encoding="utf-8"))
        same_source = old["source"]["sha256"] == source_sha
        entries = list(old["types"]) if same_source else []
    except (OSError, ValueError, KeyError, TypeError):
        same_source, entries = False, []
    if not same_source and not force:
        raise UsageError(
            f"{manifest_path} describes another source; pass `force` to replace it "
            "or another `out_dir`"
        )
    return [
        e
        for e in entries
        if isinstance(e, dict)
        and e.get("type") not in wanted
        and Path(str(e.get("path"))).is_file()
        and Path(str(e["path"])).stat().st_size == e.get("size_bytes")
    ]


# -- writing -----------------------------------------------------------------------------------


def _reference(src: _Source, ref_path: Path, source_sha: str, report: ProgressFn) -> ReferenceFile:
    if not src.quantized:
        size = src.path.stat().st_size
        return ReferenceFile(src.path, source_sha, f"reference: the source, {src.type}", size, 0.0)
    t0 = time.perf_counter()
    dequantize_to_f32(src.path, ref_path, report)
    seconds = time.perf_counter() - t0
    note = f"reference: dequantized from {src.type}"
    return ReferenceFile(ref_path, sha256_file(ref_path), note, ref_path.stat().st_size, seconds)


def _quantize_one(
    src: Path, dst: Path, type_name: str, threads: int | None, n_params: int
) -> QuantizedFile:
    tmp = _partial(dst)
    t0 = time.perf_counter()
    try:
        _llama_quantize(src, tmp, type_name, threads)
        _publish(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    seconds = time.perf_counter() - t0
    size = dst.stat().st_size
    bits = size * 8 / n_params
    return QuantizedFile(type_name, dst, sha256_file(dst), size, bits, seconds, _tensor_types(dst))


def _tensor_types(path: Path) -> dict[str, int]:
    from collections import Counter

    from gguf import GGMLQuantizationType

    from edgeprof.models.gguf_header import read_gguf_header

    counts = Counter(GGMLQuantizationType(t.type_id).name for t in read_gguf_header(path).tensors)
    return dict(counts.most_common())


def _llama_quantize(src: Path, dst: Path, type_name: str, threads: int | None) -> None:
    from edgeprof.backends.llamacpp import import_llama_cpp

    llama_cpp = import_llama_cpp()
    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_quantize_default_params()
    params.nthread = threads or 0  # 0: llama.cpp uses every core
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{type_name}")
    with _llama_errors(llama_cpp) as errors:
        rc = llama_cpp.llama_model_quantize(
            os.fsencode(src), os.fsencode(dst), ctypes.byref(params)
        )
    if rc != 0:
        said = " ".join("".join(errors).split())[-300:] or "no message"
        raise ModelLoadError(
            f"llama.cpp could not quantize {src} to {type_name} ({said}); check that "
            f"{dst.parent} has room and that the source loads with `edgeprof run --model {src}`"
        )


@contextlib.contextmanager
def _llama_errors(llama_cpp: Any) -> Iterator[list[str]]:
    """llama.cpp's error text while quantizing, and nothing on stderr: it logs a line per
    tensor and a warning per K-quant fallback, which would tear through the progress bar.
    (llama-cpp-python's own filter cannot do this: its level table predates ggml's DEBUG
    level, so it shows warnings as errors and hides errors as debug.)"""
    errors: list[str] = []
    last_level = 0

    def keep(level: int, text: bytes, user_data: Any) -> None:
        nonlocal last_level
        if level != _GGML_LOG_CONT:
            last_level = level
        if last_level == _GGML_LOG_ERROR:
            errors.append(text.decode("utf-8", errors="replace"))

    callback = llama_cpp.llama_log_callback(keep)  # referenced until restored below
    before, before_data = llama_cpp.llama_log_callback(), ctypes.c_void_p()
    llama_cpp.llama_log_get(ctypes.byref(before), ctypes.byref(before_data))
    llama_cpp.llama_log_set(callback, None)
    try:
        yield errors
    finally:
        llama_cpp.llama_log_set(before, before_data)


def _copy_metadata(reader: Any, writer: Any) -> None:
    """Every field as gguf-py's gguf_new_metadata.py copies it (the writer adds the
    architecture and GGUF.* header values itself), with general.file_type set to ALL_F32."""
    from gguf import GGUFValueType, LlamaFileType

    alignment = _field(reader, "general.alignment")
    if alignment is not None:
        writer.data_alignment = int(alignment)
    for field in reader.fields.values():
        if field.name == "general.architecture" or field.name.startswith("GGUF."):
            continue
        vtype = GGUFValueType(field.types[0])
        sub_type = GGUFValueType(field.types[-1]) if vtype == GGUFValueType.ARRAY else None
        value = field.contents()
        if field.name == FILE_TYPE_KEY:
            value = int(LlamaFileType.ALL_F32)
        writer.add_key_value(field.name, value, vtype, sub_type=sub_type)
    if FILE_TYPE_KEY not in reader.fields:
        writer.add_key_value(FILE_TYPE_KEY, int(LlamaFileType.ALL_F32), GGUFValueType.UINT32)


def _written_type(tensor: Any) -> Any:
    """F32 for quantized and half-precision tensors; F32 and integer tensors stay as they are."""
    from gguf import GGMLQuantizationType

    kept = tensor.tensor_type.name in _KEPT_TYPES
    return tensor.tensor_type if kept else GGMLQuantizationType.F32


def _numpy_shape(tensor: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in reversed(tensor.shape))  # GGUF lists ne0 (fastest) first


def _values(tensor: Any) -> Any:
    """The tensor as _written_type says, C-contiguous, native byte order, numpy shape."""
    import numpy as np
    from gguf.quants import dequantize

    if tensor.tensor_type.name in _KEPT_TYPES:
        return np.ascontiguousarray(tensor.data).reshape(_numpy_shape(tensor))
    try:
        values = dequantize(tensor.data, tensor.tensor_type)
    except NotImplementedError as e:
        raise ModelLoadError(
            f"gguf {_gguf_version()} cannot dequantize {tensor.tensor_type.name} "
            f"({tensor.name}); upgrade it with `pip install -U gguf` or start from an "
            "F16/F32 GGUF"
        ) from e
    return np.ascontiguousarray(values, dtype=np.float32).reshape(_numpy_shape(tensor))


def _gguf_version() -> str:
    from importlib.metadata import version

    return version("gguf")


def _field(reader: Any, key: str, default: Any = None) -> Any:
    field = reader.fields.get(key)
    return default if field is None else field.contents()


def _partial(dst: Path) -> Path:
    return dst.with_name(dst.name + PARTIAL_SUFFIX)


def _publish(tmp: Path, dst: Path) -> None:
    """Flush tmp to disk, then rename it over dst: dst is either absent, the old file, or
    complete, even if the machine stops."""
    with tmp.open("rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, dst)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = _partial(path)
    try:
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        _publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# -- the manifest ------------------------------------------------------------------------------


def _entry(f: QuantizedFile) -> dict[str, Any]:
    return {**asdict(f), "path": str(f.path.resolve())}


def _manifest(
    src: _Source, source_sha: str, reference: ReferenceFile, entries: list[dict[str, Any]]
) -> dict[str, Any]:
    import llama_cpp

    from edgeprof import __version__

    return {
        "tool": f"edgeprof {__version__} quantize (llama-cpp-python {llama_cpp.__version__})",
        "source": {
            "path": str(src.path.resolve()),
            "sha256": source_sha,
            "type": src.type,
            "n_params": src.n_params,
        },
        "reference": {**asdict(reference), "path": str(reference.path.resolve())},
        "types": entries,
    }
