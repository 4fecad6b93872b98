"""`comparability_notes`: what makes runs shown side by side less comparable (threads, build
features, GPU offload, ONNX Runtime providers), on hand-made summaries; and the notes that
`report` and `compare` print."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from edgeprof.analysis.comparability import comparability_notes
from edgeprof.analysis.summary import RunSummary, summarize_run
from edgeprof.store import Store
from tests.builders import add_run, cli, device_row

ENV = {"python": "3.11.7", "llama_cpp": "0.3.36"}
CPU_EP, CUDA_EP = "CPUExecutionProvider", "CUDAExecutionProvider"


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> RunSummary:
    with Store(tmp_path_factory.mktemp("c") / "p.db") as store:
        return summarize_run(store, add_run(store, device_row("box")))


def llama(n: int, base: RunSummary, threads: int = 4, **provenance: Any) -> RunSummary:
    """Run "run0000N" of llama.cpp on `base`'s device: AVX2 build, CPU only, unless told."""
    prov = {"runtime": "llama.cpp", "build_features": ["AVX", "AVX2", "FMA"], "n_layer": 30,
            "gpu_layers_offloaded": 0, "environment": ENV, **provenance}  # fmt: skip
    return replace(base, run_id=f"run{n:05d}", threads=threads, provenance=prov)


def onnx(n: int, base: RunSummary, providers: list[str], threads: int = 4) -> RunSummary:
    prov = {"runtime": "onnxruntime", "providers_used": providers, "environment": ENV}
    return replace(base, run_id=f"run{n:05d}", backend="onnx", threads=threads, provenance=prov)


def test_alike_runs_have_no_notes(base: RunSummary) -> None:
    assert comparability_notes([llama(1, base), llama(2, base)]) == []
    assert comparability_notes([llama(1, base)]) == []
    assert comparability_notes([]) == []


def test_threads(base: RunSummary) -> None:
    notes = comparability_notes([llama(1, base, threads=2), llama(2, base, threads=4)])
    assert notes == ["runs run00001, run00002 differ in threads (2 vs 4)"]


def test_build_features_say_which_run_has_what(base: RunSummary) -> None:
    avx512 = llama(1, base, build_features=["AVX", "AVX2", "AVX512", "AVX512_VNNI", "FMA"])
    cuda = llama(3, base, build_features=["AVX", "AVX2", "CUDA", "FMA"])
    assert comparability_notes([avx512, llama(2, base)]) == [
        "runs run00001, run00002 differ in llama.cpp build features "
        "(AVX512 AVX512_VNNI only in run00001)"
    ]
    assert comparability_notes([avx512, llama(2, base), cuda]) == [
        "runs run00001, run00002, run00003 differ in llama.cpp build features "
        "(AVX512 AVX512_VNNI only in run00001; CUDA only in run00003)"
    ]


def test_gpu_offload(base: RunSummary) -> None:
    runs = [llama(1, base, gpu_layers_offloaded=31), llama(2, base),
            llama(3, base, gpu_layers_offloaded=12)]  # fmt: skip
    assert comparability_notes(runs) == [
        "runs run00001, run00002, run00003 differ in GPU offload "
        "(all 31 layers vs 0 vs 12 of 31 layers)"
    ]


def test_onnx_providers(base: RunSummary) -> None:
    # ONNX Runtime appends the CPU provider behind CUDA as its fallback: not a difference
    notes = comparability_notes([onnx(1, base, [CUDA_EP, CPU_EP]), onnx(2, base, [CPU_EP])])
    assert notes == [
        "runs run00001, run00002 differ in ONNX Runtime providers "
        "(CUDAExecutionProvider vs CPUExecutionProvider)"
    ]


def test_across_backends_on_one_device(base: RunSummary) -> None:
    gpu_llama = llama(1, base, gpu_layers_offloaded=31)
    cpu_onnx = onnx(2, base, [CPU_EP], threads=2)
    assert comparability_notes([gpu_llama, cpu_onnx]) == [
        "runs run00001, run00002 differ in threads (4 vs 2)",
        "runs run00001, run00002 differ in accelerator (GPU (all 31 layers) vs CPU only)",
    ]
    # both on the CPU: nothing to say
    assert comparability_notes([llama(1, base), onnx(2, base, [CPU_EP])]) == []


def test_different_devices_and_remote_runs_are_not_compared(base: RunSummary) -> None:
    other_device = replace(llama(2, base, threads=8), device_id="elsewhere")
    remote = replace(base, run_id="run00003", backend="openai", target_kind="remote",
                     threads=None, provenance={})  # fmt: skip
    assert comparability_notes([llama(1, base), other_device, remote]) == []


def test_runs_without_provenance_compare_on_threads_and_are_noted_once(base: RunSummary) -> None:
    old1 = replace(base, run_id="run00001", threads=2, provenance={"environment": ENV})
    old2 = replace(base, run_id="run00002", threads=4, provenance={})
    assert comparability_notes([old1, old2, llama(3, base)]) == [
        "runs run00001, run00002, run00003 differ in threads (2 vs 4 vs 4)",
        "runs run00001, run00002: no build provenance recorded; compared on threads only",
    ]


def test_ids_as_the_caller_shows_them(base: RunSummary) -> None:
    runs = [replace(llama(1, base, threads=2), run_id="01JABCDEFGH1"),
            replace(llama(2, base), run_id="01JXYZXYZXY2")]  # fmt: skip
    assert comparability_notes(runs, id_of=lambda r: r[:6] + "…") == [
        "runs 01JABC…, 01JXYZ… differ in threads (2 vs 4)"
    ]


# -- the commands ------------------------------------------------------------------------


def _two_thread_counts(db: Path) -> tuple[str, str]:
    with Store(db) as store:
        dev = device_row("box")
        a = add_run(store, dev, params={"threads": 2, "max_tokens": 16})
        b = add_run(store, dev, params={"threads": 4, "max_tokens": 16})
    return a, b


def test_report_warns_when_runs_differ_in_threads(tmp_path: Path) -> None:
    a, b = _two_thread_counts(tmp_path / "p.db")
    res = cli("report", tmp_path / "p.db")
    assert res.exit_code == 0, res.stderr
    assert f"note: runs {a[-8:]}, {b[-8:]} differ in threads (2 vs 4)" in res.stderr
    assert "no build provenance recorded" in res.stderr
    assert "differ in" not in res.stdout  # notes go to stderr; the table stays clean
    assert "differ in" not in cli("report", tmp_path / "p.db", "--run", a).stderr


def test_compare_warns_too(tmp_path: Path) -> None:
    a, b = _two_thread_counts(tmp_path / "p.db")
    res = cli(
        "compare", tmp_path / "p.db", "--requests-per-day", "1000", "--device-price", "600",
        "--lifetime-years", "3", "--electricity", "0.30", "--price-in", "5", "--price-out", "15",
    )  # fmt: skip
    assert res.exit_code == 0, res.stderr
    assert f"note: runs {a[:8]}, {b[:8]} differ in threads (2 vs 4)" in res.stderr


def test_runs_on_another_power_setup_are_flagged_and_the_setup_is_shown(base: RunSummary) -> None:
    from edgeprof.cli.render import run_notes

    ac = replace(llama(1, base), power_setup={"cpu_governor": "performance", "power_source": "ac"})
    battery = replace(
        llama(2, base),
        power_setup={"cpu_governor": "powersave", "power_source": "battery"},
        notes={"cooling": "passive"},
        page_cache_fraction=0.02,
    )
    assert comparability_notes([ac, battery]) == [
        "runs run00001, run00002 differ in power setup (cpu_governor performance, power_source"
        " ac vs cpu_governor powersave, power_source battery)"
    ]
    assert comparability_notes([ac, replace(battery, run_id="run00003", **_same(ac))]) == []
    (note,) = [n for n in run_notes([battery]) if "setup:" in n]
    assert note == (
        "run run00002: setup: cpu governor powersave; power source battery; cooling=passive; "
        "model file 2% cached before the load (a cold start, from storage)"
    )


def _same(s: RunSummary) -> dict[str, Any]:
    return {"power_setup": s.power_setup, "notes": {}, "page_cache_fraction": None}


def test_one_model_in_two_prompt_formats(base: RunSummary) -> None:
    raw = replace(llama(1, base), prompt_format="raw (--raw: the messages' text is the prompt)")
    gemma = replace(llama(2, base), prompt_format="builtin:gemma (chosen from architecture gemma3)")
    assert comparability_notes([raw, gemma]) == [
        "runs run00001, run00002 differ in prompt format (raw vs builtin:gemma)"
    ]
    # another model's format is no difference: each model has its own
    other = replace(gemma, target="other.gguf")
    assert comparability_notes([raw, other]) == []
