"""The llama decoder as an ONNX graph with Hugging Face / Optimum input and output names.

    input_ids [b, s] · attention_mask [b, past+s] · position_ids [b, s]
    past_key_values.N.key|value [b, n_head_kv, past, head_dim]
        -> logits [b, s|1, vocab] · present.N.key|value [b, n_head_kv, past+s, head_dim]

One block is RMSNorm -> packed QKV MatMul -> GroupQueryAttention (RoPE, causal mask, KV
concat and the KV-head broadcast in one ORT kernel) -> MatMul -> residual+RMSNorm ->
SwiGLU MLP. Few, fused nodes keep ORT's per-node overhead small next to a 135M model's math.

RoPE layout: convert_hf_to_gguf.py permutes the rows of q/k so that llama.cpp's NORMAL rope,
which rotates *adjacent* pairs (x[2i], x[2i+1]), equals Hugging Face's rotate_half on the
original rows. We keep the GGUF rows as they are and ask ORT for the same adjacent-pair
rotation (`rotary_interleaved=1`); un-permuting to HF order with rotate_half would give the
same logits. Keys in the exported KV cache are therefore in GGUF head-dim order.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgeprof.convert.blocks import BLOCK, Packed, concat_rows
from edgeprof.convert.gguf_read import LlamaHParams

MS = "com.microsoft"
OPSET = 17


def rope_cache(
    hp: LlamaHParams, max_pos: int, freq_factors: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """cos/sin [max_pos, head_dim/2] exactly as llama.cpp computes theta for NORMAL rope."""
    half = hp.head_dim // 2
    inv_freq = hp.rope_base ** (-np.arange(half, dtype=np.float64) * 2.0 / hp.head_dim)
    if freq_factors is not None:
        inv_freq = inv_freq / freq_factors[:half].astype(np.float64)
    pos = np.arange(max_pos, dtype=np.float64) / hp.rope_scale
    theta = np.outer(pos, inv_freq)
    return np.cos(theta).astype(np.float32), np.sin(theta).astype(np.float32)


class _Graph:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.block_sums: set[str] = set()

    def init(self, name: str, array: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def op(
        self,
        op_type: str,
        inputs: list[str],
        outputs: list[str] | str,
        *,
        domain: str = "",
        name: str | None = None,
        **attrs: Any,
    ) -> list[str]:
        outs = [outputs] if isinstance(outputs, str) else outputs
        self.nodes.append(
            helper.make_node(
                op_type, inputs, outs, name=name or outs[0], domain=domain or None, **attrs
            )
        )
        return outs

    def linear(
        self,
        x: str,
        name: str,
        weights: list[np.ndarray],
        packed: list[Packed | None],
        accuracy_level: int,
    ) -> str:
        """x @ W.T for W = the row-concatenation of `weights` (GGUF/torch layout)."""
        fused = concat_rows([p for p in packed if p]) if all(packed) else None
        if fused is None:
            w = weights[0] if len(weights) == 1 else np.concatenate(weights, axis=0)
            self.init(f"{name}.weight", w.T)
            return self.op("MatMul", [x, f"{name}.weight"], name)[0]
        inputs = [
            x,
            self.init(f"{name}.weight_q", fused.b),
            self.init(f"{name}.weight_scales", fused.scales),
        ]
        if fused.zero_points is not None:
            inputs.append(self.init(f"{name}.weight_zp", fused.zero_points))
        y = self.op(
            "MatMulNBits",
            inputs,
            name if fused.mins is None else f"{name}.dq",
            domain=MS,
            K=fused.k,
            N=fused.n,
            bits=fused.bits,
            block_size=BLOCK,
            accuracy_level=accuracy_level,
        )[0]
        if fused.mins is None:
            return y
        # Q4_1's per-block min: + sum_b m_b * sum(x_b), see blocks.py
        sums = f"{x}.block_sums"
        if sums not in self.block_sums:
            self.block_sums.add(sums)
            shape = self.init(
                f"{x}.block_shape", np.array([0, 0, fused.k // BLOCK, BLOCK], dtype=np.int64)
            )
            blocks = self.op("Reshape", [x, shape], f"{x}.blocks")[0]
            self.op("ReduceSum", [blocks, "minus_one_i64"], sums, keepdims=0)
        mins = self.init(f"{name}.weight_mins", fused.mins.T)
        corr = self.op("MatMul", [sums, mins], f"{name}.min_term")[0]
        return self.op("Add", [y, corr], name)[0]


def _graph_io(
    hp: LlamaHParams, all_logits: bool
) -> tuple[list[onnx.ValueInfoProto], list[onnx.ValueInfoProto]]:
    """Optimum's decoder-with-past inputs and outputs (see the module docstring)."""
    f32 = TensorProto.FLOAT
    i64 = TensorProto.INT64
    kv_shape: list[str | int | None] = [
        "batch_size",
        hp.n_head_kv,
        "past_sequence_length",
        hp.head_dim,
    ]
    present_shape: list[str | int | None] = [
        "batch_size",
        hp.n_head_kv,
        "total_sequence_length",
        hp.head_dim,
    ]
    inputs = [
        helper.make_tensor_value_info("input_ids", i64, ["batch_size", "sequence_length"]),
        helper.make_tensor_value_info(
            "attention_mask", i64, ["batch_size", "total_sequence_length"]
        ),
        helper.make_tensor_value_info("position_ids", i64, ["batch_size", "sequence_length"]),
    ]
    outputs = [
        helper.make_tensor_value_info(
            "logits", f32, ["batch_size", "sequence_length" if all_logits else 1, hp.n_vocab]
        )
    ]
    for i in range(hp.n_layer):
        for kv in ("key", "value"):
            past = f"past_key_values.{i}.{kv}"
            inputs.append(helper.make_tensor_value_info(past, f32, kv_shape))
            outputs.append(helper.make_tensor_value_info(f"present.{i}.{kv}", f32, present_shape))
    return inputs, outputs


def _sequence_lengths(g: _Graph) -> None:
    """Shared constants, and GroupQueryAttention's seqlens_k / total_len from attention_mask."""
    g.init("one_i64", np.array([1], dtype=np.int64))
    g.init("minus_one_i64", np.array([-1], dtype=np.int64))
    g.init("idx1", np.array(1, dtype=np.int64))
    # GroupQueryAttention wants seqlens_k = tokens seen - 1 and the total length, as int32.
    g.op("ReduceSum", ["attention_mask", "one_i64"], "mask_sum", keepdims=0)
    g.op("Sub", ["mask_sum", "one_i64"], "mask_sum_m1")
    g.op("Cast", ["mask_sum_m1"], "seqlens_k", to=TensorProto.INT32)
    g.op("Shape", ["attention_mask"], "mask_shape")
    g.op("Gather", ["mask_shape", "idx1"], "total_len_i64", axis=0)
    g.op("Cast", ["total_len_i64"], "total_len", to=TensorProto.INT32)


def build_llama(
    hp: LlamaHParams,
    weights: Iterator[tuple[str, np.ndarray]],
    *,
    max_pos: int,
    freq_factors: np.ndarray | None = None,
    all_logits: bool = False,
    packed: dict[str, Packed] | None = None,
    accuracy_level: int = 0,
    producer: str = "edgeprof",
) -> onnx.ModelProto:
    """Build the decoder. `weights` yields (gguf name, float32 array) in gguf_read order.

    `packed` holds GGUF blocks transcribed for MatMulNBits (blocks.py); a projection whose
    weights are all there becomes MatMulNBits, any other a float MatMul.
    With `all_logits=False` only the last position's logits are computed, as llama.cpp does
    during a prompt: the vocab projection of every prompt token would otherwise dominate TTFT.
    """
    g = _Graph()
    w = dict(weights)
    pk = packed or {}

    def linear(x: str, name: str, gguf_names: list[str]) -> str:
        return g.linear(
            x,
            name,
            [w.pop(n) for n in gguf_names],
            [pk.pop(n, None) for n in gguf_names],
            accuracy_level,
        )

    inputs, outputs = _graph_io(hp, all_logits)
    cos, sin = rope_cache(hp, max_pos, freq_factors)
    g.init("rope_cos", cos)
    g.init("rope_sin", sin)
    _sequence_lengths(g)

    embd = w["token_embd.weight"]  # (vocab, n_embd); also the lm_head when tied
    g.init("embed.weight", embd)
    h = g.op("Gather", ["embed.weight", "input_ids"], "embed_out", axis=0)[0]
    eps = hp.rms_eps
    residual = ""
    for i in range(hp.n_layer):
        p = f"layers.{i}"
        attn_norm = g.init(f"{p}.attn_norm.weight", w.pop(f"blk.{i}.attn_norm.weight"))
        if i == 0:
            x = g.op(
                "SimplifiedLayerNormalization",
                [h, attn_norm],
                f"{p}.attn_norm",
                epsilon=eps,
                axis=-1,
                stash_type=1,
            )[0]
            residual = h
        else:
            x, _, _, residual = g.op(
                "SkipSimplifiedLayerNormalization",
                [h, residual, attn_norm],
                [f"{p}.attn_norm", "", "", f"{p}.attn_residual"],
                domain=MS,
                epsilon=eps,
            )
        qkv = linear(x, f"{p}.qkv_proj", [f"blk.{i}.attn_{n}.weight" for n in "qkv"])
        attn = g.op(
            "GroupQueryAttention",
            [
                qkv,
                "",
                "",
                f"past_key_values.{i}.key",
                f"past_key_values.{i}.value",
                "seqlens_k",
                "total_len",
                "rope_cos",
                "rope_sin",
                "position_ids",
            ],
            [f"{p}.attn", f"present.{i}.key", f"present.{i}.value"],
            domain=MS,
            num_heads=hp.n_head,
            kv_num_heads=hp.n_head_kv,
            do_rotary=1,
            rotary_interleaved=1,
        )[0]
        o = linear(attn, f"{p}.o_proj", [f"blk.{i}.attn_output.weight"])
        ffn_norm = g.init(f"{p}.ffn_norm.weight", w.pop(f"blk.{i}.ffn_norm.weight"))
        x, _, _, residual = g.op(
            "SkipSimplifiedLayerNormalization",
            [o, residual, ffn_norm],
            [f"{p}.ffn_norm", "", "", f"{p}.ffn_residual"],
            domain=MS,
            epsilon=eps,
        )
        gate = linear(x, f"{p}.gate_proj", [f"blk.{i}.ffn_gate.weight"])
        up = linear(x, f"{p}.up_proj", [f"blk.{i}.ffn_up.weight"])
        sig = g.op("Sigmoid", [gate], f"{p}.gate_sigmoid")[0]
        silu = g.op("Mul", [gate, sig], f"{p}.gate_silu")[0]
        act = g.op("Mul", [silu, up], f"{p}.swiglu")[0]
        h = linear(act, f"{p}.down_proj", [f"blk.{i}.ffn_down.weight"])

    final_norm = g.init("final_norm.weight", w.pop("output_norm.weight"))
    x = g.op(
        "SkipSimplifiedLayerNormalization",
        [h, residual, final_norm],
        ["final_norm", "", "", ""],
        domain=MS,
        epsilon=eps,
    )[0]
    if not all_logits:
        g.init("last_idx", np.array([-1], dtype=np.int64))
        x = g.op("Gather", [x, "last_idx"], "final_norm_last", axis=1)[0]
    head = "token_embd.weight" if hp.tied_embeddings else "output.weight"
    linear(x, "logits", [head])

    graph = helper.make_graph(g.nodes, f"{hp.arch}_decoder", inputs, outputs, g.inits)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(MS, 1)],
        producer_name=producer,
    )
    model.ir_version = 8
    return model
