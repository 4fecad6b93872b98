"""Memory bandwidth and the decode roofline.

Decoding one token reads every weight once, so a memory-bound device cannot decode faster than
bandwidth ÷ bytes of weights read per token. `measure_bandwidth_gbs` is a short STREAM-style
copy benchmark: numpy copies one buffer into another, both well above the last-level cache, and
the best of several tries counts 2 × buffer bytes moved per copy (one read, one write), as
STREAM's "Copy" does. It is single-threaded (one core's view of memory), so on machines where
one core cannot saturate the memory controller it understates the bound; the report's
percentage is then an upper estimate of how close decode comes to the memory wall.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MIN_BYTES = 64 * 1024 * 1024
LLC_MULTIPLE = 4  # buffers this many times the last-level cache defeat it on every copy
FALLBACK_LLC_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class BandwidthResult:
    gbs: float  # best of `tries`, 1e9 bytes per second
    buffer_bytes: int
    tries: int
    method: str = "numpy-copy"


def llc_bytes(sys_root: Path = Path("/")) -> int | None:
    """The largest CPU cache on cpu0 from sysfs (Linux), or None where it cannot be read."""
    cache = sys_root / "sys/devices/system/cpu/cpu0/cache"
    best: int | None = None
    for index in sorted(cache.glob("index*")):
        try:
            text = (index / "size").read_text().strip()
        except OSError:
            continue
        size = _parse_cache_size(text)
        if size is not None and (best is None or size > best):
            best = size
    return best


def _parse_cache_size(text: str) -> int | None:
    units = {"K": 1024, "M": 1024**2, "G": 1024**3}
    text = text.strip().upper()
    if not text:
        return None
    scale = units.get(text[-1], 1)
    digits = text[:-1] if text[-1] in units else text
    try:
        return int(digits) * scale
    except ValueError:
        return None


def default_buffer_bytes(sys_root: Path = Path("/")) -> int:
    return max(DEFAULT_MIN_BYTES, LLC_MULTIPLE * (llc_bytes(sys_root) or FALLBACK_LLC_BYTES))


def measure_bandwidth_gbs(buffer_bytes: int | None = None, tries: int = 5) -> BandwidthResult:
    """Copy a buffer `tries` times (after one untimed copy that faults the pages in); return
    the best rate. Takes about a second with the default 128 MiB buffers."""
    import numpy as np

    if tries < 1:
        raise ValueError("tries must be at least 1")
    n = buffer_bytes or default_buffer_bytes()
    if n < 1024 * 1024:
        raise ValueError("buffer_bytes must be at least 1 MiB to measure memory, not cache")
    src = np.ones(n, dtype=np.uint8)
    dst = np.empty_like(src)
    np.copyto(dst, src)  # first touch: page faults must not count as bandwidth
    best_s = float("inf")
    for _ in range(tries):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best_s = min(best_s, time.perf_counter() - t0)
    return BandwidthResult(gbs=2 * n / best_s / 1e9, buffer_bytes=n, tries=tries)


def decode_roofline_tps(bandwidth_gbs: float, bytes_per_token: float) -> float:
    """The memory-bound ceiling on decode tokens per second."""
    if bandwidth_gbs <= 0 or bytes_per_token <= 0:
        raise ValueError("bandwidth_gbs and bytes_per_token must be positive")
    return bandwidth_gbs * 1e9 / bytes_per_token


def roofline_share(
    decode_tps: float | None, bandwidth_gbs: float | None, bytes_per_token: float | None
) -> float | None:
    """decode_tps as a fraction of the roofline (0.42 = 42 %); None when any input is missing."""
    if not decode_tps or not bandwidth_gbs or not bytes_per_token:
        return None
    if decode_tps < 0 or bandwidth_gbs < 0 or bytes_per_token < 0:
        return None
    return decode_tps / decode_roofline_tps(bandwidth_gbs, bytes_per_token)


def gguf_bytes_per_token(path: Path | str) -> int:
    """Bytes of weights one decode step reads from a GGUF: every tensor, except that only one
    row of the token-embedding table is read when the model has its own output matrix (with
    tied embeddings that table is the output matrix and is read whole). KV-cache reads, which
    grow with context, are left out: the bound is for short contexts."""
    from edgeprof.models.gguf_header import read_gguf_header

    tensors = read_gguf_header(path).tensors
    sizes = {t.name: t.n_bytes for t in tensors}
    total = sum(sizes.values())
    embd = sizes.get("token_embd.weight")
    if embd is not None and "output.weight" in sizes:
        rows = next(t.shape[-1] for t in tensors if t.name == "token_embd.weight")
        total -= embd - embd // max(rows, 1)
    return total


def weights_bytes_per_token(model_path: str | None, model_size_bytes: int | None) -> int | None:
    """Bytes read per decoded token for a run: from the GGUF's tensors when the file is still
    there, else the model file's size (right for dense ONNX/GGUF files within a few percent:
    headers and metadata are small), else None (cloud targets)."""
    if model_path and model_path.endswith(".gguf") and Path(model_path).is_file():
        try:
            return gguf_bytes_per_token(model_path)
        except (ValueError, OSError, KeyError):
            pass  # an unreadable header: the file size is the next best figure
    return model_size_bytes if model_size_bytes and model_size_bytes > 0 else None
