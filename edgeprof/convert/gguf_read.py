"""Reading a llama-family GGUF: hyperparameters, metadata and float32 weights.

Weights come out in GGUF layout: a matrix with GGUF shape [n_in, n_out] is a numpy array
(n_out, n_in), i.e. the torch `nn.Linear.weight` layout, and attn_q/attn_k rows stay in the
order convert_hf_to_gguf.py permuted them into (see graph.py for why that is kept).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeprof.errors import ModelLoadError

SUPPORTED_ARCHS = ("llama",)


@dataclass(frozen=True)
class LlamaHParams:
    arch: str
    n_layer: int
    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_vocab: int
    n_ctx_train: int
    rope_base: float
    rope_scale: float  # linear position scaling (1.0 = none)
    rms_eps: float
    tied_embeddings: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def field_value(reader: Any, key: str, default: Any = None) -> Any:
    field = reader.fields.get(key)
    if field is None:
        return default
    return field.contents()


def open_gguf(path: Path) -> Any:
    import gguf

    try:
        return gguf.GGUFReader(path)
    # The reader indexes into the file as its header says: a truncated or damaged file shows
    # up as whatever error that indexing hits first (IndexError, KeyError, struct errors...).
    except Exception as e:
        raise ModelLoadError(
            f"cannot read {path} as GGUF ({type(e).__name__}: {e}); the file is damaged, "
            "truncated or not a GGUF: pass a complete llama.cpp .gguf file"
        ) from e


def read_hparams(reader: Any) -> LlamaHParams:
    arch = str(field_value(reader, "general.architecture", "?"))
    if arch not in SUPPORTED_ARCHS:
        raise ModelLoadError(
            f"architecture {arch!r} is not supported by edgeprof convert "
            f"(supported: {', '.join(SUPPORTED_ARCHS)}); run it on the llamacpp backend instead"
        )
    scaling = field_value(reader, f"{arch}.rope.scaling.type", "none")
    if scaling not in ("none", "linear"):
        raise ModelLoadError(
            f"RoPE scaling {scaling!r} is not supported by edgeprof convert (only linear); "
            "run this model on the llamacpp backend instead"
        )
    names = {t.name for t in reader.tensors}
    n_embd = int(field_value(reader, f"{arch}.embedding_length"))
    n_head = int(field_value(reader, f"{arch}.attention.head_count"))
    tokens = field_value(reader, "tokenizer.ggml.tokens", [])
    return LlamaHParams(
        arch=arch,
        n_layer=int(field_value(reader, f"{arch}.block_count")),
        n_embd=n_embd,
        n_ff=int(field_value(reader, f"{arch}.feed_forward_length")),
        n_head=n_head,
        n_head_kv=int(field_value(reader, f"{arch}.attention.head_count_kv", n_head)),
        head_dim=int(field_value(reader, f"{arch}.rope.dimension_count", n_embd // n_head)),
        n_vocab=int(field_value(reader, f"{arch}.vocab_size", len(tokens))),
        n_ctx_train=int(field_value(reader, f"{arch}.context_length", 4096)),
        rope_base=float(field_value(reader, f"{arch}.rope.freq_base", 10000.0)),
        rope_scale=float(field_value(reader, f"{arch}.rope.scaling.factor", 1.0) or 1.0),
        rms_eps=float(field_value(reader, f"{arch}.attention.layer_norm_rms_epsilon", 1e-5)),
        tied_embeddings="output.weight" not in names,
    )


def tensor_names(hp: LlamaHParams) -> list[str]:
    """Every tensor the graph reads, in the order the converter loads them."""
    names = ["token_embd.weight"]
    for i in range(hp.n_layer):
        names += [
            f"blk.{i}.{n}.weight"
            for n in (
                "attn_norm",
                "attn_q",
                "attn_k",
                "attn_v",
                "attn_output",
                "ffn_norm",
                "ffn_gate",
                "ffn_up",
                "ffn_down",
            )
        ]
    names.append("output_norm.weight")
    if not hp.tied_embeddings:
        names.append("output.weight")
    return names


def iter_weights(reader: Any, names: list[str]) -> Iterator[tuple[str, np.ndarray]]:
    """(name, float32 array) per tensor; Q4_1/Q8_0/K-quants are dequantized by `gguf`."""
    from gguf.quants import dequantize

    by_name = {t.name: t for t in reader.tensors}
    for name in names:
        t = by_name.get(name)
        if t is None:
            raise ModelLoadError(f"tensor {name} missing from the GGUF; the file may be truncated")
        w = dequantize(t.data, t.tensor_type).astype(np.float32, copy=False)
        shape = tuple(int(d) for d in reversed(t.shape))  # GGUF lists ne0 (fastest) first
        yield name, w.reshape(shape)


def rope_freqs(reader: Any) -> np.ndarray | None:
    """Llama 3 style per-dimension frequency factors, when the GGUF carries them."""
    for t in reader.tensors:
        if t.name == "rope_freqs.weight":
            return np.asarray(t.data, dtype=np.float32).reshape(-1)
    return None


def packed_weights(reader: Any, names: list[str]) -> dict[str, Any]:
    """The 2-D weights whose GGUF blocks MatMulNBits can run unchanged (see blocks.py)."""
    from edgeprof.convert.blocks import pack_gguf

    out = {}
    for t in reader.tensors:
        if t.name in names and len(t.shape) == 2:
            packed = pack_gguf(
                t.tensor_type.name, np.asarray(t.data), int(t.shape[1]), int(t.shape[0])
            )
            if packed is not None:
                out[t.name] = packed
    return out
