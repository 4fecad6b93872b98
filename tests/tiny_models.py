"""Tiny random-weight decoders of each family edgeprof convert exports, written as GGUF here
(a helper module, not a test module).

Each has its architecture's real metadata keys, tensor names and tensor shapes as llama.cpp's
loader wants them (src/models/<arch>.cpp), a few layers of small dimensions and a byte-level
SentencePiece vocabulary, so llama.cpp loads and runs it as the real family and the export
can be checked against it token by token. `quant` writes the 2-D projections as Q8_0 or Q4_0
blocks (then the int8/int4 exports transcribe them exactly); norms, biases and the embedding
stay F32.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

N_EMBD, N_HEAD, N_HEAD_KV, N_FF = 64, 4, 2, 128
N_VOCAB = 3 + 256  # <unk> <s> </s> and the 256 byte tokens
GEMMA_SWA = 8  # keys a sliding-window layer sees: shorter than the test prompts

# arch: (layers, head_dim, extra tensors and keys); head_dim != N_EMBD / N_HEAD where the
# family allows it (Qwen 3, Gemma 3 set attention.key_length)
FAMILY_DIMS = {
    "llama": (2, 16),
    "qwen2": (2, 16),
    "qwen3": (2, 32),
    "phi3": (2, 16),
    "gemma3": (6, 32),  # the default pattern: layers 0-4 sliding-window, 5 global
}
TIED = {"llama": False, "qwen2": True, "qwen3": False, "phi3": False, "gemma3": True}


def write_tiny(path: Path, arch: str, *, quant: str | None = None, seed: int = 0) -> Path:
    """A random `arch` decoder at `path`; `quant` is None (F32), "Q8_0" or "Q4_0"."""
    import gguf

    rng = np.random.default_rng(seed)
    n_layer, head_dim = FAMILY_DIMS[arch]
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name("Tiny random decoder")  # not "phi3": llama.cpp then wants its special tokens
    w.add_context_length(512)
    w.add_embedding_length(N_EMBD)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD_KV)
    w.add_layer_norm_rms_eps(1e-6 if arch == "gemma3" else 1e-5)
    w.add_rope_freq_base(1e6 if arch in ("qwen2", "qwen3", "gemma3") else 1e4)
    if head_dim != N_EMBD // N_HEAD:
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    if arch == "gemma3":
        w.add_sliding_window(GEMMA_SWA)
    if arch == "phi3":  # a long-context variant: short/long RoPE factors, an attention factor
        w.add_rope_dimension_count(head_dim)
        w.add_rope_scaling_attn_factors(1.19)
        w.add_rope_scaling_orig_ctx_len(256)
    _vocab(w)
    for name, array in _tensors(arch, n_layer, head_dim, rng):
        _add(w, name, array, quant, gguf)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _vocab(w: Any) -> None:
    tokens = ["<unk>", "<s>", "</s>", *(f"<0x{i:02X}>" for i in range(256))]
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * len(tokens))
    w.add_token_types([2, 3, 3, *([6] * 256)])  # unknown, control, control, bytes
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_space_prefix(False)


def _tensors(
    arch: str, n_layer: int, head_dim: int, rng: np.random.Generator
) -> list[tuple[str, np.ndarray]]:
    """(GGUF name, numpy array in (n_out, n_in) order) for every tensor of the model."""
    embd = rng.normal(0, 1, (N_VOCAB, N_EMBD)).astype(np.float32)
    embd[:3] = 0  # control tokens: never the greedy choice, so no decode stops early
    out = [("token_embd.weight", embd)]
    for i in range(n_layer):
        out += [(f"blk.{i}.{name}", array) for name, array in _layer(arch, head_dim, rng)]
    out.append(("output_norm.weight", _norm(rng, N_EMBD)))
    if not TIED[arch]:
        head = _linear(rng, N_VOCAB, N_EMBD) * 4
        head[:3] = 0
        out.append(("output.weight", head))
    if arch == "phi3":
        half = head_dim // 2
        out.append(("rope_factors_short.weight", rng.uniform(1, 3, half).astype(np.float32)))
        out.append(("rope_factors_long.weight", rng.uniform(3, 9, half).astype(np.float32)))
    return out


def _layer(arch: str, head_dim: int, rng: np.random.Generator) -> list[tuple[str, np.ndarray]]:
    """One block's tensors, named as in the GGUF after `blk.N.`, in llama.cpp's order."""
    nq, nkv = N_HEAD * head_dim, N_HEAD_KV * head_dim
    out = [("attn_norm.weight", _norm(rng, N_EMBD))]
    if arch == "phi3":
        out.append(("attn_qkv.weight", _linear(rng, nq + 2 * nkv, N_EMBD)))
    else:
        out += [(f"attn_{n}.weight", _linear(rng, d, N_EMBD))
                for n, d in (("q", nq), ("k", nkv), ("v", nkv))]  # fmt: skip
    if arch == "qwen2":
        out += [(f"attn_{n}.bias", rng.normal(0, 0.5, d).astype(np.float32))
                for n, d in (("q", nq), ("k", nkv), ("v", nkv))]  # fmt: skip
    if arch in ("qwen3", "gemma3"):
        out += [("attn_q_norm.weight", _norm(rng, head_dim)),
                ("attn_k_norm.weight", _norm(rng, head_dim))]  # fmt: skip
    out.append(("attn_output.weight", _linear(rng, N_EMBD, nq)))
    if arch == "gemma3":
        out.append(("post_attention_norm.weight", _norm(rng, N_EMBD)))
    out.append(("ffn_norm.weight", _norm(rng, N_EMBD)))
    if arch == "phi3":  # gate and up in one tensor
        out.append(("ffn_up.weight", _linear(rng, 2 * N_FF, N_EMBD)))
    else:
        out += [("ffn_gate.weight", _linear(rng, N_FF, N_EMBD)),
                ("ffn_up.weight", _linear(rng, N_FF, N_EMBD))]  # fmt: skip
    out.append(("ffn_down.weight", _linear(rng, N_EMBD, N_FF)))
    if arch == "gemma3":
        out.append(("post_ffw_norm.weight", _norm(rng, N_EMBD)))
    return out


def _linear(rng: np.random.Generator, n_out: int, n_in: int) -> np.ndarray:
    return rng.normal(0, 1 / np.sqrt(n_in), (n_out, n_in)).astype(np.float32)


def _norm(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.uniform(0.6, 1.4, n).astype(np.float32)


def _add(w: Any, name: str, array: np.ndarray, quant: str | None, gguf: Any) -> None:
    projection = array.ndim == 2 and name != "token_embd.weight"
    if quant is None or not projection:
        w.add_tensor(name, array)
        return
    qtype = gguf.GGMLQuantizationType[quant]
    w.add_tensor(name, gguf.quants.quantize(array, qtype), raw_dtype=qtype)
