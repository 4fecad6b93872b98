"""`edgeprof quantize`: the F32 reference of the Q4_1 demo model, llama.cpp's quantization of
it, the manifest, refusals and the command line. The demo is quantized once per module."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeprof.errors import ModelLoadError, UsageError
from edgeprof.models.files import demo_model_path
from edgeprof.models.gguf_header import read_gguf_header
from edgeprof.quality.quantize import (
    MANIFEST_NAME,
    PARTIAL_SUFFIX,
    QUANT_TYPES,
    QuantizeResult,
    default_out_dir,
    quantize_model,
)
from tests.builders import cli

pytestmark = pytest.mark.model

TYPES = ("Q8_0", "Q4_0", "Q2_K")  # the quick ones
PROMPT = "The capital of France is"
N_TOKENS = 8


@dataclass(frozen=True)
class Quantized:
    result: QuantizeResult
    stages: list[tuple[str, int, int]]


@pytest.fixture(scope="module")
def quantized(tmp_path_factory: pytest.TempPathFactory) -> Quantized:
    stages: list[tuple[str, int, int]] = []
    result = quantize_model(
        demo_model_path(),
        [t.lower() for t in TYPES],  # names are case-insensitive
        tmp_path_factory.mktemp("quantized"),
        threads=2,
        progress=lambda *a: stages.append(a),
    )
    return Quantized(result, stages)


@pytest.fixture(scope="module")
def readers(quantized: Quantized) -> tuple[Any, Any]:
    import gguf

    return gguf.GGUFReader(demo_model_path()), gguf.GGUFReader(quantized.result.reference.path)


@pytest.fixture(scope="module")
def greedy(quantized: Quantized) -> dict[str, list[int]]:
    """Greedy tokens after PROMPT, per type and for the reference ("F32")."""
    files = {f.type: f.path for f in quantized.result.files}
    files["F32"] = quantized.result.reference.path
    return {name: _greedy(path) for name, path in files.items()}


def _greedy(path: Path) -> list[int]:
    from llama_cpp import Llama

    from edgeprof.convert.agreement import llamacpp_greedy

    llm = Llama(model_path=str(path), n_ctx=64, n_threads=2, verbose=False)
    try:
        tokens, _ = llamacpp_greedy(llm, llm.tokenize(PROMPT.encode()), N_TOKENS)
    finally:
        llm.close()
    return tokens


def _fields(reader: Any) -> dict[str, Any]:
    return {f.name: f.contents() for f in reader.fields.values() if not f.name.startswith("GGUF.")}


# -- the reference -----------------------------------------------------------------------------


def test_reference_keeps_tensors_and_metadata(readers: tuple[Any, Any]) -> None:
    src, ref = readers
    assert [(t.name, list(t.shape)) for t in ref.tensors] == [
        (t.name, list(t.shape)) for t in src.tensors
    ]
    assert {t.tensor_type.name for t in ref.tensors} == {"F32"}
    src_fields, ref_fields = _fields(src), _fields(ref)
    assert list(ref_fields) == list(src_fields)  # every field, in order
    assert (src_fields.pop("general.file_type"), ref_fields.pop("general.file_type")) == (3, 0)
    assert ref_fields == src_fields


def test_reference_values_are_the_dequantized_source(readers: tuple[Any, Any]) -> None:
    from gguf.quants import dequantize

    src, ref = readers
    by_name = {t.name: t for t in ref.tensors}
    # a Q4_1 matrix, the Q8_0 embeddings, an F32 norm
    for name in ("blk.0.attn_q.weight", "token_embd.weight", "blk.0.attn_norm.weight"):
        s = next(t for t in src.tensors if t.name == name)
        expected = dequantize(s.data, s.tensor_type).reshape(-1)
        assert np.array_equal(np.asarray(by_name[name].data).reshape(-1), expected), name


def test_result_names_the_reference_and_the_steps(quantized: Quantized) -> None:
    result = quantized.result
    assert result.source_type == "Q4_1" and result.n_params == 134_515_008
    assert result.reference.note == "reference: dequantized from Q4_1"
    assert result.reference.path.name == "SmolLM2-135M-Instruct.F32.gguf"
    assert [f.path.name for f in result.files] == [f"SmolLM2-135M-Instruct.{t}.gguf" for t in TYPES]
    assert quantized.stages[0] == ("dequantize", 1, 272)
    assert quantized.stages[-1] == ("quantize:Q2_K", 3, 3)
    assert [s for s in quantized.stages if s[0].startswith("quantize")][:3] == [
        (f"quantize:{t}", i, 3) for i, t in enumerate(TYPES)
    ]
    assert not list(result.manifest_path.parent.glob(f"*{PARTIAL_SUFFIX}"))


# -- the quantized files -------------------------------------------------------------------


def test_headers_name_each_type(quantized: Quantized) -> None:
    from gguf import LlamaFileType

    for f in quantized.result.files:
        file_type = read_gguf_header(f.path).metadata["general.file_type"]
        assert file_type == LlamaFileType[f"MOSTLY_{f.type}"], f.type
    assert read_gguf_header(quantized.result.reference.path).metadata["general.file_type"] == 0


def test_sizes_fall_with_bits(quantized: Quantized) -> None:
    size = {f.type: f.size_bytes for f in quantized.result.files}
    assert size["Q2_K"] < size["Q4_0"] < size["Q8_0"] < quantized.result.reference.size_bytes
    q8 = next(f for f in quantized.result.files if f.type == "Q8_0")
    assert 8.0 < q8.bits_per_weight < 9.0
    # n_embd 576 is no multiple of 256: most Q2_K matrices fall back to Q4_0
    q2 = next(f for f in quantized.result.files if f.type == "Q2_K")
    assert q2.tensor_types["Q4_0"] > 0 and q2.tensor_types["F32"] == 61


def test_every_file_loads_and_decodes(greedy: dict[str, list[int]]) -> None:
    assert set(greedy) == {*TYPES, "F32"}
    assert all(tokens for tokens in greedy.values()), greedy


def test_q8_0_decodes_as_the_reference(greedy: dict[str, list[int]]) -> None:
    assert len(greedy["F32"]) == N_TOKENS  # no end of turn this early: all 8 compared
    same = sum(a == b for a, b in zip(greedy["Q8_0"], greedy["F32"], strict=False))
    assert same >= N_TOKENS - 2, greedy


def test_manifest_hashes_every_file(quantized: Quantized) -> None:
    manifest = json.loads(quantized.result.manifest_path.read_text())
    assert manifest == quantized.result.manifest
    src = demo_model_path()
    assert manifest["source"]["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert manifest["reference"]["note"] == "reference: dequantized from Q4_1"
    entries = [manifest["reference"], *manifest["types"]]
    assert [e.get("type") for e in manifest["types"]] == list(TYPES)
    for entry in entries:
        data = Path(entry["path"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["size_bytes"] == len(data)


# -- refusals ----------------------------------------------------------------------------------


def test_existing_outputs_are_refused_before_any_work(quantized: Quantized) -> None:
    out_dir = quantized.result.manifest_path.parent
    before = {p.name: p.stat().st_mtime_ns for p in out_dir.iterdir()}
    with pytest.raises(UsageError, match=r"F32\.gguf exists \(and 1 more\); pass `force`"):
        quantize_model(demo_model_path(), ["Q4_0", "Q6_K"], out_dir)
    assert {p.name: p.stat().st_mtime_ns for p in out_dir.iterdir()} == before


def test_cli_refuses_then_overwrites_with_force(quantized: Quantized, tmp_path: Path) -> None:
    """An F32 source is its own reference; a stale file is replaced only with --force."""
    source = quantized.result.reference.path
    stale = tmp_path / "SmolLM2-135M-Instruct.Q4_0.gguf"
    stale.write_bytes(b"GGUF stale")
    args: list[str | Path] = ["quantize", source, "--types", "Q4_0", "-o", tmp_path]
    refused = cli(*args)
    assert refused.exit_code == 2
    assert refused.stderr.splitlines() == [
        f"edgeprof: error: {stale} exists; pass --force to overwrite it"
    ]
    assert stale.read_bytes() == b"GGUF stale"

    done = cli(*args, "--force", "--json")
    assert done.exit_code == 0, done.stderr
    manifest = json.loads(done.stdout)
    assert manifest["reference"]["note"] == "reference: the source, F32"
    assert manifest["reference"]["path"] == str(source.resolve())
    assert read_gguf_header(stale).metadata["general.file_type"] == 2  # Q4_0
    assert manifest["types"][0]["sha256"] == hashlib.sha256(stale.read_bytes()).hexdigest()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([MANIFEST_NAME, stale.name])


def test_cli_table_lists_every_file_with_its_hash(quantized: Quantized, tmp_path: Path) -> None:
    """A second run into the same folder keeps the first run's types in the manifest."""
    source = quantized.result.reference.path
    first = cli("quantize", source, "--types", "Q4_0", "-o", tmp_path, "--threads", "2")
    assert first.exit_code == 0, first.stderr
    second = cli("quantize", source, "--types", "Q8_0", "-o", tmp_path, "--threads", "2")
    assert second.exit_code == 0, second.stderr
    q8 = tmp_path / "SmolLM2-135M-Instruct.Q8_0.gguf"
    assert "reference: the source, F32" in second.stdout
    assert f"{hashlib.sha256(q8.read_bytes()).hexdigest()}  {q8}" in second.stdout
    assert "Q8_0" in second.stdout and "bits/weight" in second.stdout
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert [e["type"] for e in manifest["types"]] == ["Q4_0", "Q8_0"]


def test_unknown_type_is_one_line_naming_the_valid_ones(tmp_path: Path) -> None:
    result = cli("quantize", "demo", "--types", "Q4_0,Q9_X", "-o", tmp_path)
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("edgeprof: error: --types: unknown type Q9_X; choose from F16,")
    assert ",".join(QUANT_TYPES) in line
    assert not list(tmp_path.iterdir())


def test_missing_and_non_gguf_sources_are_refused(tmp_path: Path) -> None:
    missing = cli("quantize", tmp_path / "nope.gguf", "-o", tmp_path)
    assert missing.exit_code == 2
    assert missing.stderr.startswith("edgeprof: error: model file")
    text = tmp_path / "notes.gguf"
    text.write_text("not a model")
    with pytest.raises(ModelLoadError, match="is not a GGUF file"):
        quantize_model(text, ["Q4_0"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_failed_quantization_leaves_no_finished_looking_file(
    quantized: Quantized, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import edgeprof.quality.quantize as quantize

    def killed(src: Path, dst: Path, type_name: str, threads: int | None) -> None:
        dst.write_bytes(b"GGUF half a file")
        raise ModelLoadError("llama.cpp stopped")

    monkeypatch.setattr(quantize, "_llama_quantize", killed)
    with pytest.raises(ModelLoadError, match="stopped"):
        quantize_model(quantized.result.reference.path, ["Q4_0"], tmp_path)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("name", "folder"),
    [
        ("SmolLM2-135M-Instruct.Q4_1.gguf", "SmolLM2-135M-Instruct"),
        ("Llama-3.2-1B-Instruct-Q4_K_M.gguf", "Llama-3.2-1B-Instruct"),
        ("phi-2.f16.gguf", "phi-2"),
        ("qwen2-0.5b_iq4_xs.gguf", "qwen2-0.5b"),
        ("Qwen2-0.5B.gguf", "Qwen2-0.5B"),
    ],
)
def test_default_folder_drops_the_quantization(name: str, folder: str) -> None:
    assert default_out_dir(Path(name)) == Path("models") / folder


def test_every_type_is_a_llama_ftype() -> None:
    import llama_cpp

    assert all(hasattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{t}") for t in QUANT_TYPES)
