"""What an export keeps beside NAME.onnx so that `--model NAME.onnx` alone is enough.

NAME.onnx             the graph
NAME.onnx.data        its weights (external data)
NAME.vocab.gguf       the source GGUF's metadata and tokenizer, no tensors: llama.cpp loads
                      it with vocab_only=True, so prompts tokenize exactly as under llama.cpp
NAME.edgeprof.json    architecture, dims, weight format, source sha256, chat template, ids
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgeprof.errors import ModelLoadError

CONFIG_FORMAT = 1


def sidecar_paths(onnx_path: Path) -> dict[str, Path]:
    stem = onnx_path.with_suffix("")
    return {
        "data": onnx_path.with_name(onnx_path.name + ".data"),
        "vocab": stem.with_name(stem.name + ".vocab.gguf"),
        "config": stem.with_name(stem.name + ".edgeprof.json"),
    }


def write_vocab_gguf(reader: Any, path: Path) -> None:
    """Copy every metadata key of the source GGUF and no tensor (a few MB for a 49k vocab)."""
    import gguf

    arch = str(reader.fields["general.architecture"].contents())
    writer = gguf.GGUFWriter(str(path), arch)
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), vtype, sub_type=sub)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def write_config(path: Path, config: dict[str, Any]) -> None:
    path.write_text(json.dumps({"edgeprof_format": CONFIG_FORMAT, **config}, indent=2) + "\n")


def read_config(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot read {path} ({e}); re-run `edgeprof convert`") from e
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} is not an edgeprof export config; re-run `edgeprof convert`")
    return data
