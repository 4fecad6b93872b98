"""GGUF quant blocks rewritten, bit for bit, as ONNX Runtime MatMulNBits weights.

Q4_0, Q4_1 and Q8_0 quantize 32 consecutive inputs of one output row with a scale d (and for
Q4_1 a min m), which is exactly MatMulNBits' blocking along K. With a float zero point
zp = -m/d, MatMulNBits' w = scale * (q - zp) reproduces d*q + m, so an int4 export of a Q4_1
GGUF runs the very weights llama.cpp runs instead of a second, lossier re-quantization.

    Q4_0: [d f16][16 bytes: q_j low nibble, q_{j+16} high]   w = d * (q - 8)
    Q4_1: [d f16][m f16][16 bytes, same nibble order]         w = d * q + m
    Q8_0: [d f16][32 x int8]                                  w = d * q
MatMulNBits packs element 2i in the low nibble and 2i+1 in the high nibble of byte i.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BLOCK = 32
NATIVE_TYPES = ("Q4_0", "Q4_1", "Q8_0")


@dataclass(frozen=True)
class Packed:
    """MatMulNBits initializers for an (N outputs, K inputs) weight."""

    b: np.ndarray  # uint8 [N, K/32, 32*bits/8]
    scales: np.ndarray  # float32 [N * K/32]
    zero_points: np.ndarray  # [N * K/32]: float32 (4-bit) or uint8 (8-bit)
    bits: int
    n: int
    k: int


def pack_gguf(type_name: str, raw: np.ndarray, n: int, k: int) -> Packed | None:
    """raw: the tensor's bytes as uint8 [n, row_bytes]; None for types we cannot transcribe."""
    if type_name not in NATIVE_TYPES or k % BLOCK:
        return None
    nb = k // BLOCK
    head = 4 if type_name == "Q4_1" else 2
    blk = np.ascontiguousarray(raw).reshape(n, nb, -1)
    d = blk[:, :, 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
    if type_name == "Q8_0":
        q = blk[:, :, 2:].view(np.int8).astype(np.int16) + 128
        # ORT's 8-bit CPU kernel takes only uint8 zero points (one byte per block)
        return Packed(q.astype(np.uint8), d.reshape(-1), np.full(n * nb, 128, np.uint8), 8, n, k)
    qs = blk[:, :, head:]
    q = np.concatenate([qs & 0xF, qs >> 4], axis=-1)
    packed = (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)
    if type_name == "Q4_0":
        zp = np.full(n * nb, 8.0, np.float32)
    else:
        m = blk[:, :, 2:4].copy().view(np.float16)[..., 0].astype(np.float32)
        zp = (-m / np.where(d == 0, 1.0, d)).reshape(-1).astype(np.float32)
    return Packed(packed, d.reshape(-1), zp, 4, n, k)


def concat_rows(parts: list[Packed]) -> Packed | None:
    """Stack weights along N (the fused QKV projection); None if their formats differ."""
    if len({(p.bits, p.k) for p in parts}) != 1:
        return None
    return Packed(
        np.concatenate([p.b for p in parts]),
        np.concatenate([p.scales for p in parts]),
        np.concatenate([p.zero_points for p in parts]),
        parts[0].bits, sum(p.n for p in parts), parts[0].k,
    )
