"""GGUF quant blocks rewritten, bit for bit, as ONNX Runtime MatMulNBits weights.

Q4_0, Q4_1 and Q8_0 quantize 32 consecutive inputs of one output row with a scale d (and for
Q4_1 a min m), which is exactly MatMulNBits' blocking along K, so an int4 export of such a GGUF
runs the very weights llama.cpp runs instead of a second, lossier re-quantization. Q4_0 and
Q8_0 map onto MatMulNBits' default zero points (8 and 128). Q4_1's min is no integer zero
point, and ORT's float-zero-point kernel is ~20x slower, so Q4_1 runs as zero point 8 plus a
correction: x.w = sum_b d_b (x_b . (q_b - 8)) + sum_b (m_b + 8 d_b) sum(x_b), the second term
one small MatMul of per-block input sums (graph.py).

    Q4_0: [d f16][16 bytes: q_j low nibble, q_{j+16} high]   w = d * (q - 8)
    Q4_1: [d f16][m f16][16 bytes, same nibble order]         w = d * q + m
    Q5_0: [d f16][32 high bits][16 bytes, same nibble order]  w = d * (q - 16)
    Q8_0: [d f16][32 x int8]                                  w = d * q
    Q4_K: 256 weights: [d f16][dmin f16][12 bytes: eight 6-bit scales and mins][128 bytes]
          sub-block j of 32: w = d * sc_j * q - dmin * m_j, i.e. Q4_1 with d * sc_j, -dmin * m_j
MatMulNBits packs element 2i in the low nibble and 2i+1 in the high nibble of byte i. Q5_0
becomes 8-bit blocks (q - 16 + 128 with the default zero point 128), exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BLOCK = 32
NATIVE_TYPES = ("Q4_0", "Q4_1", "Q5_0", "Q8_0", "Q4_K")
QK_K = 256  # weights in a K-quant super-block


@dataclass(frozen=True)
class Packed:
    """MatMulNBits initializers for an (N outputs, K inputs) weight."""

    b: np.ndarray  # uint8 [N, K/32, 32*bits/8]
    scales: np.ndarray  # float32 [N * K/32]
    zero_points: np.ndarray | None  # None: MatMulNBits' default (2^(bits-1))
    mins: np.ndarray | None  # float32 [N, K/32]: Q4_1's m + 8d, Q4_1 only
    bits: int
    n: int
    k: int


def pack_gguf(type_name: str, raw: np.ndarray, n: int, k: int) -> Packed | None:
    """raw: the tensor's bytes as uint8 [n, row_bytes]; None for types we cannot transcribe."""
    if type_name not in NATIVE_TYPES or k % BLOCK:
        return None
    if type_name == "Q4_K":
        return _pack_q4_k(raw, n, k) if k % QK_K == 0 else None
    nb = k // BLOCK
    head = 4 if type_name == "Q4_1" else 2
    blk = np.ascontiguousarray(raw).reshape(n, nb, -1)
    d = blk[:, :, 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
    if type_name == "Q8_0":
        q = blk[:, :, 2:].view(np.int8).astype(np.int16) + 128
        return Packed(q.astype(np.uint8), d.reshape(-1), None, None, 8, n, k)
    if type_name == "Q5_0":
        high = blk[:, :, 2:6].copy().view("<u4")  # bit j: element j's fifth bit
        bits = (high >> np.arange(32, dtype=np.uint32)) & 1
        qs = blk[:, :, 6:]
        q = np.concatenate([qs & 0xF, qs >> 4], axis=-1) | (bits.astype(np.uint8) << 4)
        return Packed((q + 112).astype(np.uint8), d.reshape(-1), None, None, 8, n, k)
    qs = blk[:, :, head:]
    q = np.concatenate([qs & 0xF, qs >> 4], axis=-1)
    packed = (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)
    if type_name == "Q4_0":
        return Packed(packed, d.reshape(-1), None, None, 4, n, k)
    m = blk[:, :, 2:4].copy().view(np.float16)[..., 0].astype(np.float32)
    # d*q + m = d*(q - 8) + (m + 8d): centred codes keep the int8-activation error small
    return Packed(packed, d.reshape(-1), None, m + 8.0 * d, 4, n, k)


def _pack_q4_k(raw: np.ndarray, n: int, k: int) -> Packed:
    from gguf.quants import Q4_K

    blk = np.ascontiguousarray(raw).reshape(n * k // QK_K, -1)
    d = blk[:, 0:2].copy().view(np.float16).astype(np.float32)
    dmin = blk[:, 2:4].copy().view(np.float16).astype(np.float32)
    sc, m = Q4_K.get_scale_min(blk[:, 4:16])
    scale = d * sc.astype(np.float32)  # [super-blocks, 8]: one per 32 weights
    minus = dmin * m.astype(np.float32)
    # 4 chunks of 32 bytes: low nibbles are sub-block 2i, high nibbles 2i+1
    qs = blk[:, 16:].reshape(-1, 4, 1, 32) >> np.array([0, 4], dtype=np.uint8).reshape(1, 1, 2, 1)
    q = (qs & 0xF).reshape(n, k // BLOCK, BLOCK)
    packed = (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)
    # d*sc*q - dmin*m = d*sc*(q - 8) + (8*d*sc - dmin*m), as Q4_1's
    mins = (8.0 * scale - minus).reshape(n, k // BLOCK)
    return Packed(packed, scale.reshape(-1), None, mins, 4, n, k)


def concat_rows(parts: list[Packed]) -> Packed | None:
    """Stack weights along N (the fused QKV projection); None if their formats differ."""
    if len({(p.bits, p.k, p.mins is None) for p in parts}) != 1:
        return None

    def cat(arrays: list[np.ndarray | None]) -> np.ndarray | None:
        return None if arrays[0] is None else np.concatenate(arrays)  # type: ignore[arg-type]

    return Packed(
        np.concatenate([p.b for p in parts]),
        np.concatenate([p.scales for p in parts]),
        cat([p.zero_points for p in parts]),
        cat([p.mins for p in parts]),
        parts[0].bits,
        sum(p.n for p in parts),
        parts[0].k,
    )
