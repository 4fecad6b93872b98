"""The decoder as an ONNX graph with Hugging Face / Optimum input and output names.

    input_ids [b, s] · attention_mask [b, past+s] · position_ids [b, s]
    past_key_values.N.key|value [b, n_head_kv, past, head_dim]
        -> logits [b, s|1, vocab] · present.N.key|value [b, n_head_kv, past+s, head_dim]

One block is RMSNorm -> packed QKV MatMul -> GroupQueryAttention (RoPE, causal mask, KV
concat and the KV-head broadcast in one ORT kernel) -> MatMul -> residual+RMSNorm ->
SwiGLU MLP. Few, fused nodes keep ORT's per-node overhead small next to a 135M model's math.
This module holds the graph's I/O, shared inputs and projections; decoder.py assembles the
blocks, with what the other families (arch.py) add to them.

RoPE layout: convert_hf_to_gguf.py permutes the rows of q/k so that llama.cpp's NORMAL rope,
which rotates *adjacent* pairs (x[2i], x[2i+1]), equals Hugging Face's rotate_half on the
original rows. We keep the GGUF rows as they are and ask ORT for the same adjacent-pair
rotation (`rotary_interleaved=1`); un-permuting to HF order with rotate_half would give the
same logits. Keys in the exported KV cache are therefore in GGUF head-dim order. The NEOX
families (Qwen, Phi-3, Gemma) are not permuted by the converter and llama.cpp rotates halves
for them, so they get `rotary_interleaved=0`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgeprof.convert.blocks import BLOCK, Packed, concat_rows
from edgeprof.convert.gguf_read import DecoderHParams

MS = "com.microsoft"
OPSET = 17


def rope_cache(
    hp: DecoderHParams,
    max_pos: int,
    freq_factors: np.ndarray | None,
    *,
    base: float | None = None,
    scale: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """cos/sin [max_pos, head_dim/2] as llama.cpp computes theta (the same for NORMAL and
    NEOX rope; they differ in which dimensions form a pair). `base`/`scale` default to the
    global layers'; sliding-window layers pass their own."""
    half = hp.head_dim // 2
    base = hp.rope_base if base is None else base
    inv_freq = base ** (-np.arange(half, dtype=np.float64) * 2.0 / hp.head_dim)
    if freq_factors is not None:
        inv_freq = inv_freq / freq_factors[:half].astype(np.float64)
    pos = np.arange(max_pos, dtype=np.float64) / (hp.rope_scale if scale is None else scale)
    theta = np.outer(pos, inv_freq)
    m = hp.rope_attn_factor
    return (np.cos(theta) * m).astype(np.float32), (np.sin(theta) * m).astype(np.float32)


class Graph:
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


def graph_io(
    hp: DecoderHParams, all_logits: bool
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


def sequence_lengths(g: Graph) -> None:
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
