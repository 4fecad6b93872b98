"""Memory bandwidth benchmark and the decode roofline."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeprof.measure.bandwidth import (
    _parse_cache_size,
    decode_roofline_tps,
    default_buffer_bytes,
    gguf_bytes_per_token,
    llc_bytes,
    measure_bandwidth_gbs,
    roofline_share,
    weights_bytes_per_token,
)


def test_roofline_hand_computed() -> None:
    # 20 GB/s over 100 MB of weights per token: 200 tokens per second at most.
    assert decode_roofline_tps(20.0, 100e6) == pytest.approx(200.0)
    assert roofline_share(50.0, 20.0, 100e6) == pytest.approx(0.25)


@pytest.mark.parametrize("bad", [(0.0, 1e6), (10.0, 0.0), (-1.0, 1e6)])
def test_roofline_rejects_non_positive(bad: tuple[float, float]) -> None:
    with pytest.raises(ValueError):
        decode_roofline_tps(*bad)


@pytest.mark.parametrize("missing", [(None, 20.0, 1e8), (50.0, None, 1e8), (50.0, 20.0, None)])
def test_roofline_share_missing_inputs(missing: tuple) -> None:
    assert roofline_share(*missing) is None


@given(
    tps=st.floats(1e-3, 1e5),
    gbs=st.floats(1e-2, 1e4),
    bpt=st.floats(1e3, 1e12),
)
def test_share_times_roofline_is_decode_rate(tps: float, gbs: float, bpt: float) -> None:
    share = roofline_share(tps, gbs, bpt)
    assert share is not None
    assert math.isclose(share * decode_roofline_tps(gbs, bpt), tps, rel_tol=1e-9)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("32768K", 32 * 1024**2), ("2M", 2 * 1024**2), ("1G", 1024**3), ("512", 512), ("", None),
     ("abcK", None)],
)  # fmt: skip
def test_parse_cache_size(text: str, expected: int | None) -> None:
    assert _parse_cache_size(text) == expected


def test_llc_from_fake_sysfs(tmp_path: Path) -> None:
    cache = tmp_path / "sys/devices/system/cpu/cpu0/cache"
    for name, size in [("index0", "48K"), ("index2", "1024K"), ("index3", "96M")]:
        (cache / name).mkdir(parents=True)
        (cache / name / "size").write_text(size + "\n")
    assert llc_bytes(tmp_path) == 96 * 1024**2
    # Buffers are a multiple of the LLC so every copy goes to memory.
    assert default_buffer_bytes(tmp_path) == 4 * 96 * 1024**2


def test_no_cache_info_falls_back(tmp_path: Path) -> None:
    assert llc_bytes(tmp_path) is None
    assert default_buffer_bytes(tmp_path) >= 64 * 1024**2


def test_measure_bandwidth_is_plausible() -> None:
    r = measure_bandwidth_gbs(buffer_bytes=16 * 1024**2, tries=3)
    assert r.buffer_bytes == 16 * 1024**2 and r.tries == 3
    # Any machine that runs this copies memory faster than 0.1 GB/s and slower than 10 TB/s.
    assert 0.1 < r.gbs < 10_000


def test_measure_bandwidth_rejects_tiny_buffers() -> None:
    with pytest.raises(ValueError):
        measure_bandwidth_gbs(buffer_bytes=1000)
    with pytest.raises(ValueError):
        measure_bandwidth_gbs(buffer_bytes=16 * 1024**2, tries=0)


def _write_gguf(path: Path, tensors: dict[str, np.ndarray]) -> None:
    from gguf import GGUFWriter

    w = GGUFWriter(str(path), "llama")
    for name, data in tensors.items():
        w.add_tensor(name, data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_bytes_per_token_tied_embeddings_reads_the_whole_table(tmp_path: Path) -> None:
    p = tmp_path / "tied.gguf"
    _write_gguf(
        p,
        {
            "token_embd.weight": np.zeros((100, 8), dtype=np.float32),  # 100 rows of 8
            "blk.0.ffn_up.weight": np.zeros((8, 16), dtype=np.float32),
        },
    )
    assert gguf_bytes_per_token(p) == (100 * 8 + 8 * 16) * 4


def test_bytes_per_token_untied_reads_one_embedding_row(tmp_path: Path) -> None:
    p = tmp_path / "untied.gguf"
    _write_gguf(
        p,
        {
            "token_embd.weight": np.zeros((100, 8), dtype=np.float32),
            "output.weight": np.zeros((100, 8), dtype=np.float32),
        },
    )
    assert gguf_bytes_per_token(p) == (8 + 100 * 8) * 4


@pytest.mark.model
def test_bytes_per_token_demo_model(demo_model: Path) -> None:
    n = gguf_bytes_per_token(demo_model)
    # SmolLM2 ties its embeddings: nearly the whole file is weights read per token.
    assert 0.9 * demo_model.stat().st_size < n <= demo_model.stat().st_size


def test_weights_bytes_per_token_prefers_the_gguf(tmp_path: Path) -> None:
    p = tmp_path / "m.gguf"
    _write_gguf(p, {"token_embd.weight": np.zeros((10, 4), dtype=np.float32)})
    assert weights_bytes_per_token(str(p), 999_999) == 160
    # Gone or not a GGUF: the recorded file size stands in; nothing known: None.
    assert weights_bytes_per_token(str(tmp_path / "gone.gguf"), 1234) == 1234
    assert weights_bytes_per_token(str(tmp_path / "m.onnx"), 5678) == 5678
    assert weights_bytes_per_token(None, None) is None
    garbage = tmp_path / "bad.gguf"
    garbage.write_bytes(b"not a gguf at all")
    assert weights_bytes_per_token(str(garbage), 42) == 42
