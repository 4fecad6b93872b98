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

    def lin(n_out: int, n_in: int) -> np.ndarray:
        return rng.normal(0, 1 / np.sqrt(n_in), (n_out, n_in)).astype(np.float32)

    def norm(n: int) -> np.ndarray:
        return rng.uniform(0.6, 1.4, n).astype(np.float32)

    nq, nkv = N_HEAD * head_dim, N_HEAD_KV * head_dim
    embd = rng.normal(0, 1, (N_VOCAB, N_EMBD)).astype(np.float32)
    embd[:3] = 0  # control tokens: never the greedy choice, so no decode stops early
    out = [("token_embd.weight", embd)]
    for i in range(n_layer):
        b = f"blk.{i}."
        out.append((b + "attn_norm.weight", norm(N_EMBD)))
        if arch == "phi3":
            out.append((b + "attn_qkv.weight", lin(nq + 2 * nkv, N_EMBD)))
        else:
            out += [(b + "attn_q.weight", lin(nq, N_EMBD)), (b + "attn_k.weight", lin(nkv, N_EMBD)),
                    (b + "attn_v.weight", lin(nkv, N_EMBD))]  # fmt: skip
        if arch == "qwen2":
            out += [(f"{b}attn_{n}.bias", rng.normal(0, 0.5, d).astype(np.float32))
                    for n, d in (("q", nq), ("k", nkv), ("v", nkv))]  # fmt: skip
        if arch in ("qwen3", "gemma3"):
            out += [(b + "attn_q_norm.weight", norm(head_dim)),
                    (b + "attn_k_norm.weight", norm(head_dim))]  # fmt: skip
        out.append((b + "attn_output.weight", lin(N_EMBD, nq)))
        if arch == "gemma3":
            out.append((b + "post_attention_norm.weight", norm(N_EMBD)))
        out.append((b + "ffn_norm.weight", norm(N_EMBD)))
        if arch == "phi3":
            out.append((b + "ffn_up.weight", lin(2 * N_FF, N_EMBD)))
        else:
            out += [(b + "ffn_gate.weight", lin(N_FF, N_EMBD)),
                    (b + "ffn_up.weight", lin(N_FF, N_EMBD))]  # fmt: skip
        out.append((b + "ffn_down.weight", lin(N_EMBD, N_FF)))
        if arch == "gemma3":
            out.append((b + "post_ffw_norm.weight", norm(N_EMBD)))
    out.append(("output_norm.weight", norm(N_EMBD)))
    if not TIED[arch]:
        head = lin(N_VOCAB, N_EMBD) * 4
        head[:3] = 0
        out.append(("output.weight", head))
    if arch == "phi3":
        out += [("rope_factors_short.weight", rng.uniform(1, 3, head_dim // 2).astype(np.float32)),
                ("rope_factors_long.weight", rng.uniform(3, 9, head_dim // 2).astype(np.float32))]  # fmt: skip
    return out


def _add(w: Any, name: str, array: np.ndarray, quant: str | None, gguf: Any) -> None:
    projection = array.ndim == 2 and name != "token_embd.weight"
    if quant is None or not projection:
        w.add_tensor(name, array)
        return
    qtype = gguf.GGMLQuantizationType[quant]
    w.add_tensor(name, gguf.quants.quantize(array, qtype), raw_dtype=qtype)
