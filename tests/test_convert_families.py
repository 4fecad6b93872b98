"""`edgeprof convert` on every family it exports, checked against llama.cpp on the same GGUF.

There is no small packaged Qwen or Phi-3 model, so each family is a tiny random-weight GGUF
written here (tests/tiny_models.py: the real tensor names, shapes and metadata keys, a few
layers). llama.cpp decodes greedily from a prompt longer than Gemma 3's sliding window; the
export is fed the same tokens and must pick the same next token with near-identical logits
(fp32), or transcribe the GGUF's Q8_0/Q4_0 blocks and still agree (int8/int4). The real
Gemma 3 270M is in tests/test_gemma.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgeprof.convert import SUPPORTED_ARCHS, convert_gguf, sidecar_paths
from edgeprof.convert.agreement import Agreement, compare, llamacpp_greedy
from edgeprof.convert.blocks import BLOCK, Packed, pack_gguf
from edgeprof.convert.gguf_read import open_gguf, read_hparams
from edgeprof.errors import ModelLoadError
from tests.tiny_models import GEMMA_SWA, write_tiny

STEPS = 16
GGML_TYPE_F32 = 0  # llama.cpp's KV cache in float32: its default f16 would blur the fp32 check
# <s> and 40 random byte tokens: past Gemma's window, so its local layers must mask
PROMPT = [1, *(int(t) for t in np.random.default_rng(1).integers(3, 259, 40))]
assert len(PROMPT) > GEMMA_SWA


def _agreement(src: Path, dst: Path) -> Agreement:
    import llama_cpp

    from edgeprof.backends import BackendOptions, create_backend

    llm = llama_cpp.Llama(model_path=str(src), n_ctx=128, n_threads=2, type_k=GGML_TYPE_F32,
                          type_v=GGML_TYPE_F32, verbose=False)  # fmt: skip
    try:
        cont, ref = llamacpp_greedy(llm, PROMPT, STEPS)
    finally:
        llm.close()
    backend = create_backend("onnx", BackendOptions(model=str(dst), threads=2))
    backend.load()
    try:
        return compare(backend, PROMPT, cont, ref)
    finally:
        backend.close()


@pytest.mark.parametrize("arch", SUPPORTED_ARCHS)
def test_fp32_export_computes_what_llamacpp_computes(tmp_path: Path, arch: str) -> None:
    src = write_tiny(tmp_path / f"{arch}.gguf", arch)
    dst = convert_gguf(src, tmp_path / f"{arch}.onnx").onnx_path
    agreement = _agreement(src, dst)
    assert agreement.steps == STEPS
    # measured: 1e-4 for Gemma (ggml's GELU table), 3e-7..7e-7 for the others
    assert agreement.top1 == 1.0 and agreement.rel_l2_max < 1e-3, agreement


@pytest.mark.parametrize("arch", SUPPORTED_ARCHS)
@pytest.mark.parametrize(("quant", "weights"), [("Q8_0", "int8"), ("Q4_0", "int4")])
def test_quantized_export_runs_the_gguf_blocks(
    tmp_path: Path, arch: str, quant: str, weights: str
) -> None:
    src = write_tiny(tmp_path / f"{arch}-{quant}.gguf", arch, quant=quant)
    dst = convert_gguf(src, tmp_path / f"{arch}-{weights}.onnx", weights=weights).onnx_path
    config = json.loads(sidecar_paths(dst)["config"].read_text())
    # every projection is transcribed; only a tied lm_head (the F32 embedding) is quantized
    projections = [t for t in open_gguf(src).tensors if t.tensor_type.name == quant]
    assert config["quantization"]["gguf_tensors_kept"] == len(projections)
    agreement = _agreement(src, dst)
    # measured 92-100 % top-1 and 1-8 % logit error: llama.cpp and ORT both quantize the
    # activations to 8 bits, each its own way
    assert agreement.top1 >= 0.8 and agreement.rel_l2_max < 0.15, agreement


def _attrs(node: onnx.NodeProto) -> dict[str, object]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def test_each_family_reads_what_llamacpp_reads(tmp_path: Path) -> None:
    files = {a: write_tiny(tmp_path / f"{a}.gguf", a) for a in SUPPORTED_ARCHS}
    hp = {a: read_hparams(open_gguf(path)) for a, path in files.items()}
    assert not hp["llama"].rope_neox and all(hp[a].rope_neox for a in SUPPORTED_ARCHS[1:])
    assert hp["qwen2"].qkv_bias and not hp["qwen3"].qkv_bias
    assert hp["qwen3"].qk_norm and hp["qwen3"].head_dim == 32  # attention.key_length
    assert hp["phi3"].fused_qkv and hp["phi3"].fused_gate_up and hp["phi3"].n_swa == 0
    assert (hp["phi3"].rope_attn_factor, hp["phi3"].n_ctx_orig) == (pytest.approx(1.19), 256)
    gemma = hp["gemma3"]
    assert gemma.swa_layers == (True,) * 5 + (False,) and gemma.n_swa == GEMMA_SWA
    assert gemma.embed_scale == 8.0 and gemma.ffn_act == "gelu_tanh" and gemma.post_norms
    assert gemma.rope_base == 1e6 and gemma.rope_base_swa == 1e4  # llama.cpp's default


def test_gemma_graph_has_local_layers_and_gelu(tmp_path: Path) -> None:
    dst = convert_gguf(write_tiny(tmp_path / "g.gguf", "gemma3"), tmp_path / "g.onnx").onnx_path
    model = onnx.load(str(dst), load_external_data=False)
    gqa = [n for n in model.graph.node if n.op_type == "GroupQueryAttention"]
    windows = [_attrs(n).get("local_window_size") for n in gqa]
    assert windows == [GEMMA_SWA] * 5 + [None]
    assert [n.input[7] for n in gqa] == ["rope_cos_swa"] * 5 + ["rope_cos"]
    assert {_attrs(n)["rotary_interleaved"] for n in gqa} == {0}
    assert sum(n.op_type == "FastGelu" for n in model.graph.node) == 6


def test_phi3_long_context_export_uses_the_short_factors_up_to_its_original_context(
    tmp_path: Path,
) -> None:
    src = write_tiny(tmp_path / "p.gguf", "phi3")
    convert_gguf(src, tmp_path / "p.onnx")
    config = json.loads(sidecar_paths(tmp_path / "p.onnx")["config"].read_text())
    assert config["max_positions"] == 256  # rope.scaling.original_context_length


def test_an_unsupported_architecture_is_refused_naming_the_supported_ones(tmp_path: Path) -> None:
    import gguf

    path = tmp_path / "tiny-mamba.gguf"
    writer = gguf.GGUFWriter(str(path), "mamba")
    writer.add_block_count(1)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ModelLoadError) as info:
        convert_gguf(path, tmp_path / "x.onnx")
    message = str(info.value)
    assert "\n" not in message and "'mamba' is not supported" in message
    assert "supported: llama, qwen2, qwen3, phi3, gemma3" in message


def _unpack(p: Packed) -> np.ndarray:
    """The float weights MatMulNBits computes with from a Packed (default zero points)."""
    if p.bits == 8:
        codes = p.b.astype(np.float32) - 128
    else:
        nibbles = np.stack([p.b & 0xF, p.b >> 4], axis=-1).reshape(p.n, p.k // BLOCK, BLOCK)
        codes = nibbles.astype(np.float32) - 8
    w = codes * p.scales.reshape(p.n, -1, 1)
    if p.mins is not None:
        w = w + p.mins.reshape(p.n, -1, 1)
    return w.reshape(p.n, p.k)


@pytest.mark.parametrize("kind", ["Q4_0", "Q4_1", "Q5_0", "Q8_0", "Q4_K"])
def test_gguf_blocks_are_transcribed_exactly(kind: str) -> None:
    """Gemma 3 270M's Q4_K_M file is Q5_0, Q4_K, Q8_0 and Q6_K: all but Q6_K (16-weight
    sub-blocks) run as the GGUF stores them."""
    import gguf
    from gguf.quants import dequantize

    rng = np.random.default_rng(0)
    qtype = gguf.GGMLQuantizationType[kind]
    n, k = 4, 512
    if kind == "Q4_K":  # gguf-py cannot quantize to it: random blocks with sane f16 scales
        raw = rng.integers(0, 256, size=(n, k // 256 * 144), dtype=np.uint8)
        blocks = raw.reshape(-1, 144)
        for lo in (0, 2):  # d, dmin
            scale = rng.uniform(0.001, 0.01, len(blocks)).astype(np.float16)
            blocks[:, lo : lo + 2] = scale.view(np.uint8).reshape(-1, 2)
    else:
        raw = gguf.quants.quantize(rng.normal(size=(n, k)).astype(np.float32), qtype)
    packed = pack_gguf(kind, raw, n, k)
    assert packed is not None
    np.testing.assert_allclose(_unpack(packed), dequantize(raw, qtype), rtol=0, atol=1e-6)


def test_batched_rows_decode_as_each_alone_through_sliding_windows(tmp_path: Path) -> None:
    """`--concurrency`: GQA's past/present buffer sharing with local windows (onnx_batch.py)."""
    from edgeprof.backends.base import BackendOptions, Request
    from edgeprof.backends.onnxrt import OnnxBackend

    dst = convert_gguf(write_tiny(tmp_path / "g.gguf", "gemma3"), tmp_path / "g.onnx").onnx_path
    texts = ["hello there, how are you?", "a longer prompt " * 4, "short", "x" * 50]
    requests = [Request(f"p{i}", ({"role": "user", "content": t},), 12 + 3 * i)
                for i, t in enumerate(texts)]  # fmt: skip
    backend = OnnxBackend(BackendOptions(model=str(dst), threads=2, ctx=2048))
    backend.load()
    try:
        alone = {}
        for request in requests:
            gen = backend.generate(request)
            while True:
                try:
                    next(gen)
                except StopIteration as stop:
                    alone[request.prompt_id] = stop.value.text
                    break
        batched = {key.prompt_id: r.generation.text for key, r in backend.serve(requests, 2)}
    finally:
        backend.close()
    assert batched == alone and len(set(alone.values())) == 4
