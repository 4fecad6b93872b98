"""llama.cpp's GPU offload settings, the `edgeprof run` flags that fill them, and the build
provenance every llama.cpp run records (edgeprof/backends/llama_build.py).

This machine's llama-cpp-python is a CPU build, and no test pretends otherwise: the assertions
on the real library hold for whatever build is installed (a GPU build resolves "auto" to
"all"), and GPU builds appear only as captured `llama_print_system_info()` text and hand-made
numbers fed to the pure functions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from edgeprof.backends.llama_build import (
    build_features,
    describe,
    devices_in_use,
    gpu_layers_offloaded,
    parse_system_info,
    resolve_gpu_layers,
    system_backends,
)
from edgeprof.backends.llamacpp import LlamaCppSettings
from edgeprof.backends.settings import parse_settings, settings_from_strings
from edgeprof.errors import UsageError
from edgeprof.measure.runner import RunConfig, profile
from edgeprof.store import Store
from tests.builders import cli, write_prompts

# -- settings ------------------------------------------------------------------------------


def offload_supported() -> bool:
    import llama_cpp

    return bool(llama_cpp.llama_supports_gpu_offload())


@pytest.mark.parametrize(
    ("given", "stored"), [("all", "all"), ("ALL", "all"), (-1, "all"), (0, 0), (7, 7)]
)
def test_gpu_layers_take_a_count_or_all(given: int | str, stored: int | str) -> None:
    settings = parse_settings(LlamaCppSettings, {"n_gpu_layers": given}, owner="llamacpp")
    assert settings.n_gpu_layers == stored


@pytest.mark.parametrize("given", [-2, "abc", "", "7 layers", True])
def test_other_gpu_layers_are_refused_in_one_line(given: Any) -> None:
    with pytest.raises(UsageError) as e:
        parse_settings(LlamaCppSettings, {"n_gpu_layers": given}, owner="the llamacpp backend")
    assert "`n_gpu_layers` must be" in str(e.value) and "\n" not in str(e.value)


def test_command_line_gpu_layers_become_a_count_or_all() -> None:
    got = settings_from_strings(LlamaCppSettings, ["n_gpu_layers=all"], owner="llamacpp")
    assert got == {"n_gpu_layers": "all"}
    got = settings_from_strings(LlamaCppSettings, ["n_gpu_layers=12"], owner="llamacpp")
    assert got == {"n_gpu_layers": 12}


def test_the_default_is_resolved_for_the_installed_build() -> None:
    # This machine's llama-cpp-python is built for the CPU only, so "auto" is 0 here; a build
    # with CUDA, Metal or Vulkan would get "all". Recorded resolved, so runs compare.
    assert LlamaCppSettings().n_gpu_layers == ("all" if offload_supported() else 0)
    assert resolve_gpu_layers("auto", offload_supported=True) == "all"
    assert resolve_gpu_layers("auto", offload_supported=False) == 0
    assert resolve_gpu_layers(5, offload_supported=False) == 5  # asked for: kept as asked


@pytest.mark.parametrize("mode", ["none", "layer", "row"])
def test_split_modes_are_llama_cpps(mode: str) -> None:
    import llama_cpp

    assert LlamaCppSettings(split_mode=mode).split_mode == mode
    assert isinstance(getattr(llama_cpp, f"LLAMA_SPLIT_MODE_{mode.upper()}"), int)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"split_mode": "rows"}, "`split_mode` must be none, layer or row, got 'rows'"),
        ({"split_mode": "LAYER"}, "`split_mode` must be none, layer or row"),
        ({"main_gpu": -1}, "`main_gpu` must be a device index, 0 or more, got -1"),
        ({"n_ubatch": 0}, "`n_ubatch` must be at least 1, got 0"),
        ({"main_gpu": "first"}, "`main_gpu` must be int"),
    ],
)
def test_bad_offload_settings_name_the_setting(given: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_settings(LlamaCppSettings, given, owner="the llamacpp backend")


def test_backends_lists_the_new_settings() -> None:
    result = cli("backends", "--json")
    assert result.exit_code == 0, result.output
    (llama,) = [b for b in json.loads(result.stdout)["backends"] if b["name"] == "llamacpp"]
    settings = {s["name"]: s for s in llama["settings"]}
    assert settings["n_gpu_layers"]["default"] == "auto"
    assert {"n_ubatch", "split_mode", "main_gpu", "flash_attn", "n_batch"} <= set(settings)
    table = cli("backends")
    assert table.exit_code == 0 and "n_gpu_layers=auto" in table.stdout


# -- the command line ------------------------------------------------------------------------


def one_error_line(stderr: str) -> str:
    (line,) = stderr.strip().splitlines()
    assert line.startswith("edgeprof: error: "), line
    return line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--gpu-layers", "4", "--set", "n_gpu_layers=2"],
            "--gpu-layers and --set n_gpu_layers both set n_gpu_layers; give one of them",
        ),
        (
            ["--no-flash-attn", "--set", "flash_attn=true"],
            "--flash-attn and --set flash_attn both set flash_attn",
        ),
        (["--batch", "64", "--set", "n_batch=32"], "--batch and --set n_batch both set n_batch"),
        (
            ["--backend", "onnx", "--gpu-layers", "all"],
            "--gpu-layers only applies to the llamacpp backend, not onnx; drop it",
        ),
        (
            ["--backend", "onnx", "--ubatch", "8", "--split-mode", "row"],
            "--ubatch, --split-mode only apply to the llamacpp backend, not onnx; drop them",
        ),
        (["--gpu-layers", "-2"], '`n_gpu_layers` must be "all" or a number of layers'),
        (["--gpu-layers", "abc"], "got 'abc'"),
        (["--split-mode", "rows"], "llamacpp: --split-mode must be none, layer or row"),
    ],
)
def test_bad_flags_are_one_line_before_anything_is_written(
    tmp_path: Path, args: list[str], message: str
) -> None:
    db = tmp_path / "p.db"
    result = cli("run", *args, "--db", db)
    assert result.exit_code == 2
    assert message in one_error_line(result.stderr)
    assert not db.exists()


# -- system info -----------------------------------------------------------------------------

# llama_print_system_info() as llama.cpp prints it: one "NAME : KEY = VALUE | " group per ggml
# backend, GPU backends first. The first is this machine's (AMD EPYC, AVX-512), captured.
X86_AVX512 = (
    "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | "
    "AVX512 = 1 | AVX512_VBMI = 1 | AVX512_VNNI = 1 | AVX512_BF16 = 1 | LLAMAFILE = 1 | "
    "OPENMP = 1 | REPACK = 1 | "
)
X86_AVX2 = (
    "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | "
    "LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 | "
)
ARM_NEON_PI5 = (
    "CPU : NEON = 1 | ARM_FMA = 1 | FP16_VA = 1 | DOTPROD = 1 | LLAMAFILE = 1 | OPENMP = 1 | "
    "REPACK = 1 | "
)
METAL_M2 = (
    "Metal : EMBED_LIBRARY = 1 | CPU : NEON = 1 | ARM_FMA = 1 | FP16_VA = 1 | DOTPROD = 1 | "
    "LLAMAFILE = 1 | ACCELERATE = 1 | REPACK = 1 | "
)
CUDA_JETSON = (
    "CUDA : ARCHS = 870 | USE_GRAPHS = 1 | PEER_MAX_BATCH_SIZE = 128 | CPU : NEON = 1 | "
    "ARM_FMA = 1 | FP16_VA = 1 | DOTPROD = 1 | LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 | "
)
# Before ggml's backend registry (2024): every CPU flag, on or off, and no backend name.
OLD_FORMAT = (
    "AVX = 1 | AVX_VNNI = 0 | AVX2 = 1 | AVX512 = 0 | FMA = 1 | NEON = 0 | ARM_FMA = 0 | "
    "F16C = 1 | FP16_VA = 0 | BLAS = 0 | SSE3 = 1 | SSSE3 = 1 | LLAMAFILE = 1 | "
)


@pytest.mark.parametrize(
    ("text", "features", "backends"),
    [
        (X86_AVX512, ["AVX", "AVX2", "AVX512", "AVX512_BF16", "AVX512_VBMI", "AVX512_VNNI",
                      "BMI2", "F16C", "FMA", "LLAMAFILE", "OPENMP", "REPACK", "SSE3", "SSSE3"],
         ["CPU"]),
        (X86_AVX2, ["AVX", "AVX2", "BMI2", "F16C", "FMA", "LLAMAFILE", "OPENMP", "REPACK",
                    "SSE3", "SSSE3"], ["CPU"]),
        (ARM_NEON_PI5, ["ARM_FMA", "DOTPROD", "FP16_VA", "LLAMAFILE", "NEON", "OPENMP",
                        "REPACK"], ["CPU"]),
        (METAL_M2, ["ACCELERATE", "ARM_FMA", "DOTPROD", "EMBED_LIBRARY", "FP16_VA", "LLAMAFILE",
                    "NEON", "REPACK"], ["Metal", "CPU"]),
        (CUDA_JETSON, ["ARM_FMA", "DOTPROD", "FP16_VA", "LLAMAFILE", "NEON", "OPENMP", "REPACK",
                       "USE_GRAPHS"], ["CUDA", "CPU"]),
        (OLD_FORMAT, ["AVX", "AVX2", "F16C", "FMA", "LLAMAFILE", "SSE3", "SSSE3"], []),
        ("BLAS : CPU : AVX = 1 | ", ["AVX"], ["BLAS", "CPU"]),  # a backend without features
        ("", [], []),
    ],
    ids=["x86-avx512", "x86-avx2", "arm-neon", "metal", "cuda", "old-format", "bare", "empty"],
)  # fmt: skip
def test_build_features_are_the_switches_that_are_on(
    text: str, features: list[str], backends: list[str]
) -> None:
    assert build_features(text) == features
    assert system_backends(text) == backends


def test_values_that_are_not_switches_are_kept_but_are_not_features() -> None:
    parsed = parse_system_info(CUDA_JETSON)
    assert parsed["CUDA"] == {"ARCHS": "870", "USE_GRAPHS": "1", "PEER_MAX_BATCH_SIZE": "128"}
    assert "ARCHS" not in build_features(CUDA_JETSON)
    assert "AVX512" not in build_features(OLD_FORMAT)  # printed, but "= 0"


# -- offload, hand-made numbers ---------------------------------------------------------------


def test_offloaded_layers_are_capped_at_the_model_and_zero_without_offload() -> None:
    # 30 repeating blocks + the output layer
    assert gpu_layers_offloaded("all", 30, offload_supported=True) == 31
    assert gpu_layers_offloaded(99, 30, offload_supported=True) == 31
    assert gpu_layers_offloaded(12, 30, offload_supported=True) == 12
    assert gpu_layers_offloaded("all", 30, offload_supported=False) == 0
    assert gpu_layers_offloaded(12, 30, offload_supported=False) == 0


def test_gpus_are_in_use_only_when_layers_went_there() -> None:
    devices = [{"name": "CUDA0", "type": "gpu"}, {"name": "CUDA1", "type": "gpu"},
               {"name": "CPU", "type": "cpu"}]  # fmt: skip
    used = lambda *a: [d["used"] for d in devices_in_use(devices, *a)]  # noqa: E731
    assert used(31, "layer", 0) == [True, True, True]
    assert used(31, "none", 1) == [False, True, True]
    assert used(0, "layer", 0) == [False, False, True]


def test_a_missing_library_is_described_not_raised() -> None:
    lines = describe({"available": False, "reason": "llama-cpp-python is not installed"})
    assert lines == ["not available: llama-cpp-python is not installed"]


# -- the real library ------------------------------------------------------------------------


def cpu_flags() -> set[str]:
    """This CPU's instruction-set flags from /proc/cpuinfo (x86 "flags", ARM "Features")."""
    text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def assert_build_knows_this_cpu(provenance: dict[str, Any]) -> None:
    """The instruction set the build reports is the one this CPU has: AVX2 on x86 (what
    llama.cpp's x86 kernels are fastest with), NEON (cpuinfo's "asimd") on 64-bit ARM. The
    library here is compiled on this machine (GGML_NATIVE), so it uses what the CPU has."""
    flags = cpu_flags()
    if "avx2" in flags:
        assert "AVX2" in provenance["build_features"] or "AVX2" in provenance["system_info"]
    elif "asimd" in flags:
        assert "NEON" in provenance["build_features"]
    else:
        pytest.skip(f"this CPU has neither AVX2 nor NEON: {sorted(flags)[:20]}")


def test_probe_json_has_llama_cpp(tmp_path: Path) -> None:
    import llama_cpp

    result = cli("probe", "--json", "--no-bandwidth", "--db", tmp_path / "p.db")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)["llama_cpp"]
    assert info["gpu_offload_supported"] is bool(llama_cpp.llama_supports_gpu_offload())
    assert info["llama_cpp_python"] == llama_cpp.__version__
    assert info["build_features"] == build_features(info["system_info"])
    assert "CPU" in [d["name"] for d in info["devices"]]
    assert_build_knows_this_cpu(info)
    text = cli("probe", "--no-bandwidth", "--db", tmp_path / "p.db")
    assert "GPU offload: " in text.stdout and "build features: " in text.stdout


@pytest.mark.model
def test_a_real_run_records_its_provenance(tmp_path: Path) -> None:
    import llama_cpp

    db = tmp_path / "p.db"
    suite = write_prompts(tmp_path / "one.jsonl", ["Say hello."])
    config = RunConfig(max_tokens=4, repetitions=1, warmup=0, idle_seconds=0, prompts=str(suite),
                       db=db)  # fmt: skip
    run_id = profile(config)
    with Store(db) as store:
        params = store.runs([run_id])[0]["params"]
    p = params["provenance"]
    supported = bool(llama_cpp.llama_supports_gpu_offload())
    assert p["runtime"] == "llama.cpp" and p["llama_cpp_python"] == llama_cpp.__version__
    assert p["gpu_offload_supported"] is supported
    assert p["system_info"] == llama_cpp.llama_print_system_info().decode().strip()
    assert_build_knows_this_cpu(p)
    assert p["n_layer"] == 30  # SmolLM2-135M
    # the default resolved: 0 on this CPU build, so nothing was offloaded
    assert params["settings"]["n_gpu_layers"] == p["gpu_layers_requested"]
    assert p["gpu_layers_offloaded"] == (p["n_layer"] + 1 if supported else 0)
    if not supported:
        assert p["gpu_layers_offloaded"] == 0
        assert [d["used"] for d in p["devices"] if d["type"] == "cpu"] == [True]


@pytest.mark.model
def test_the_flags_fill_the_settings_a_run_records(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    suite = write_prompts(tmp_path / "one.jsonl", ["Say hello."])
    result = cli(
        "run", "--gpu-layers", "3", "--flash-attn", "--batch", "64", "--ubatch", "32",
        "--split-mode", "none", "--main-gpu", "0", "--max-tokens", "2", "--repetitions", "1",
        "--warmup", "0", "--idle-seconds", "0", "--prompts", suite, "--db", db, "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    with Store(db) as store:
        (run,) = store.runs()
    settings, p = run["params"]["settings"], run["params"]["provenance"]
    assert settings == {
        "n_batch": 64, "n_ubatch": 32, "n_gpu_layers": 3, "split_mode": "none",
        "main_gpu": 0, "flash_attn": True, "ignore_eos": False, "chat_template": None,
        "raw": False, "signals": True,
    }  # fmt: skip
    assert run["params"]["n_ubatch"] == 32  # as llama.cpp used it
    assert p["gpu_layers_requested"] == 3
    # asked for 3 layers; a CPU-only build offloads none (a GPU build: all 3)
    assert p["gpu_layers_offloaded"] == (3 if p["gpu_offload_supported"] else 0)
