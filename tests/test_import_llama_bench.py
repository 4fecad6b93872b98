"""`edgeprof import`: real llama-bench output (tests/data) into the profile database.

The fixtures are llama-bench's own output for the demo model on this machine (AMD EPYC with
AVX-512, 2 threads), made with the binary scripts/bench_fidelity.py builds, from the model's
directory:
    llama-bench -m SmolLM2-135M-Instruct.Q4_1.gguf -t 2 -p 64 -n 16 -r 3 -o json
    llama-bench -m SmolLM2-135M-Instruct.Q4_1.gguf -t 2 -p 32 -n 8 -pg 32,8 -d 0,16 -r 2 -o jsonl
Every expected figure is computed here from the file itself, so no assertion depends on the
speed of the machine or its instruction set.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from edgeprof.analysis.summary import summarize
from edgeprof.errors import UsageError
from edgeprof.models.files import sha256_file
from edgeprof.store import open_store
from edgeprof.store.llama_bench import (
    BACKEND,
    bench_name,
    import_llama_bench,
    parse_llama_bench,
    quant_from_model_type,
)
from tests.builders import cli

DATA = Path(__file__).parent / "data"
FIXTURES = [DATA / "llama-bench.json", DATA / "llama-bench.jsonl"]


def entries(path: Path) -> list[dict[str, Any]]:
    text = path.read_text()
    if path.suffix == ".json":
        return list(json.loads(text))
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def summaries_by_test(db: Path) -> dict[str, Any]:
    with open_store(db) as store:
        return {str(s.label): s for s in summarize(store)}


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.suffix)
def test_each_test_is_a_run_whose_figures_are_llama_bench_s(fixture: Path, tmp_path: Path) -> None:
    """pp tests give prefill tok/s, tg tests decode tok/s, each repetition one request: the
    summary's mean and sd are llama-bench's avg_ts and stddev_ts; pp+tg tests have neither
    figure (their speed counts both kinds of token). No TTFT, no energy, anywhere."""
    db = tmp_path / "p.db"
    result = import_llama_bench(fixture, db)
    found = entries(fixture)
    assert len(result.added) == len(found)
    runs = summaries_by_test(db)
    assert len(runs) == len(found)
    for e in found:
        s = runs[bench_name(e)]
        assert (s.backend, s.status, s.threads) == (BACKEND, "complete", e["n_threads"])
        assert s.n_requests == len(e["samples_ns"]) and s.n_warmup == 0
        pp, tg = e["n_prompt"] and not e["n_gen"], e["n_gen"] and not e["n_prompt"]
        mean, sd = (s.prefill_tps_mean, s.prefill_tps_sd)
        if not pp:
            mean, sd = (s.decode_tps_mean, s.decode_tps_sd)
        if pp or tg:
            assert mean == pytest.approx(e["avg_ts"], rel=1e-6)
            assert sd == pytest.approx(e["stddev_ts"], rel=1e-5)
        else:
            assert s.prefill_tps_mean is None and s.decode_tps_mean is None
            assert s.extra["imported"]["avg_ts"] == e["avg_ts"]
        assert s.prefill_tps_mean is None or pp
        assert s.decode_tps_mean is None or tg
        assert s.e2e_p50_s is not None
        assert s.ttft_p50_s is None and s.energy_j is None and s.j_per_output_token is None
        assert s.mean_input_tokens == e["n_prompt"] and s.mean_output_tokens == e["n_gen"]
        assert s.quant == quant_from_model_type(e["model_type"]) == "Q4_1"
        assert s.extra["imported"]["tool"] == "llama-bench"
        assert "no TTFT, no inter-token latency, no energy" in s.extra["imported"]["definitions"]


def test_importing_again_adds_nothing(tmp_path: Path) -> None:
    """Ids come from the results' content: the same file twice, or the same results as JSONL
    after JSON, leave the database as the first import did."""
    db = tmp_path / "p.db"
    first = import_llama_bench(FIXTURES[0], db)
    again = import_llama_bench(FIXTURES[0], db)
    as_jsonl = tmp_path / "same.jsonl"
    as_jsonl.write_text("".join(json.dumps(e) + "\n" for e in entries(FIXTURES[0])))
    converted = import_llama_bench(as_jsonl, db)
    assert (again.added, converted.added) == ([], [])
    assert again.present == converted.present == first.added
    with open_store(db) as store:
        assert store.count("runs") == len(first.added)
        assert store.count("requests") == sum(len(e["samples_ns"]) for e in entries(FIXTURES[0]))


def test_concurrent_imports_write_each_run_once(tmp_path: Path) -> None:
    """Four importers of one file into one database at once: one transaction each, with the
    write lock taken before looking for what is there, so every run lands exactly once."""
    db = tmp_path / "p.db"
    with open_store(db):
        pass  # created and migrated first: the race under test is the import's, not the schema's
    errors: list[BaseException] = []

    def work() -> None:
        try:
            import_llama_bench(FIXTURES[1], db)
        except BaseException as e:  # reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with open_store(db) as store:
        assert store.count("runs") == len(entries(FIXTURES[1]))
        assert store.count("requests") == sum(len(e["samples_ns"]) for e in entries(FIXTURES[1]))


def test_model_hash_from_model_option_or_unknown(tmp_path: Path, demo_model: Path) -> None:
    """Without the model file the hash is recorded as unknown; `--model` (matched by the bytes
    of its tensors, llama-bench's model_size) fills it in, also on runs imported earlier."""
    db = tmp_path / "p.db"
    import_llama_bench(FIXTURES[0], db)
    with open_store(db) as store:
        runs = store.runs()
        assert {r["model_sha256"] for r in runs} == {None}
        assert all("unknown" in r["params"]["imported"]["model_sha256"] for r in runs)
    again = import_llama_bench(FIXTURES[0], db, models=[demo_model])
    assert len(again.written.hashed) == len(runs)
    expected = sha256_file(demo_model)
    with open_store(db) as store:
        runs = store.runs()
        assert {r["model_sha256"] for r in runs} == {expected}
        assert {r["params"]["imported"]["model_sha256"] for r in runs} == {expected}
        assert {r["model_size_bytes"] for r in runs} == {demo_model.stat().st_size}


def test_model_named_in_the_file_is_found_where_it_ran(
    tmp_path: Path, demo_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """llama-bench records the path it was given (here relative: it ran in the model's
    folder); imported from there, that file is hashed without `--model`."""
    monkeypatch.chdir(demo_model.parent)
    result = import_llama_bench(FIXTURES[0], tmp_path / "p.db")
    assert {t["model_sha256"] for t in result.to_dict()["tests"]} == {sha256_file(demo_model)}


def test_model_that_llama_bench_did_not_run_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.gguf"
    other.write_bytes(b"GGUF" + (3).to_bytes(4, "little") + bytes(16))
    result = cli("import", FIXTURES[0], "--db", tmp_path / "p.db", "--model", other)
    assert result.exit_code == 2
    assert "not a model these results measured" in result.stderr
    assert not (tmp_path / "p.db").exists()


def test_device_from_the_file_or_this_machine(tmp_path: Path) -> None:
    """By default the results get a device of their own from llama-bench's cpu_info (it names
    no host); `--device-label` names it; `--here` records them on this machine's device."""
    from edgeprof.measure.device import fingerprint

    cpu = entries(FIXTURES[0])[0]["cpu_info"]
    db = tmp_path / "p.db"
    default = import_llama_bench(FIXTURES[0], db)
    labelled = import_llama_bench(FIXTURES[1], tmp_path / "l.db", device_label="bench box")
    here = import_llama_bench(FIXTURES[1], tmp_path / "h.db", here=True)
    with open_store(db) as store:
        device = store.device(default.device_id)
    assert device is not None
    assert (device["cpu_model"], device["label"], device["hostname"]) == (
        cpu, f"llama-bench: {cpu}", None
    )  # fmt: skip
    assert labelled.device_label == "bench box" and labelled.device_id != default.device_id
    assert here.device_id == fingerprint()["id"]
    assert here.notes == []  # the fixture's cpu_info is this machine's
    with pytest.raises(UsageError, match="`here`"):
        import_llama_bench(FIXTURES[0], db, here=True, device_label="x")


def test_here_with_another_machine_s_cpu_is_noted(tmp_path: Path) -> None:
    elsewhere = tmp_path / "mac.jsonl"
    elsewhere.write_text(
        "".join(json.dumps({**e, "cpu_info": "Apple M2 Max"}) + "\n" for e in entries(FIXTURES[0]))
    )
    result = import_llama_bench(elsewhere, tmp_path / "p.db", here=True)
    assert len(result.notes) == 1 and "'Apple M2 Max' is not this machine's CPU" in result.notes[0]


def test_report_json_shows_the_imported_runs(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    imported = cli("import", FIXTURES[0], "--db", db, "--json")
    assert imported.exit_code == 0, imported.stderr
    payload = json.loads(imported.stdout)
    assert payload["runs_added"] == len(entries(FIXTURES[0]))
    report = cli("report", db, "--json")
    assert report.exit_code == 0, report.stderr
    runs = json.loads(report.stdout)
    assert {r["run_id"] for r in runs} == {t["run_id"] for t in payload["tests"]}
    for r in runs:
        assert r["backend"] == "llama-bench" and r["imported"]["tool"] == "llama-bench"
        assert r["ttft_p50_s"] is None and r["energy_j"] is None
    table = cli("report", db)
    assert table.exit_code == 0, table.stderr
    assert "imported from llama-bench (pp64" in table.stderr


def _markdown() -> str:
    return "| model | size | params | backend | threads | test | t/s |\n| --- | --- |\n"


BAD_FILES = {
    "empty": "",
    "markdown": _markdown(),
    "csv": 'build_commit,build_number\n"abc",1\n',
    "object without tests": '{"hello": 1}\n',
    "array of numbers": "[1, 2]",
    "stopped mid-run": '[\n  {\n    "build_commit": "abc",\n',
    "no samples": json.dumps(
        [{k: v for k, v in entries(FIXTURES[0])[0].items() if k != "samples_ns"}]
    ),
    "bad sample": json.dumps([{**entries(FIXTURES[0])[0], "samples_ns": [0]}]),
    "bad time": json.dumps([{**entries(FIXTURES[0])[0], "test_time": "yesterday"}]),
}


@pytest.mark.parametrize("content", BAD_FILES.values(), ids=BAD_FILES.keys())
def test_a_file_that_is_not_llama_bench_json_is_one_line(tmp_path: Path, content: str) -> None:
    bad = tmp_path / "bench.json"
    bad.write_text(content)
    result = cli("import", bad, "--db", tmp_path / "p.db")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"edgeprof: error: {bad}")
    assert "is not llama-bench JSON" in lines[0]
    assert lines[0].endswith("(run llama-bench with -o json or -o jsonl)")
    assert not (tmp_path / "p.db").exists()  # refused before the database is touched


def test_a_missing_file_names_the_fix(tmp_path: Path) -> None:
    result = cli("import", tmp_path / "nope.json", "--db", tmp_path / "p.db")
    assert result.exit_code == 2
    assert "nope.json not found" in result.stderr


def test_results_from_two_machines_are_refused_as_one_device() -> None:
    two = [entries(FIXTURES[0])[0], {**entries(FIXTURES[0])[1], "cpu_info": "Other CPU"}]
    tests, _ = parse_llama_bench(json.dumps(two))
    from edgeprof.store.llama_bench import device_from_bench

    with pytest.raises(UsageError, match="2 machines"):
        device_from_bench(tests)


@pytest.mark.parametrize(
    ("model_type", "quant"),
    [("llama 256M Q4_1", "Q4_1"), ("llama 7B Q4_K - Medium", "Q4_K_M"),
     ("llama 7B Q2_K - Medium", "Q2_K"), ("qwen2 1.5B IQ2_XXS - 2.0625 bpw", "IQ2_XXS"),
     ("llama 8B BF16", "BF16"), ("llama ?B", None)],
)  # fmt: skip
def test_quant_names_match_edgeprof_s(model_type: str, quant: str | None) -> None:
    assert quant_from_model_type(model_type) == quant
