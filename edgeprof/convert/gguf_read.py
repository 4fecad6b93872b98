"""Reading a decoder GGUF (llama, Qwen 2/3, Phi-3, Gemma 3): hyperparameters and weights.

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

from edgeprof.convert.arch import FAMILIES, SUPPORTED_ARCHS, swa_layers
from edgeprof.errors import ModelLoadError


@dataclass(frozen=True)
class DecoderHParams:
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
    # what the family changes in the llama block (arch.py); the defaults are llama's
    rope_neox: bool = False
    ffn_act: str = "silu"
    qk_norm: bool = False
    post_norms: bool = False
    embed_scale: float = 1.0
    attn_scale: float | None = None  # None: 1/sqrt(head_dim), GroupQueryAttention's default
    logit_softcap: float = 0.0  # 0: none
    n_swa: int = 0  # sliding window (keys a query sees, itself included); 0: none
    swa_layers: tuple[bool, ...] = ()
    rope_base_swa: float = 10000.0
    rope_attn_factor: float = 1.0  # scales cos/sin (Phi-3 long-context variants)
    n_ctx_orig: int = 0  # the context the short RoPE factors are for (Phi-3); 0: n_ctx_train
    fused_qkv: bool = False  # one attn_qkv tensor (Phi-3)
    qkv_bias: bool = False
    fused_gate_up: bool = False  # ffn_up holds gate then up rows (Phi-3)
    output_bias: bool = False

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


def _required(reader: Any, key: str) -> Any:
    value = field_value(reader, key)
    if value is None:
        raise ModelLoadError(f"the GGUF lacks {key}; the file is damaged or not a decoder model")
    return value


def read_hparams(reader: Any) -> DecoderHParams:
    arch = str(field_value(reader, "general.architecture", "?"))
    if arch not in FAMILIES:
        raise ModelLoadError(
            f"architecture {arch!r} is not supported by edgeprof convert "
            f"(supported: {', '.join(SUPPORTED_ARCHS)}); run it on the llamacpp backend instead"
        )
    family = FAMILIES[arch]
    scaling = field_value(reader, f"{arch}.rope.scaling.type", "none")
    if scaling not in ("none", "linear"):
        raise ModelLoadError(
            f"RoPE scaling {scaling!r} is not supported by edgeprof convert (only linear); "
            "run this model on the llamacpp backend instead"
        )
    names = {t.name for t in reader.tensors}
    n_layer = int(_required(reader, f"{arch}.block_count"))
    n_embd = int(_required(reader, f"{arch}.embedding_length"))
    n_head = int(_required(reader, f"{arch}.attention.head_count"))
    head_dim = int(field_value(reader, f"{arch}.attention.key_length", n_embd // n_head))
    n_rot = int(field_value(reader, f"{arch}.rope.dimension_count", head_dim))
    v_dim = int(field_value(reader, f"{arch}.attention.value_length", head_dim))
    if n_rot != head_dim or v_dim != head_dim:
        raise ModelLoadError(
            f"this {arch} model rotates {n_rot} of {head_dim} head dimensions or has values of "
            f"{v_dim}; edgeprof convert handles full RoPE and equal key/value sizes only: run "
            "it on the llamacpp backend instead"
        )
    tokens = field_value(reader, "tokenizer.ggml.tokens", [])
    n_swa = int(field_value(reader, f"{arch}.attention.sliding_window", 0) or 0)
    if not family.swa_period:
        n_swa = 0  # llama.cpp ignores Phi-3's sliding_window (a conversion bug it works around)
    pattern = field_value(reader, f"{arch}.attention.sliding_window_pattern", family.swa_period)
    attn_scale = None
    if arch == "gemma3" and n_layer == 62:  # 27B: query_pre_attn_scalar = n_embd / n_head
        attn_scale = float(np.float32(1.0) / np.sqrt(np.float32(n_embd // n_head)))
    n_ctx_train = int(field_value(reader, f"{arch}.context_length", 4096))
    return DecoderHParams(
        arch=arch,
        n_layer=n_layer,
        n_embd=n_embd,
        n_ff=int(_required(reader, f"{arch}.feed_forward_length")),
        n_head=n_head,
        n_head_kv=int(field_value(reader, f"{arch}.attention.head_count_kv", n_head)),
        head_dim=head_dim,
        n_vocab=int(field_value(reader, f"{arch}.vocab_size", len(tokens))),
        n_ctx_train=n_ctx_train,
        rope_base=float(field_value(reader, f"{arch}.rope.freq_base", 10000.0)),
        rope_scale=float(field_value(reader, f"{arch}.rope.scaling.factor", 1.0) or 1.0),
        rms_eps=float(field_value(reader, f"{arch}.attention.layer_norm_rms_epsilon", 1e-5)),
        tied_embeddings="output.weight" not in names,
        rope_neox=family.rope_neox,
        ffn_act=family.ffn_act,
        qk_norm=family.qk_norm,
        post_norms=family.post_norms,
        embed_scale=float(np.sqrt(np.float32(n_embd))) if family.embed_scale else 1.0,
        attn_scale=attn_scale,
        logit_softcap=float(field_value(reader, f"{arch}.final_logit_softcapping", 0.0) or 0.0),
        n_swa=n_swa,
        swa_layers=swa_layers(n_layer, pattern, n_swa),
        rope_base_swa=float(field_value(reader, f"{arch}.rope.freq_base_swa", 10000.0)),
        rope_attn_factor=float(field_value(reader, f"{arch}.rope.scaling.attn_factor", 1.0)),
        n_ctx_orig=int(
            field_value(reader, f"{arch}.rope.scaling.original_context_length", n_ctx_train)
        ),
        fused_qkv="blk.0.attn_qkv.weight" in names,
        qkv_bias="blk.0.attn_q.bias" in names or "blk.0.attn_qkv.bias" in names,
        fused_gate_up="blk.0.ffn_gate.weight" not in names,
        output_bias="output.bias" in names,
    )


def layer_names(hp: DecoderHParams, i: int) -> dict[str, list[str]]:
    """The GGUF tensors of block i, by the role graph.py gives them (absent roles: [])."""
    b = f"blk.{i}."
    qkv = ["attn_qkv"] if hp.fused_qkv else ["attn_q", "attn_k", "attn_v"]
    return {
        "attn_norm": [b + "attn_norm.weight"],
        "qkv": [f"{b}{n}.weight" for n in qkv],
        "qkv_bias": [f"{b}{n}.bias" for n in qkv] if hp.qkv_bias else [],
        "q_norm": [b + "attn_q_norm.weight"] if hp.qk_norm else [],
        "k_norm": [b + "attn_k_norm.weight"] if hp.qk_norm else [],
        "attn_output": [b + "attn_output.weight"],
        "attn_post_norm": [b + "post_attention_norm.weight"] if hp.post_norms else [],
        "ffn_norm": [b + "ffn_norm.weight"],
        "ffn_gate": [] if hp.fused_gate_up else [b + "ffn_gate.weight"],
        "ffn_up": [b + "ffn_up.weight"],
        "ffn_down": [b + "ffn_down.weight"],
        "ffn_post_norm": [b + "post_ffw_norm.weight"] if hp.post_norms else [],
    }


def tensor_names(hp: DecoderHParams) -> list[str]:
    """Every tensor the graph reads, in the order the converter loads them."""
    names = ["token_embd.weight"]
    for i in range(hp.n_layer):
        names += [n for group in layer_names(hp, i).values() for n in group]
    names.append("output_norm.weight")
    if not hp.tied_embeddings:
        names.append("output.weight")
    if hp.output_bias:
        names.append("output.bias")
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


def rope_freqs(reader: Any, hp: DecoderHParams, max_pos: int) -> np.ndarray | None:
    """Per-dimension RoPE frequency factors, when the GGUF carries them: Llama 3's
    rope_freqs, or Phi-3's short and long factors, which llama.cpp picks by the context it
    runs with (long above the original context); here by the positions the export covers."""
    by_name = {t.name: t for t in reader.tensors}
    name = "rope_freqs.weight"
    if name not in by_name and "rope_factors_short.weight" in by_name:
        long = max_pos > (hp.n_ctx_orig or hp.n_ctx_train)
        name = "rope_factors_long.weight" if long else "rope_factors_short.weight"
    t = by_name.get(name)
    return None if t is None else np.asarray(t.data, dtype=np.float32).reshape(-1)


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
