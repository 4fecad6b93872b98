"""Tiny random-weight decoders of each family edgeprof convert exports, written as GGUF here
(a helper module, not a test module).

Each has its architecture's real metadata keys, tensor names and tensor shapes as llama.cpp's
loader wants them (src/models/<arch>.cpp), a few layers of small dimensions and a byte-level
SentencePiece vocabulary, so llama.cpp loads and runs it as the real family and the export
can be checked against it token by token. `quant` writes the 2-D projections as Q8_0 or Q4_0
blocks (then the int8/int4 exports transcribe them exactly); norms, biases and the embedding
stay F32. `SHAPES` are real models' dimensions, for speed measurements on random weights.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

N_BYTE_VOCAB = 3 + 256  # <unk> <s> </s> and the 256 byte tokens
GEMMA_SWA = 8  # keys a sliding-window layer sees: shorter than the test prompts


@dataclass(frozen=True)
class Dims:
    n_layer: int
    head_dim: int
    tied: bool
    n_embd: int = 64
    n_head: int = 4
    n_head_kv: int = 2
    n_ff: int = 128
    n_vocab: int = N_BYTE_VOCAB  # more: unused tokens after the bytes


# head_dim != n_embd / n_head where the family allows it (Qwen 3 and Gemma 3 set
# attention.key_length); Gemma's 6 layers follow the default pattern: 0-4 local, 5 global
FAMILY_DIMS = {
    "llama": Dims(2, 16, tied=False),
    "qwen2": Dims(2, 16, tied=True),
    "qwen3": Dims(2, 32, tied=False),
    "phi3": Dims(2, 16, tied=False),
    "gemma3": Dims(6, 32, tied=True),
}
# Real models' shapes, for speed measurements on random weights (scripts/bench_onnx.py)
SHAPES = {
    "qwen2.5-0.5b": ("qwen2", replace(FAMILY_DIMS["qwen2"], n_layer=24, head_dim=64, n_embd=896,
                     n_head=14, n_head_kv=2, n_ff=4864, n_vocab=151936)),
    "qwen3-0.6b": ("qwen3", replace(FAMILY_DIMS["qwen3"], n_layer=28, head_dim=128, n_embd=1024,
                   n_head=16, n_head_kv=8, n_ff=3072, n_vocab=151936, tied=True)),
}  # fmt: skip


def write_tiny(
    path: Path,
    arch: str,
    *,
    quant: str | None = None,
    seed: int = 0,
    dims: Dims | None = None,
    embedding: str | None = None,
) -> Path:
    """A random `arch` decoder at `path`; `quant` is None (F32), "Q8_0" or "Q4_0" for the
    projections, `embedding` the same for token_embd (real files quantize it too)."""
    import gguf

    rng = np.random.default_rng(seed)
    d = dims or FAMILY_DIMS[arch]
    n_layer, head_dim = d.n_layer, d.head_dim
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name("Tiny random decoder")  # not "phi3": llama.cpp then wants its special tokens
    w.add_context_length(512)
    w.add_embedding_length(d.n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(d.n_ff)
    w.add_head_count(d.n_head)
    w.add_head_count_kv(d.n_head_kv)
    w.add_layer_norm_rms_eps(1e-6 if arch == "gemma3" else 1e-5)
    w.add_rope_freq_base(1e6 if arch in ("qwen2", "qwen3", "gemma3") else 1e4)
    if head_dim != d.n_embd // d.n_head:
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    if arch == "gemma3":
        w.add_sliding_window(GEMMA_SWA)
    if arch == "phi3":  # a long-context variant: short/long RoPE factors, an attention factor
        w.add_rope_dimension_count(head_dim)
        w.add_rope_scaling_attn_factors(1.19)
        w.add_rope_scaling_orig_ctx_len(256)
    _vocab(w, d.n_vocab)
    for name, array in _tensors(arch, d, rng):
        kind = embedding if name == "token_embd.weight" else quant if array.ndim == 2 else None
        _add(w, name, array, kind, gguf)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _vocab(w: Any, n_vocab: int) -> None:
    unused = [f"<unused{i}>" for i in range(n_vocab - N_BYTE_VOCAB)]
    tokens = ["<unk>", "<s>", "</s>", *(f"<0x{i:02X}>" for i in range(256)), *unused]
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * len(tokens))
    # unknown, control, control, bytes, unused (5)
    w.add_token_types([2, 3, 3, *([6] * 256), *([5] * len(unused))])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_space_prefix(False)


def _tensors(arch: str, d: Dims, rng: np.random.Generator) -> list[tuple[str, np.ndarray]]:
    """(GGUF name, numpy array in (n_out, n_in) order) for every tensor of the model."""
    embd = rng.normal(0, 1, (d.n_vocab, d.n_embd)).astype(np.float32)
    embd[:3] = 0  # control tokens: never the greedy choice, so no decode stops early
    out = [("token_embd.weight", embd)]
    for i in range(d.n_layer):
        out += [(f"blk.{i}.{name}", array) for name, array in _layer(arch, d, rng)]
    out.append(("output_norm.weight", _norm(rng, d.n_embd)))
    if not d.tied:
        head = _linear(rng, d.n_vocab, d.n_embd) * 4
        head[:3] = 0
        out.append(("output.weight", head))
    if arch == "phi3":
        half = d.head_dim // 2
        out.append(("rope_factors_short.weight", rng.uniform(1, 3, half).astype(np.float32)))
        out.append(("rope_factors_long.weight", rng.uniform(3, 9, half).astype(np.float32)))
    return out


def _layer(arch: str, d: Dims, rng: np.random.Generator) -> list[tuple[str, np.ndarray]]:
    """One block's tensors, named as in the GGUF after `blk.N.`, in llama.cpp's order."""
    nq, nkv, n_embd, n_ff = d.n_head * d.head_dim, d.n_head_kv * d.head_dim, d.n_embd, d.n_ff
    out = [("attn_norm.weight", _norm(rng, n_embd))]
    if arch == "phi3":
        out.append(("attn_qkv.weight", _linear(rng, nq + 2 * nkv, n_embd)))
    else:
        out += [(f"attn_{n}.weight", _linear(rng, size, n_embd))
                for n, size in (("q", nq), ("k", nkv), ("v", nkv))]  # fmt: skip
    if arch == "qwen2":
        out += [(f"attn_{n}.bias", rng.normal(0, 0.5, size).astype(np.float32))
                for n, size in (("q", nq), ("k", nkv), ("v", nkv))]  # fmt: skip
    if arch in ("qwen3", "gemma3"):
        out += [("attn_q_norm.weight", _norm(rng, d.head_dim)),
                ("attn_k_norm.weight", _norm(rng, d.head_dim))]  # fmt: skip
    out.append(("attn_output.weight", _linear(rng, n_embd, nq)))
    if arch == "gemma3":
        out.append(("post_attention_norm.weight", _norm(rng, n_embd)))
    out.append(("ffn_norm.weight", _norm(rng, n_embd)))
    if arch == "phi3":  # gate and up in one tensor
        out.append(("ffn_up.weight", _linear(rng, 2 * n_ff, n_embd)))
    else:
        out += [("ffn_gate.weight", _linear(rng, n_ff, n_embd)),
                ("ffn_up.weight", _linear(rng, n_ff, n_embd))]  # fmt: skip
    out.append(("ffn_down.weight", _linear(rng, n_embd, n_ff)))
    if arch == "gemma3":
        out.append(("post_ffw_norm.weight", _norm(rng, n_embd)))
    return out


def _linear(rng: np.random.Generator, n_out: int, n_in: int) -> np.ndarray:
    return rng.normal(0, 1 / np.sqrt(n_in), (n_out, n_in)).astype(np.float32)


def _norm(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.uniform(0.6, 1.4, n).astype(np.float32)


def _add(w: Any, name: str, array: np.ndarray, quant: str | None, gguf: Any) -> None:
    if quant is None:
        w.add_tensor(name, array)
        return
    qtype = gguf.GGMLQuantizationType[quant]
    w.add_tensor(name, gguf.quants.quantize(array, qtype), raw_dtype=qtype)
