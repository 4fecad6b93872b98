"""Helpers shared by the ONNX export and backend tests (a helper module, not a test module).

Exports of the demo model are built once per test session under pytest's base temp folder, so
test_convert.py and test_onnx_backend.py share them whichever runs first.
"""

from __future__ import annotations

import platform
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgeprof.convert import convert_gguf, sidecar_paths
from edgeprof.models.files import demo_model_path


def export_once(factory: pytest.TempPathFactory, weights: str) -> Path:
    """Convert the demo model to `weights` once per test session; later calls reuse it."""
    dst = factory.getbasetemp() / "onnx-exports" / f"smollm2-{weights}.onnx"
    if not sidecar_paths(dst)["config"].is_file():  # the config is written last
        convert_gguf(demo_model_path(), dst, weights=weights)
    return dst


def negate_initializer(onnx_path: Path, name: str) -> None:
    """Flip the sign of one external-data float32 initializer in place.

    Negating the final RMSNorm weight negates every logit, so argmax becomes argmin: an export
    that loads and runs, at full speed, and computes nonsense, which is what a broken kernel or
    quantizer produces too.
    """
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    tensor = next(t for t in model.graph.initializer if t.name == name)
    assert tensor.data_type == onnx.TensorProto.FLOAT, tensor.data_type
    where = {e.key: e.value for e in tensor.external_data}
    data = onnx_path.parent / where["location"]
    offset, length = int(where.get("offset", 0)), int(where["length"])
    with data.open("r+b") as f:
        f.seek(offset)
        values = np.frombuffer(f.read(length), dtype="<f4")
        f.seek(offset)
        f.write((-values).astype("<f4").tobytes())


def corrupt_copy(export: Path, folder: Path, tensor: str = "final_norm.weight") -> Path:
    """A copy of `export` and its sidecars in `folder` with `tensor` negated."""
    folder.mkdir(parents=True, exist_ok=True)
    # same file names: the graph names its data file, the config names its vocab
    for path in (export, *sidecar_paths(export).values()):
        shutil.copyfile(path, folder / path.name)
    copy = folder / export.name
    negate_initializer(copy, tensor)
    return copy


def cpu_isa() -> str:
    """The instruction-set family ONNX Runtime's MLAS (and llama.cpp) choose kernels by.

    One of x86-avx512-vnni, x86-avx512, x86-avx2, x86, arm64, or the machine name. Tests whose
    outcome depends on it put it in their failure messages.
    """
    machine = platform.machine().lower()
    if machine in ("arm64", "aarch64"):
        return "arm64"
    if machine not in ("x86_64", "amd64"):
        return machine
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:  # macOS, Windows: no cpuinfo to read
        return "x86"
    flags = next(
        (line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")),
        [],
    )
    if "avx512f" in flags:
        return "x86-avx512-vnni" if "avx512_vnni" in flags else "x86-avx512"
    return "x86-avx2" if "avx2" in flags else "x86"
