"""The decoder blocks of every family in arch.py, assembled from graph.py's ops.

A llama block is RMSNorm -> QKV -> GroupQueryAttention -> o-proj -> residual + RMSNorm ->
SwiGLU -> residual. The other families add, as llama.cpp's graph for them does: biases on the
QKV projection (Qwen 2), per-head q/k RMSNorm (Qwen 3, Gemma 3: then q, k and v go to
GroupQueryAttention separately), norms on the attention and FFN outputs before each residual
add and a GELU gate (Gemma 3), a scaled embedding (Gemma 3), fused gate+up rows (Phi-3), and
sliding-window layers (Gemma 3: GQA's local_window_size with their own RoPE tables).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import onnx
from onnx import helper

from edgeprof.convert.blocks import Packed
from edgeprof.convert.gguf_read import DecoderHParams, layer_names
from edgeprof.convert.graph import MS, OPSET, Graph, graph_io, rope_cache, sequence_lengths


def build_decoder(
    hp: DecoderHParams,
    weights: Iterator[tuple[str, np.ndarray]],
    *,
    max_pos: int,
    freq_factors: np.ndarray | None = None,
    all_logits: bool = False,
    packed: dict[str, Packed] | None = None,
    accuracy_level: int = 0,
    producer: str = "edgeprof",
    sources: dict[str, list[str]] | None = None,
) -> onnx.ModelProto:
    """Build the decoder. `weights` yields (gguf name, float32 array) in gguf_read order.

    `packed` holds GGUF blocks transcribed for MatMulNBits (blocks.py); a projection whose
    weights are all there becomes MatMulNBits, any other a float MatMul.
    With `all_logits=False` only the last position's logits are computed, as llama.cpp does
    during a prompt: the vocab projection of every prompt token would otherwise dominate TTFT.
    `sources`, when given, is filled with each projection's node name -> its GGUF tensors.
    """
    d = _Decoder(hp, dict(weights), packed or {}, accuracy_level)
    d.sources = {} if sources is None else sources
    inputs, outputs = graph_io(hp, all_logits)
    d.rope_tables(max_pos, freq_factors)
    sequence_lengths(d.g)
    h = d.embed()
    residual = ""
    for i in range(hp.n_layer):
        h, residual = d.block(i, h, residual)
    d.head(h, residual, all_logits)
    graph = helper.make_graph(d.g.nodes, f"{hp.arch}_decoder", inputs, outputs, d.g.inits)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(MS, 1)],
        producer_name=producer,
    )
    model.ir_version = 8
    return model


class _Decoder:
    """The graph being built, with the weights not yet placed in it (each is popped once)."""

    def __init__(
        self,
        hp: DecoderHParams,
        weights: dict[str, np.ndarray],
        packed: dict[str, Packed],
        accuracy_level: int,
    ) -> None:
        self.hp, self.w, self.pk, self.level = hp, weights, packed, accuracy_level
        self.g = Graph()
        self.sources: dict[str, list[str]] = {}

    # --- pieces ---------------------------------------------------------------------------
    def linear(self, x: str, name: str, gguf_names: list[str]) -> str:
        self.sources[name] = gguf_names
        return self.g.linear(
            x,
            name,
            [self.w.pop(n) for n in gguf_names],
            [self.pk.pop(n, None) for n in gguf_names],
            self.level,
        )

    def norm(self, x: str, name: str, gguf_name: str) -> str:
        weight = self.g.init(f"{name}.weight", self.w.pop(gguf_name))
        return self.g.op(
            "SimplifiedLayerNormalization",
            [x, weight],
            name,
            epsilon=self.hp.rms_eps,
            axis=-1,
            stash_type=1,
        )[0]

    def skip_norm(self, x: str, skip: str, name: str, gguf_name: str) -> tuple[str, str]:
        """RMSNorm(x + skip), and x + skip (the residual stream)."""
        weight = self.g.init(f"{name}.weight", self.w.pop(gguf_name))
        out = self.g.op(
            "SkipSimplifiedLayerNormalization",
            [x, skip, weight],
            [name, "", "", f"{name}.residual"],
            domain=MS,
            epsilon=self.hp.rms_eps,
        )
        return out[0], out[3]

    def rope_tables(self, max_pos: int, freq_factors: np.ndarray | None) -> None:
        hp, g = self.hp, self.g
        cos, sin = rope_cache(hp, max_pos, freq_factors)
        g.init("rope_cos", cos)
        g.init("rope_sin", sin)
        if any(hp.swa_layers):  # Gemma 3's local layers: their own base, no position scaling
            cos, sin = rope_cache(hp, max_pos, freq_factors, base=hp.rope_base_swa, scale=1.0)
            g.init("rope_cos_swa", cos)
            g.init("rope_sin_swa", sin)

    # --- the model ------------------------------------------------------------------------
    def embed(self) -> str:
        g = self.g
        g.init("embed.weight", self.w["token_embd.weight"])  # also the lm_head when tied
        h = g.op("Gather", ["embed.weight", "input_ids"], "embed_out", axis=0)[0]
        if self.hp.embed_scale != 1.0:  # Gemma: llama.cpp scales by sqrtf(n_embd) in float32
            g.init("embed_scale", np.array(self.hp.embed_scale, dtype=np.float32))
            h = g.op("Mul", [h, "embed_scale"], "embed_scaled")[0]
        return h

    def block(self, i: int, h: str, residual: str) -> tuple[str, str]:
        """Layer i on h (the previous layer's output) and the residual stream before it."""
        p, t = f"layers.{i}", layer_names(self.hp, i)
        if i == 0:
            x, residual = self.norm(h, f"{p}.attn_norm", t["attn_norm"][0]), h
        else:
            x, residual = self.skip_norm(h, residual, f"{p}.attn_norm", t["attn_norm"][0])
        qkv = self.linear(x, f"{p}.qkv_proj", t["qkv"])
        if t["qkv_bias"]:
            bias = np.concatenate([self.w.pop(n) for n in t["qkv_bias"]])
            qkv = self.g.op("Add", [qkv, self.g.init(f"{p}.qkv_proj.bias", bias)],
                            f"{p}.qkv_proj.biased")[0]  # fmt: skip
        attn = self.attention(i, qkv, [self.w.pop(n) for n in t["q_norm"] + t["k_norm"]])
        o = self.linear(attn, f"{p}.o_proj", t["attn_output"])
        if t["attn_post_norm"]:
            o = self.norm(o, f"{p}.attn_post_norm", t["attn_post_norm"][0])
        x, residual = self.skip_norm(o, residual, f"{p}.ffn_norm", t["ffn_norm"][0])
        h = self.ffn(p, x, t)
        if t["ffn_post_norm"]:
            h = self.norm(h, f"{p}.ffn_post_norm", t["ffn_post_norm"][0])
        return h, residual

    def attention(self, i: int, qkv: str, qk_norms: list[np.ndarray]) -> str:
        """GroupQueryAttention of layer i on the projected qkv: RoPE, causal (or
        sliding-window) mask, KV cache. With q/k norms, q and k are normalized per head first
        and the three go in separately; otherwise GQA splits the packed qkv itself."""
        hp, g, p = self.hp, self.g, f"layers.{i}"
        qkv_inputs = [qkv, "", ""]
        if qk_norms:
            nq, nkv = hp.n_head * hp.head_dim, hp.n_head_kv * hp.head_dim
            sizes = g.init(f"{p}.qkv_sizes", np.array([nq, nkv, nkv], dtype=np.int64))
            q, k, v = g.op("Split", [qkv, sizes], [f"{p}.q", f"{p}.k", f"{p}.v"], axis=-1)
            q = self.head_norm(q, hp.n_head, qk_norms[0], f"{p}.q_norm")
            k = self.head_norm(k, hp.n_head_kv, qk_norms[1], f"{p}.k_norm")
            qkv_inputs = [q, k, v]
        swa = bool(hp.swa_layers) and hp.swa_layers[i]
        attrs: dict[str, Any] = {}
        if swa:
            # llama.cpp's n_swa is GQA's local_window_size: measured on tests/tiny_models.py's
            # Gemma 3 past its window, n_swa - 1 gives 9 % logit error, n_swa 1e-4 (as within)
            attrs["local_window_size"] = hp.n_swa
        if hp.attn_scale is not None:
            attrs["scale"] = hp.attn_scale
        rope = "_swa" if swa else ""
        return g.op(
            "GroupQueryAttention",
            [
                *qkv_inputs,
                f"past_key_values.{i}.key",
                f"past_key_values.{i}.value",
                "seqlens_k",
                "total_len",
                f"rope_cos{rope}",
                f"rope_sin{rope}",
                "position_ids",
            ],
            [f"{p}.attn", f"present.{i}.key", f"present.{i}.value"],
            domain=MS,
            num_heads=hp.n_head,
            kv_num_heads=hp.n_head_kv,
            do_rotary=1,
            rotary_interleaved=0 if hp.rope_neox else 1,
            **attrs,
        )[0]

    def head_norm(self, x: str, heads: int, weight: np.ndarray, name: str) -> str:
        """RMSNorm over each head's head_dim values of x [b, s, heads * head_dim]."""
        g, dim = self.g, self.hp.head_dim
        split = g.init(f"{name}.heads", np.array([0, 0, heads, dim], dtype=np.int64))
        flat = g.init(f"{name}.flat", np.array([0, 0, heads * dim], dtype=np.int64))
        y = g.op("Reshape", [x, split], f"{name}.in")[0]
        y = g.op(
            "SimplifiedLayerNormalization",
            [y, g.init(f"{name}.weight", weight)],
            f"{name}.out",
            epsilon=self.hp.rms_eps,
            axis=-1,
            stash_type=1,
        )[0]
        return g.op("Reshape", [y, flat], name)[0]

    def ffn(self, p: str, x: str, t: dict[str, list[str]]) -> str:
        """down(act(gate) * up): SiLU (SwiGLU) or GELU-tanh (Gemma) on the gate."""
        g = self.g
        if t["ffn_gate"]:
            gate = self.linear(x, f"{p}.gate_proj", t["ffn_gate"])
            up = self.linear(x, f"{p}.up_proj", t["ffn_up"])
        else:  # Phi-3: one projection, the gate's rows first
            fused = self.linear(x, f"{p}.gate_up_proj", t["ffn_up"])
            gate, up = g.op("Split", [fused], [f"{p}.gate", f"{p}.up"], axis=-1)
        if self.hp.ffn_act == "gelu_tanh":  # ggml_gelu: the tanh approximation
            act = g.op("FastGelu", [gate], f"{p}.gate_gelu", domain=MS)[0]
        else:
            sig = g.op("Sigmoid", [gate], f"{p}.gate_sigmoid")[0]
            act = g.op("Mul", [gate, sig], f"{p}.gate_silu")[0]
        gated = g.op("Mul", [act, up], f"{p}.gated")[0]
        return self.linear(gated, f"{p}.down_proj", t["ffn_down"])

    def head(self, h: str, residual: str, all_logits: bool) -> None:
        """Final norm and lm_head into `logits`, plus an output bias (Qwen 2 may have one) and
        soft-capping cap * tanh(x / cap) when the GGUF sets final_logit_softcapping."""
        hp, g = self.hp, self.g
        x, _ = self.skip_norm(h, residual, "final_norm", "output_norm.weight")
        if not all_logits:
            g.init("last_idx", np.array([-1], dtype=np.int64))
            x = g.op("Gather", [x, "last_idx"], "final_norm_last", axis=1)[0]
        head = "token_embd.weight" if hp.tied_embeddings else "output.weight"
        bias = self.w.pop("output.bias", None)
        steps = (["bias"] if bias is not None else []) + (["cap"] if hp.logit_softcap else [])
        x = self.linear(x, "logits" if not steps else "logits_raw", [head])
        if bias is not None:
            out = "logits" if steps[-1] == "bias" else "logits_biased"
            x = g.op("Add", [x, g.init("logits.bias", bias)], out)[0]
        if hp.logit_softcap:
            cap = g.init("logit_softcap", np.array(hp.logit_softcap, dtype=np.float32))
            x = g.op("Div", [x, cap], "logits_capped_in")[0]
            x = g.op("Tanh", [x], "logits_capped")[0]
            g.op("Mul", [x, cap], "logits")
