"""What each exportable decoder family changes in the llama block, as llama.cpp builds it.

The ground truth is llama.cpp's graph for the architecture (src/models/<arch>.cpp in the
llama.cpp that llama-cpp-python vendors): the export must compute what llama.cpp computes on
the same GGUF, not what the original Hugging Face model computes.

    llama   RMSNorm, RoPE on adjacent pairs (q/k rows permuted by the GGUF converter), SwiGLU
    qwen2   + q/k/v biases; RoPE on halves ("NEOX": rotate_half, rows as in HF)
    qwen3   + per-head RMSNorm of q and k before RoPE; no biases; NEOX RoPE
    phi3    fused attn_qkv and fused ffn_up (gate rows first, then up); NEOX RoPE; the
            long-context variants' per-dimension RoPE factors and attention factor
    gemma3  embeddings times sqrt(n_embd); q/k norms; a norm after attention and after the
            FFN ("sandwich"); GELU (tanh) gated FFN; sliding-window attention on 5 of every
            6 layers with their own RoPE base (10 000); NEOX RoPE. Its GGUF converter stores
            the norms as 1 + w, so every norm here is a plain RMSNorm, as in llama.cpp.

Biases on q/k/v are taken wherever the GGUF has them (llama.cpp loads them for every family);
which tensors are fused is read from the file, not assumed.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    rope_neox: bool  # rotate halves (rotary_interleaved=0); else adjacent pairs
    ffn_act: str  # "silu" or "gelu_tanh", applied to the gate
    qk_norm: bool  # per-head RMSNorm of q and k before RoPE
    post_norms: bool  # RMSNorm of the attention and FFN outputs before each residual add
    embed_scale: bool  # token embeddings times sqrt(n_embd)
    swa_period: int  # the default sliding-window layer pattern (0: none)


FAMILIES: dict[str, Family] = {
    "llama": Family(False, "silu", False, False, False, 0),
    "qwen2": Family(True, "silu", False, False, False, 0),
    "qwen3": Family(True, "silu", True, False, False, 0),
    "phi3": Family(True, "silu", False, False, False, 0),
    "gemma3": Family(True, "gelu_tanh", True, True, True, 6),
}
SUPPORTED_ARCHS = tuple(FAMILIES)


def swa_layers(n_layer: int, pattern: object, n_swa: int) -> tuple[bool, ...]:
    """Which layers attend through a sliding window, as llama.cpp's set_swa_pattern decides:
    an explicit per-layer list, or a period n where every n-th layer (the last of each group
    of n) is global; n = 0 makes every layer local."""
    if n_swa <= 0:
        return (False,) * n_layer
    if isinstance(pattern, list):
        return tuple(bool(x) for x in pattern[:n_layer]) + (False,) * (n_layer - len(pattern))
    n = int(pattern)  # type: ignore[call-overload]
    return tuple(n == 0 or il % n < n - 1 for il in range(n_layer))
