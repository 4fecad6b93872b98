"""The fast GGUF header reader agrees with the gguf package's reader, field by field."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeprof.models.gguf_header import read_gguf_header


def _reference(path: Path) -> tuple[dict[str, object], dict[str, tuple[tuple[int, ...], int]]]:
    """Scalars, strings and array lengths, and each tensor's shape and bytes, per gguf."""
    from gguf import GGUFReader, GGUFValueType

    reader = GGUFReader(str(path))
    fields: dict[str, object] = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        if field.types[0] == GGUFValueType.ARRAY:
            fields[key] = len(field.data)
        else:
            fields[key] = field.contents()
    tensors = {t.name: (tuple(int(d) for d in t.shape), int(t.n_bytes)) for t in reader.tensors}
    return fields, tensors


def test_every_value_type_and_quantized_tensors(tmp_path: Path) -> None:
    import gguf

    path = tmp_path / "m.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_uint8("t.u8", 7)
    w.add_int16("t.i16", -3)
    w.add_uint32("t.u32", 4_000_000_000)
    w.add_int64("t.i64", -(2**40))
    w.add_float32("t.f32", 0.5)
    w.add_float64("t.f64", 1e-300)
    w.add_bool("t.bool", True)
    w.add_string("t.str", "héllo")
    w.add_array("t.strings", ["a", "bb", "", "ccc" * 100])
    w.add_array("t.floats", [1.0, 2.0, 3.0])
    w.add_tensor("f32", np.zeros((3, 64), dtype=np.float32))
    q8 = np.zeros((4, 34 * 2), dtype=np.uint8)  # two Q8_0 blocks (34 bytes) per row
    w.add_tensor("q8", q8, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    header = read_gguf_header(path)
    fields, tensors = _reference(path)
    for key, value in fields.items():
        got = header.metadata[key]
        assert got == pytest.approx(value) if isinstance(value, float) else got == value, key
    assert {t.name: (t.shape, t.n_bytes) for t in header.tensors} == tensors
    assert header.metadata["t.strings"] == 4 and header.metadata["t.str"] == "héllo"


def test_not_a_gguf_is_a_value_error(tmp_path: Path) -> None:
    path = tmp_path / "x.gguf"
    path.write_bytes(b"GGML" + bytes(64))
    with pytest.raises(ValueError, match="not a GGUF"):
        read_gguf_header(path)


@pytest.mark.model
def test_the_demo_model_as_gguf_reads_it(demo_model: Path) -> None:
    header = read_gguf_header(demo_model)
    fields, tensors = _reference(demo_model)
    assert {t.name: (t.shape, t.n_bytes) for t in header.tensors} == tensors
    for key in ("general.architecture", "general.file_type", "llama.context_length"):
        assert header.metadata[key] == fields[key]
    assert header.metadata["tokenizer.ggml.tokens"] == fields["tokenizer.ggml.tokens"]
