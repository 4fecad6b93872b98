"""ONNX Runtime execution providers: names, the default choice, and the provenance of a real
session on this machine (a CPU build: the only provider that runs anything here is CPU)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from edgeprof.backends import BackendOptions, create_backend
from edgeprof.backends.onnxrt import OnnxSettings
from edgeprof.backends.ort_providers import (
    CPU,
    EXPORT_SUPPORT,
    SHORT_NAMES,
    WEIGHTS,
    check_available,
    choose_providers,
    not_started,
    parse_providers,
    requested_notes,
)
from edgeprof.backends.settings import parse_settings, settings_from_strings
from edgeprof.errors import UsageError
from tests.builders import cli, write_prompts
from tests.onnx_builders import export_once

CUDA = "CUDAExecutionProvider"
COREML = "CoreMLExecutionProvider"
TRT = "TensorrtExecutionProvider"


def one_error_line(stderr: str) -> str:
    (line,) = stderr.strip().splitlines()
    assert line.startswith("edgeprof: error: "), line
    return line


# -- names --------------------------------------------------------------------------------


def test_short_names_map_to_onnxruntime_names_in_order() -> None:
    assert parse_providers("cuda,cpu") == (CUDA, CPU)
    assert parse_providers(" CUDA , cpu, cuda ") == (CUDA, CPU)  # case, spaces, duplicates
    assert parse_providers(("coreml", CPU)) == (COREML, CPU)  # ORT names are taken as they are


def test_every_short_name_is_a_provider_onnxruntime_knows_or_knew() -> None:
    import onnxruntime as ort

    known = set(ort.get_all_providers())
    # ROCm's provider left onnxruntime in 1.23; its name is kept for older builds.
    assert set(SHORT_NAMES.values()) - known <= {"ROCMExecutionProvider"}
    assert set(EXPORT_SUPPORT) == set(SHORT_NAMES.values())
    for provider, table in EXPORT_SUPPORT.items():
        assert set(table) == set(WEIGHTS), provider


@pytest.mark.parametrize("value", ["gpu", "cuda,npu", ""])
def test_unknown_or_empty_names_are_one_line_listing_the_known_ones(value: str) -> None:
    with pytest.raises(UsageError) as e:
        parse_providers(value)
    assert "cpu, cuda, tensorrt, coreml, dml, openvino, qnn, xnnpack, rocm, webgpu" in str(e.value)
    assert "\n" not in str(e.value)


def test_settings_take_a_string_or_a_tuple_and_record_onnxruntime_names() -> None:
    from_cli = settings_from_strings(OnnxSettings, ["providers=cuda,cpu"], owner="onnx")
    assert parse_settings(OnnxSettings, from_cli, owner="onnx").providers == (CUDA, CPU)
    given = parse_settings(OnnxSettings, {"providers": ("cpu",)}, owner="onnx")
    assert given.providers == (CPU,)
    assert OnnxSettings().providers is None  # None: the default choice at load
    with pytest.raises(UsageError, match="known: cpu, cuda"):
        OnnxSettings(providers="tpu")


def test_a_provider_this_build_lacks_names_the_package_that_has_it() -> None:
    with pytest.raises(UsageError) as e:
        check_available([CUDA, CPU], ["AzureExecutionProvider", CPU], "1.32.0")
    message = str(e.value)
    assert "no cuda execution provider" in message and "pip install onnxruntime-gpu" in message
    assert "it has AzureExecutionProvider, cpu" in message
    check_available([CPU], [CPU], "1.32.0")  # what the build has passes


# -- the default --------------------------------------------------------------------------


def test_a_cuda_build_runs_the_int4_export_on_cuda_then_cpu() -> None:
    chosen, notes = choose_providers([TRT, CUDA, CPU], "int4", "linux")
    assert chosen == [CUDA, CPU]
    assert any(n.startswith("cuda chosen") and "GroupQueryAttention" in n for n in notes), notes
    # TensorRT's handling of the contrib ops is unverified: never the default, but said
    assert any(n.startswith("tensorrt available but not chosen (unverified") for n in notes)


def test_coreml_on_macos_is_not_chosen_for_an_export_of_contrib_ops() -> None:
    chosen, notes = choose_providers([COREML, "AzureExecutionProvider", CPU], "int4", "darwin")
    assert chosen == [CPU]
    assert any("coreml available but not chosen (few" in n and "--provider coreml" in n
               for n in notes)  # fmt: skip
    assert any(n.startswith("CPU: no available provider") for n in notes), notes


@pytest.mark.parametrize(
    ("platform", "package"), [("linux", "onnxruntime-gpu"), ("win32", "onnxruntime-directml")]
)
def test_a_cpu_only_build_falls_back_to_cpu_with_a_note_naming_a_gpu_build(
    platform: str, package: str
) -> None:
    chosen, notes = choose_providers(["AzureExecutionProvider", CPU], "fp32", platform)
    assert chosen == [CPU]
    (note,) = notes
    assert note.startswith("CPU: this onnxruntime build has no GPU") and package in note


def test_a_graph_edgeprof_did_not_write_stays_on_cpu_by_default() -> None:
    chosen, notes = choose_providers([CUDA, CPU], "unknown", "linux")
    assert chosen == [CPU]
    assert any("cuda available but not chosen (unverified" in n for n in notes), notes


def test_directml_runs_most_of_every_export_by_default_on_windows() -> None:
    for weights in WEIGHTS:
        assert choose_providers(["DmlExecutionProvider", CPU], weights, "win32")[0] == [
            "DmlExecutionProvider",
            CPU,
        ]


# -- a real session on this machine ---------------------------------------------------------


@pytest.fixture(scope="module")
def int4_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_once(tmp_path_factory, "int4")


@pytest.mark.model
def test_provenance_of_a_real_session_places_every_node_on_cpu(int4_onnx: Path) -> None:
    """The count is of the graph as partitioned (after ORT's level-1 rewrites, before the
    provider fusions); the int4 export has none of the former, so it equals the file's."""
    import onnx
    import onnxruntime as ort

    backend = create_backend("onnx", BackendOptions(model=str(int4_onnx), threads=2))
    backend.check()
    try:
        p = backend.load().extra["provenance"]
    finally:
        backend.close()
    nodes = len(onnx.load(str(int4_onnx), load_external_data=False).graph.node)
    assert p["runtime"] == "onnxruntime" and p["onnxruntime"] == ort.__version__
    assert p["device"] == ort.get_device() == "CPU"
    assert CPU in p["providers_available"]
    assert p["providers_requested"] == p["providers_used"] == [CPU]
    assert p["providers_chosen_by"] == "default"
    assert p["node_placement"] == {CPU: nodes} and nodes > 800
    assert any(n.startswith("CPU:") for n in p["notes"]), p["notes"]


@pytest.mark.model
def test_run_with_provider_cpu_records_the_provenance(int4_onnx: Path, tmp_path: Path) -> None:
    suite = write_prompts(tmp_path / "one.jsonl", ["Say hello."])
    db = tmp_path / "p.db"
    done = cli("run", "--backend", "onnx", "--provider", "cpu", "--model", int4_onnx,
               "--prompts", suite, "--max-tokens", "4", "--repetitions", "1", "--warmup", "0",
               "--idle-seconds", "0", "--threads", "2", "--db", db, "--json")  # fmt: skip
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["n_requests"] == 1
    (params,) = sqlite3.connect(db).execute("SELECT params FROM runs").fetchone()
    recorded: dict[str, Any] = json.loads(params)
    assert recorded["settings"]["providers"] == [CPU]
    p = recorded["provenance"]
    assert p["providers_chosen_by"] == "setting" and p["providers_used"] == [CPU]
    assert set(p["node_placement"]) == {CPU} and p["node_placement"][CPU] > 0


@pytest.mark.model
def test_provider_cuda_on_this_build_is_one_line_naming_onnxruntime_gpu(
    int4_onnx: Path, tmp_path: Path
) -> None:
    db = tmp_path / "x.db"
    done = cli("run", "--backend", "onnx", "--provider", "cuda", "--model", int4_onnx,
               "--idle-seconds", "0", "--db", db)  # fmt: skip
    assert done.exit_code == 2, done.output
    line = one_error_line(done.stderr)
    assert "no cuda execution provider" in line and "pip install onnxruntime-gpu" in line
    assert "drop --provider" in line  # the setting's name became the flag
    assert not db.exists()  # refused before anything was written


def test_provider_with_another_backend_is_one_line(tmp_path: Path) -> None:
    done = cli("run", "--backend", "llamacpp", "--provider", "cpu", "--db", tmp_path / "x.db")
    assert done.exit_code == 2, done.output
    assert "--provider is for --backend onnx" in one_error_line(done.stderr)


def test_probe_json_lists_onnxruntime_providers() -> None:
    import onnxruntime as ort

    done = cli("probe", "--json", "--no-bandwidth")
    assert done.exit_code == 0, done.output
    found = json.loads(done.stdout)["onnxruntime"]
    assert found["version"] == ort.__version__ and found["device"] == ort.get_device()
    rows = {r["name"]: r for r in found["providers"]}
    assert rows[CPU] == {"name": CPU, "short": "cpu", "available": True}
    assert rows[CUDA]["available"] is (CUDA in ort.get_available_providers())
    assert {r["short"] for r in found["providers"] if r["short"]} == set(SHORT_NAMES)


def test_asking_for_a_provider_that_runs_part_of_the_export_is_a_note_not_an_error() -> None:
    (note,) = requested_notes([COREML, CPU], "int4")
    assert note.startswith("coreml: few;") and "run on CPU" in note
    assert requested_notes([CPU], "int4") == []


def test_a_requested_provider_missing_from_the_session_is_found() -> None:
    # ONNX Runtime falls back to CPU silently when CUDA's libraries are missing
    assert not_started([CUDA, CPU], [CPU]) == [CUDA]
    assert not_started([CPU], [CPU]) == []
