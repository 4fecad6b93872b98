"""scripts/check_gpu.sh, its random-weight model and its table, on a machine with no GPU and no
package registry: the script must stop cleanly and say why, before it installs or builds
anything; the GGUF writer must reproduce the demo model's layout exactly."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "check_gpu.sh"
SYSTEM_PATH = "/usr/bin:/bin"


def _script_module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


make_random_gguf = _script_module("make_random_gguf")
gpu_check_table = _script_module("gpu_check_table")


def _run_check(
    tmp_path: Path, *args: str, path: str, python: str | None = None
) -> tuple[subprocess.CompletedProcess[str], float]:
    """The script with no index, a proxy that refuses every connection, and a short timeout:
    anything that reached for the network would fail or hang, not pass."""
    env = {
        "PATH": path,
        "HOME": str(tmp_path),
        "PIP_NO_INDEX": "1",
        "http_proxy": "http://127.0.0.1:9",
        "https_proxy": "http://127.0.0.1:9",
        "PYTHON": python or sys.executable,
    }
    start = time.monotonic()
    result = subprocess.run(
        ["bash", str(SCRIPT), "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out"),
         *args],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    return result, time.monotonic() - start


def _fake_smi(tmp_path: Path, body: str) -> str:
    """A directory with an `nvidia-smi` that runs `body`, first on a PATH of system tools."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    smi = bin_dir / "nvidia-smi"
    smi.write_text(f"#!/bin/sh\n{body}\n")
    smi.chmod(0o755)
    return f"{bin_dir}:{SYSTEM_PATH}"


H200 = 'echo "NVIDIA H200, 9.0, 580.65.06, 143771 MiB"'


@pytest.fixture
def wheelhouse(tmp_path: Path) -> Path:
    """Empty files named like the wheels of every requirement, and an sdist whose pyproject
    lists llama-cpp-python's requirements: enough for the script's check of names."""
    import tomllib

    wh = tmp_path / "wheelhouse"
    wh.mkdir()
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {_dist_name(d) for d in deps} - {"llama-cpp-python"}
    for name in names | {"diskcache", "typing-extensions", "jinja2"}:
        (wh / f"{name.replace('-', '_')}-1.0-py3-none-any.whl").write_bytes(b"")
    pyproject = (
        b'[project]\nname = "llama_cpp_python"\ndependencies = ["typing-extensions>=4.5.0", '
        b'"numpy>=1.20.0", "diskcache>=5.6.1", "jinja2>=2.11.3"]\n'
    )
    with tarfile.open(wh / "llama_cpp_python-0.3.36.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("llama_cpp_python-0.3.36/pyproject.toml")
        info.size = len(pyproject)
        tar.addfile(info, io.BytesIO(pyproject))
    return wh


def _dist_name(requirement: str) -> str:
    for sep in "<>=!~;[ ":
        requirement = requirement.split(sep)[0]
    return requirement.lower()


@pytest.fixture
def bare_python(tmp_path: Path) -> str:
    """A Python with nothing installed: every requirement must come from the wheelhouse."""
    venv = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    return str(venv / "bin" / "python")


def test_no_nvidia_smi_stops_cleanly_before_anything(tmp_path: Path, wheelhouse: Path) -> None:
    if shutil.which("nvidia-smi", path=SYSTEM_PATH):
        pytest.skip("this machine has nvidia-smi on its system PATH")
    result, elapsed = _run_check(tmp_path, "--wheelhouse", str(wheelhouse), path=SYSTEM_PATH)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "no GPU: nvidia-smi is not on PATH" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "work").exists() and not (tmp_path / "out").exists()
    assert elapsed < 10


def test_failing_nvidia_smi_is_no_gpu_with_its_words(tmp_path: Path, wheelhouse: Path) -> None:
    words = "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."
    path = _fake_smi(tmp_path, f'echo "{words}"; exit 9')
    result, elapsed = _run_check(tmp_path, "--wheelhouse", str(wheelhouse), path=path)
    assert result.returncode == 3, result.stdout + result.stderr
    assert f"no GPU: nvidia-smi failed: {words}" in result.stderr
    assert not (tmp_path / "work").exists()
    assert elapsed < 10


def test_a_gpu_without_compute_capability_is_refused(tmp_path: Path, wheelhouse: Path) -> None:
    path = _fake_smi(tmp_path, 'echo "NVIDIA H200, [N/A], 580.65.06, 143771 MiB"')
    result, _ = _run_check(tmp_path, "--wheelhouse", str(wheelhouse), path=path)
    assert result.returncode == 3
    assert "no compute capability" in result.stderr


def test_wheelhouse_lacking_a_wheel_names_it_before_pip(
    tmp_path: Path, wheelhouse: Path, bare_python: str
) -> None:
    (wheelhouse / "sqlite_utils-1.0-py3-none-any.whl").unlink()
    (wheelhouse / "diskcache-1.0-py3-none-any.whl").unlink()
    path = _fake_smi(tmp_path, H200)
    result, elapsed = _run_check(
        tmp_path, "--wheelhouse", str(wheelhouse), path=path, python=bare_python
    )
    out = result.stdout + result.stderr
    assert result.returncode == 2, out
    assert "GPU: NVIDIA H200 (sm_90)" in out  # 9.0 read as CMake's 90
    lacking = out.split(" lacks ")[1].split(" (")[0]
    # diskcache is llama-cpp-python's requirement: read from the sdist's own pyproject
    assert lacking == "sqlite-utils, diskcache" or lacking == "diskcache, sqlite-utils"
    assert not (tmp_path / "work" / "venv").exists()  # stopped before making anything
    assert elapsed < 20


@pytest.mark.slow
def test_a_wheel_too_old_passes_the_name_check_and_pip_names_it(
    tmp_path: Path, wheelhouse: Path, bare_python: str
) -> None:
    """Every name is in the wheelhouse (the check above passes), but as version 1.0: pip, with
    no index to ask, stops at the first requirement 1.0 does not meet, and the script names
    it with its version."""
    path = _fake_smi(tmp_path, H200)
    result, _ = _run_check(tmp_path, "--wheelhouse", str(wheelhouse), path=path, python=bare_python)
    out = result.stdout + result.stderr
    assert result.returncode == 2, out
    assert "20 requirements: 0 installed" in out or "requirements: 0 installed" in out
    lacking = out.rsplit("lacks: ", 1)[1].strip()
    assert re.fullmatch(r"[a-z0-9-]+>=[0-9.]+", lacking), lacking
    assert "No matching distribution found for " + lacking in out


def test_missing_sdist_is_named(tmp_path: Path, wheelhouse: Path) -> None:
    (wheelhouse / "llama_cpp_python-0.3.36.tar.gz").unlink()
    path = _fake_smi(tmp_path, H200)
    result, _ = _run_check(tmp_path, "--wheelhouse", str(wheelhouse), path=path)
    out = result.stdout + result.stderr  # after the log starts, both go to it and to stdout
    assert result.returncode == 2
    assert "lacks llama-cpp-python's sdist" in out
    assert "pip download --no-binary :all: --no-deps llama-cpp-python==" in out


def test_no_wheelhouse_and_no_llama_is_a_usage_error(tmp_path: Path) -> None:
    path = _fake_smi(tmp_path, H200)
    result, _ = _run_check(tmp_path, path=path)
    assert result.returncode == 2
    assert "give --wheelhouse DIR" in result.stderr


# -- the random-weight GGUF ------------------------------------------------------------------

TINY_LAYOUT: dict[str, Any] = {
    "kv": [
        {"key": "general.architecture", "types": ["STRING"], "value": "llama"},
        {"key": "llama.block_count", "types": ["UINT32"], "value": 1},
        {"key": "llama.rope.freq_base", "types": ["FLOAT32"], "value": 100000.0},
        {"key": "tokenizer.ggml.tokens", "types": ["ARRAY", "STRING"], "value": ["<s>", "a", "b"]},
        {"key": "tokenizer.ggml.token_type", "types": ["ARRAY", "INT32"], "value": [3, 1, 1]},
    ],
    "tensors": [
        {"name": "token_embd.weight", "shape": [64, 3], "type": "Q8_0"},
        {"name": "blk.0.attn_q.weight", "shape": [64, 4], "type": "Q4_1"},
        {"name": "blk.0.attn_norm.weight", "shape": [64], "type": "F32"},
    ],
}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_random_gguf_round_trips_its_layout_and_is_reproducible(tmp_path: Path) -> None:
    from gguf import GGUFReader

    a = make_random_gguf.write_random_gguf(tmp_path / "a.gguf", TINY_LAYOUT, seed=0)
    b = make_random_gguf.write_random_gguf(tmp_path / "b.gguf", TINY_LAYOUT, seed=0)
    c = make_random_gguf.write_random_gguf(tmp_path / "c.gguf", TINY_LAYOUT, seed=1)
    assert make_random_gguf.describe(a) == TINY_LAYOUT
    assert _sha(a) == _sha(b) != _sha(c)

    tensors = {t.name: t for t in GGUFReader(a).tensors}
    q41 = np.frombuffer(tensors["blk.0.attn_q.weight"].data.tobytes(), dtype=np.dtype(
        make_random_gguf.BLOCKS["Q4_1"]))  # fmt: skip
    d, m = q41["d"].astype(np.float32), q41["m"].astype(np.float32)
    assert np.isfinite(d).all() and (d > 0).all() and np.allclose(m, -8 * d, rtol=1e-2)
    q8 = np.frombuffer(tensors["token_embd.weight"].data.tobytes(), dtype=np.dtype(
        make_random_gguf.BLOCKS["Q8_0"])).reshape(3, 2)  # fmt: skip
    assert (q8[0]["d"] == 0).all() and (q8[0]["qs"] == 0).all()  # the control token: silent
    assert (q8[1:]["d"] > 0).all()
    norm = np.asarray(tensors["blk.0.attn_norm.weight"].data)
    assert ((norm >= 0.5) & (norm <= 1.5)).all()


def test_random_gguf_refuses_a_quant_type_it_cannot_fill(tmp_path: Path) -> None:
    layout = {**TINY_LAYOUT, "tensors": [{"name": "x.weight", "shape": [256], "type": "Q4_K"}]}
    with pytest.raises(SystemExit, match="no random blocks for Q4_K"):
        make_random_gguf.write_random_gguf(tmp_path / "x.gguf", layout)


@pytest.mark.model
def test_random_gguf_has_the_demo_models_layout_and_llama_cpp_runs_it(
    tmp_path: Path, demo_model: Path
) -> None:
    demo = make_random_gguf.describe(demo_model)
    # the committed description is the demo model's, to the last key and tensor
    assert make_random_gguf.load_layout() == demo
    path = make_random_gguf.write_random_gguf(tmp_path / "r.gguf", make_random_gguf.load_layout())
    assert make_random_gguf.describe(path) == demo
    assert path.stat().st_size == demo_model.stat().st_size
    assert _sha(path) != _sha(demo_model)

    from llama_cpp import Llama

    llm = Llama(str(path), n_ctx=256, n_threads=1, verbose=False)
    prompt = llm.tokenize(b"Hello there", add_bos=False)
    control = {
        i
        for item in demo["kv"]
        if item["key"] == "tokenizer.ggml.token_type"
        for i, t in enumerate(item["value"])
        if t == make_random_gguf.TOKEN_TYPE_CONTROL
    }
    generated = []
    for token in llm.generate(prompt, temp=0.0):
        generated.append(token)
        if len(generated) == 24:
            break
    assert len(generated) == 24
    assert not control & set(generated)  # greedy decoding never reaches an end token


# -- the table --------------------------------------------------------------------------------


def _bench(pp: float, tg: float) -> list[dict[str, Any]]:
    return [
        {"n_prompt": 512, "n_gen": 0, "avg_ts": pp, "stddev_ts": 10.0},
        {"n_prompt": 0, "n_gen": 128, "avg_ts": tg, "stddev_ts": 2.0},
    ]


def _run(label: str, decode: float, status: str = "complete", **extra: Any) -> dict[str, Any]:
    return {
        "label": label, "backend": "llamacpp", "status": status, "started_at": "2026-12-04",
        "decode_tps_mean": decode, "decode_tps_sd": 1.0, "prefill_tps_mean": 900.0,
        "prefill_tps_sd": 5.0, "j_per_output_token": 0.0123, "energy_method": "measured",
        "energy_sensors": ["nvml:gpu0"], "peak_gpu_mem_bytes": 300 * 2**20,
        "gpu_mem_note": "device used-memory delta", "peak_rss_bytes": 512 * 2**20, **extra,
    }  # fmt: skip


def _cell(rows: list[Any], figure: str, target: str) -> str:
    return next(r.values[target] for r in rows if r.figure == figure)


def test_table_fidelity_and_speedup_are_the_ratios() -> None:
    report = [
        _run("llama-gpu", 800.0, started_at="2026-12-03"),  # an older run, same label
        _run("llama-gpu", 900.0),
        _run("llama-cpu", 150.0),
        {"label": "llama-gpu", "backend": "llama-bench", "decode_tps_mean": 1.0},
    ]
    benches = {
        "gpu": gpu_check_table.bench_speeds(_bench(40000.0, 1000.0)),
        "cpu": gpu_check_table.bench_speeds(_bench(2000.0, 160.0)),
    }
    rows = gpu_check_table.table_rows(report, benches, ["gpu", "cpu"])
    assert _cell(rows, "decode tok/s, edgeprof", "gpu") == "900.0 ± 1.0"
    assert _cell(rows, "decode tok/s, llama-bench tg128", "gpu") == "1,000.0 ± 2.0"
    assert _cell(rows, "fidelity: edgeprof / llama-bench decode", "gpu") == "0.900"
    assert _cell(rows, "fidelity: edgeprof / llama-bench decode", "cpu") == "0.938"
    assert _cell(rows, "prefill tok/s, llama-bench pp512", "cpu") == "2,000.0 ± 10.0"
    assert _cell(rows, "GPU / CPU decode, edgeprof", "gpu") == "6.00"
    assert _cell(rows, "energy J/output token (method: sensors)", "gpu") == (
        "0.0123 (measured: nvml:gpu0)"
    )
    assert _cell(rows, "peak GPU memory (how)", "gpu") == "300 MiB (device used-memory delta)"
    text = gpu_check_table.render(rows, ["gpu", "cpu"])
    assert text.splitlines()[0].split() == ["gpu", "cpu"]


def test_table_shows_a_crash_and_what_was_not_measured() -> None:
    report = [_run("llama-gpu", 0.0, status="failed", error="llama.cpp crashed (SIGSEGV)")]
    report[0]["decode_tps_mean"] = None
    empty = gpu_check_table.bench_speeds([])
    rows = gpu_check_table.table_rows(report, {"gpu": empty}, ["gpu", "cpu"])
    assert _cell(rows, "edgeprof run", "gpu") == "failed: llama.cpp crashed (SIGSEGV)"
    assert _cell(rows, "edgeprof run", "cpu") == "no run recorded"
    assert _cell(rows, "fidelity: edgeprof / llama-bench decode", "gpu") == "-"
    assert _cell(rows, "decode tok/s, llama-bench tg128", "cpu") == "-"
    assert _cell(rows, "GPU / CPU decode, edgeprof", "gpu") == "-"


def test_probe_lines_name_nvml_and_the_gpu_memory_method() -> None:
    probe = {
        "power_sources": [
            {"source": "nvml", "sensor": "nvml:gpu0", "available": True,
             "detail": "NVIDIA H200: total-energy counter"},
            {"source": "rapl", "available": False, "reason": "no powercap"},
        ],
        "llama_cpp": {"llama_cpp_python": "0.3.36", "backends": ["CUDA", "CPU"],
                      "gpu_offload_supported": True,
                      "devices": [{"name": "CUDA0", "description": "NVIDIA H200",
                                   "memory_total_bytes": 150 * 2**30}]},
        "gpu_memory": {"gpu_mem_method": "device used-memory delta"},
    }  # fmt: skip
    lines = gpu_check_table.probe_lines(probe)
    assert lines[0] == "power: nvml:gpu0: NVIDIA H200: total-energy counter"
    assert "GPU offload True" in lines[1]
    assert "device CUDA0: NVIDIA H200 (153,600 MiB)" in lines[2]
    assert lines[-1] == "GPU memory: gpu_mem_method = device used-memory delta"
    assert not any("rapl" in line for line in lines)


def test_check_gpu_script_is_valid_bash() -> None:
    result = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert os.access(SCRIPT, os.X_OK)


def test_help_and_an_unknown_option(tmp_path: Path) -> None:
    result, _ = _run_check(tmp_path, "--help", path=SYSTEM_PATH)
    assert result.returncode == 0
    assert "--wheelhouse DIR" in result.stdout and "Exit status: 0" in result.stdout
    result, _ = _run_check(tmp_path, "--wheelhous", "x", path=SYSTEM_PATH)
    assert result.returncode == 2
    assert "unknown option --wheelhous" in result.stderr
