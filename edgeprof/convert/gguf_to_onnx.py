"""GGUF -> ONNX: dequantize, build the decoder graph, optionally re-quantize, write sidecars."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeprof.convert.gguf_read import (
    field_value,
    iter_weights,
    open_gguf,
    packed_weights,
    read_hparams,
    rope_freqs,
    tensor_names,
)
from edgeprof.convert.sidecar import sidecar_paths, write_config, write_vocab_gguf
from edgeprof.errors import ModelLoadError, UsageError
from edgeprof.models.files import check_gguf, sha256_file
from edgeprof.models.tokens import eog_token_ids, load_vocab
from edgeprof.progress import ProgressFn

WEIGHT_FORMATS = ("fp32", "int8", "int4")
# Bumped when the same GGUF and format would convert to a different graph, so that exports a
# cache kept from before are made again (2: issue 28, Q4_K/Q5_0 transcribed, 8-bit wide tensors)
CONVERTER_VERSION = 2
NBITS_BLOCK_SIZE = 32  # the same block length as Q4_0/Q4_1/Q8_0
INT4_SYMMETRIC = False  # asymmetric, like Q4_1's scale + min
INT4_ACCURACY_LEVEL = 4  # int8 activations in the MatMulNBits kernel, as llama.cpp's Q8_1 dots
# int8 is MatMulNBits with 8-bit blocks, not quantize_dynamic's U8S8 MatMulInteger: that
# kernel saturates on x86 without VNNI (2 % top-1 agreement with llama.cpp on an AVX2-only
# EPYC, 85 % with VNNI). MatMulNBits 8-bit with int8 activations agrees 94 % here and the same
# under QEMU's AVX2 (Haswell) emulation; with float32 activations (level 0) it agrees 97 % but
# ORT has no fast kernel for it: 0.7 tok/s against 20 (docs/onnx.md has the figures).
INT8_SYMMETRIC = True  # like Q8_0: a scale per block, no zero point
INT8_ACCURACY_LEVEL = 4  # int8 activations, as llama.cpp's Q8_0 x Q8_0 dot products
# accuracy_level of the GGUF blocks each format transcribes rather than re-quantizes
NATIVE_ACCURACY_LEVEL = {"int4": INT4_ACCURACY_LEVEL, "int8": INT8_ACCURACY_LEVEL}
NATIVE_BITS = {"int4": (4, 8), "int8": (8,)}  # which GGUF block widths each format keeps
# GGUF block types of 5 to 8 bits. An int4 export keeps such tensors at 8 bits, as the GGUF's
# own mix does (Q4_K_M stores attn_v, ffn_down and others as Q5_0/Q6_K/Q8_0): re-quantized to
# 4 bits, Gemma 3 270M's logits moved 29 % (median) from llama.cpp's, at 8 bits 4 % (docs).
WIDE_TYPES = frozenset({"Q5_0", "Q5_1", "Q5_K", "Q6_K", "Q8_0", "Q8_1", "Q8_K"})

# progress(stage, done, total): stages "dequantize", "quantize", "write"


@dataclass(frozen=True)
class ConvertResult:
    onnx_path: Path
    weights: str
    arch: str
    seconds: float
    size_bytes: int  # .onnx + .onnx.data
    source_sha256: str
    files: list[Path] = field(default_factory=list)


def _no_progress(stage: str, done: int, total: int) -> None:
    pass


def convert_gguf(
    src: Path,
    dst: Path,
    *,
    weights: str = "fp32",
    all_logits: bool = False,
    max_positions: int | None = None,
    progress: ProgressFn = _no_progress,
) -> ConvertResult:
    """Write dst (an .onnx path) and its sidecars from a GGUF of a family in SUPPORTED_ARCHS."""
    t0 = time.perf_counter()
    if weights not in WEIGHT_FORMATS:
        raise UsageError(f"`weights` {weights!r} is not one of {', '.join(WEIGHT_FORMATS)}")
    if dst.suffix != ".onnx":
        raise UsageError(f"`dst` {dst} must end in .onnx, e.g. models/NAME.onnx")
    if not src.is_file():
        raise ModelLoadError(f"model file {src} not found; pass the path to a .gguf file")
    check_gguf(src)
    reader = open_gguf(src)
    hp = read_hparams(reader)
    dst.parent.mkdir(parents=True, exist_ok=True)
    paths = sidecar_paths(dst)
    # Phi-3's long-context variants: llama.cpp takes the short RoPE factors up to the
    # original context, so an export covering no more agrees with it at any `n_ctx`
    longrope = any(t.name == "rope_factors_short.weight" for t in reader.tensors)
    max_pos = max_positions or (hp.n_ctx_orig if longrope else hp.n_ctx_train)
    names = tensor_names(hp)

    def counted() -> Iterator[tuple[str, np.ndarray]]:
        for i, item in enumerate(iter_weights(reader, names), 1):
            yield item
            progress("dequantize", i, len(names))

    from edgeprof.convert.decoder import build_decoder

    native = {
        name: p
        for name, p in packed_weights(reader, names).items()
        if p.bits in NATIVE_BITS.get(weights, ())
    }
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    kept = {
        "gguf_blocks_kept": sorted({types[n] for n in native}),
        "gguf_tensors_kept": len(native),
    }
    sources: dict[str, list[str]] = {}
    model = build_decoder(
        hp,
        counted(),
        max_pos=max_pos,
        freq_factors=rope_freqs(reader, hp, max_pos),
        all_logits=all_logits,
        packed=native,
        accuracy_level=NATIVE_ACCURACY_LEVEL.get(weights, 0),
        sources=sources,
    )
    wide = {node for node, src in sources.items() if any(types[n] in WIDE_TYPES for n in src)}
    progress("quantize", 0, 1)
    model, quant = _quantize(model, weights, kept, wide)
    progress("quantize", 1, 1)
    progress("write", 0, 3)
    for stale in (dst, paths["data"]):
        stale.unlink(missing_ok=True)
    _save(model, dst)
    del model
    progress("write", 1, 3)
    write_vocab_gguf(reader, paths["vocab"])
    vocab = load_vocab(paths["vocab"])
    progress("write", 2, 3)
    sha = sha256_file(src)
    bos = int(field_value(reader, "tokenizer.ggml.bos_token_id", -1))
    eos = int(field_value(reader, "tokenizer.ggml.eos_token_id", -1))
    write_config(
        paths["config"],
        {
            "arch": hp.arch,
            "hparams": hp.to_dict(),
            "weights": weights,
            "converter": CONVERTER_VERSION,
            "quantization": quant,
            "io": "optimum",
            "logits": "all" if all_logits else "last",
            "max_positions": max_pos,
            "rope_layout": "gguf, halves (NEOX, rotary_interleaved=0)"
            if hp.rope_neox
            else "gguf (adjacent pairs, rotary_interleaved=1)",
            "source": {"file": src.name, "sha256": sha, "size_bytes": src.stat().st_size},
            "tokenizer": paths["vocab"].name,
            "chat_template": field_value(reader, "tokenizer.chat_template"),
            "bos_token_id": bos,
            "eos_token_id": eos,
            "eog_token_ids": eog_token_ids(vocab),
            "onnxruntime": _ort_version(),
        },
    )
    vocab.close()
    progress("write", 3, 3)
    files = [dst, paths["data"], paths["vocab"], paths["config"]]
    size = sum(p.stat().st_size for p in files[:2] if p.exists())
    return ConvertResult(dst, weights, hp.arch, time.perf_counter() - t0, size, sha, files)


def _quantize(
    model: Any, weights: str, kept: dict[str, Any], wide: set[str]
) -> tuple[Any, dict[str, Any]]:
    """The graph in `weights` format, and what the config records about how. `wide`: the
    projections whose GGUF tensors have 5-8-bit blocks (int4 keeps them at 8 bits)."""
    if weights == "fp32":
        return model, {"method": "none"}
    with _quiet_ort_logging():
        if weights == "int4":
            floats = {n.name for n in model.graph.node if n.op_type == "MatMul"}
            if floats & wide:
                model, _ = _quantize_nbits(
                    model, 8, INT8_SYMMETRIC, INT8_ACCURACY_LEVEL, exclude=floats - wide
                )
            model, quant = _quantize_nbits(model, 4, INT4_SYMMETRIC, INT4_ACCURACY_LEVEL)
            quant["native"] = "Q4_0/Q4_1/Q4_K/Q5_0/Q8_0 GGUF blocks become MatMulNBits as they are"
            quant["wide_at_8_bits"] = len(floats & wide)  # from Q5_0/Q6_K/... blocks
        else:
            model, quant = _quantize_nbits(model, 8, INT8_SYMMETRIC, INT8_ACCURACY_LEVEL)
            quant["native"] = "Q5_0/Q8_0 GGUF blocks become 8-bit MatMulNBits as they are"
    return model, {**quant, **kept}


def _save(model: Any, dst: Path) -> None:
    import onnx

    onnx.save_model(
        model,
        str(dst),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=dst.name + ".data",
        size_threshold=1024,
    )


def _quantize_nbits(
    model: Any, bits: int, symmetric: bool, accuracy_level: int, exclude: set[str] | None = None
) -> tuple[Any, dict[str, Any]]:
    """Every float MatMul left in the graph, but `exclude`, becomes MatMulNBits with
    `bits`-bit blocks."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    # Q4_1's min terms (graph.py) are exact float corrections; re-quantizing them adds error
    mins = {n.name for n in model.graph.node if n.name.endswith(".min_term")}
    skip = sorted(mins | (exclude or set()))
    quantizer = MatMulNBitsQuantizer(
        model,
        bits=bits,
        block_size=NBITS_BLOCK_SIZE,
        is_symmetric=symmetric,
        accuracy_level=accuracy_level,
        nodes_to_exclude=skip,
    )
    quantizer.process()
    return quantizer.model.model, {
        "method": "MatMulNBits",
        "bits": bits,
        "block_size": NBITS_BLOCK_SIZE,
        "symmetric": symmetric,
        "accuracy_level": accuracy_level,
        "ops": "MatMuls not transcribed from GGUF blocks; the embedding Gather stays fp32",
    }


@contextlib.contextmanager
def _quiet_ort_logging() -> Iterator[None]:
    """ORT's quantizers log every node at INFO; keep the progress bar readable."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def _ort_version() -> str:
    import onnxruntime

    return str(onnxruntime.__version__)
