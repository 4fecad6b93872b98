"""Pooled results (`edgeprof.analysis.pooled`, `report --by device`, the HTML report's by-device
section): comparability keys, one row per device per comparable group, what differs between
groups of one model, and energy figures on different bases. Databases are built per device
with tests/builders.py and merged as a team would merge them."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from statistics import median
from typing import Any

import pytest

from edgeprof.analysis.pooled import (
    ESTIMATED,
    NOT_RANKED,
    RunFacts,
    comparability_key,
    energy_basis,
    pool,
    pooled_report,
)
from edgeprof.analysis.summary import summarize_run
from edgeprof.store import Store
from edgeprof.store.share import merge
from tests.builders import add_run, cli, device_row, measured_on

SUITE = "5e" * 32
PARAMS = {"threads": 4, "max_tokens": 16, "suite_sha256": SUITE}
LAPTOP, PI = device_row("laptop-7", label="laptop"), device_row("pi5-kitchen", label="pi5")


@pytest.fixture()
def pooled_db(tmp_path: Path) -> dict[str, Any]:
    """laptop: two comparable runs (estimated energy); pi5: one comparable run measured at the
    board, and one with 2 threads (not comparable); merged into pooled.db."""
    with Store(tmp_path / "laptop.db") as s:
        laptop = [add_run(s, LAPTOP, decode_tps=d, params=PARAMS) for d in (40.0, 44.0)]
    with Store(tmp_path / "pi5.db") as s:
        pi = add_run(s, PI, decode_tps=9.0, power_w=6.0, params=PARAMS)
        measured_on(s, pi, "rpi:board", "board")
        pi_2t = add_run(s, PI, decode_tps=7.0, power_w=5.0, params={**PARAMS, "threads": 2})
    merge([tmp_path / "laptop.db", tmp_path / "pi5.db"], tmp_path / "pooled.db")
    return {"db": tmp_path / "pooled.db", "laptop": laptop, "pi": pi, "pi_2t": pi_2t}


def test_report_by_device_sets_comparable_rows_side_by_side(pooled_db: dict[str, Any]) -> None:
    res = cli("report", pooled_db["db"], "--by", "device", "--json")
    assert res.exit_code == 0, res.stderr
    report = json.loads(res.stdout)
    comparable, alone = report["groups"]
    assert [r["device_label"] for r in comparable["rows"]] == ["laptop", "pi5"]  # fastest first
    laptop, pi = comparable["rows"]
    assert laptop["n_runs"] == 2 and sorted(laptop["run_ids"]) == sorted(pooled_db["laptop"])
    # builders' requests 1, 2 decode at decode_tps + seq: each run's mean is decode_tps + 1.5
    assert laptop["decode_tps"] == pytest.approx(median([41.5, 45.5]))
    assert pi["decode_tps"] == pytest.approx(10.5) and pi["n_runs"] == 1
    assert (laptop["energy_basis"], pi["energy_basis"]) == (ESTIMATED, "whole board")
    assert comparable["key"]["threads"] == 4 and alone["key"]["threads"] == 2
    assert [r["run_ids"] for r in alone["rows"]] == [[pooled_db["pi_2t"]]]
    (basis_note,) = comparable["notes"]
    assert "laptop: estimated; pi5: whole board" in basis_note and NOT_RANKED in basis_note
    (differ,) = report["notes"]
    assert f"groups {comparable['key_id']} (laptop, pi5), {alone['key_id']} (pi5)" in differ
    assert "not comparable: they differ in threads (4 vs 2)" in differ


def test_report_by_device_table_and_notes(pooled_db: dict[str, Any]) -> None:
    res = cli("report", pooled_db["db"], "--by", "device")
    assert res.exit_code == 0, res.stderr
    tables = res.stdout.split("group ")[1:]
    assert len(tables) == 2
    assert "laptop" in tables[0] and "pi5" in tables[0] and "whole board" in tables[0]
    assert tables[0].index("laptop") < tables[0].index("pi5")
    assert "(est.)" in tables[0]  # the laptop's J/output token is marked estimated
    assert "pi5" in tables[1] and "laptop" not in tables[1]
    assert NOT_RANKED in res.stderr and "differ in threads (4 vs 2)" in res.stderr


def test_html_report_has_a_by_device_section_only_for_several_devices(
    pooled_db: dict[str, Any], tmp_path: Path
) -> None:
    page = tmp_path / "r.html"
    assert cli("report", pooled_db["db"], "--html", page).exit_code == 0
    text = page.read_text(encoding="utf-8")
    assert "<h2>By device</h2>" in text and text.count('class="cards by-device"') == 2
    assert NOT_RANKED in text and "differ in threads (4 vs 2)" in text
    assert cli("report", tmp_path / "laptop.db", "--html", page).exit_code == 0
    assert "By device" not in page.read_text(encoding="utf-8")


def test_unknown_by_is_a_one_line_error(pooled_db: dict[str, Any]) -> None:
    res = cli("report", pooled_db["db"], "--by", "model")
    assert res.exit_code == 2 and "--by" in res.stderr and "device" in res.stderr


# -- the key ---------------------------------------------------------------------------------


@pytest.fixture()
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "p.db")


def _facts(store: Store, run_id: str) -> RunFacts:
    (run,) = store.runs([run_id])
    s = summarize_run(store, run_id)
    prompts = [r["prompt_id"] for r in store.requests(run_id) if not r["warmup"]]
    basis = energy_basis(store.sensors(run_id), s.energy_method)
    return RunFacts(s, comparability_key(run, s, prompts), basis)


def test_key_is_the_run_key_without_the_device(store: Store) -> None:
    a, b = add_run(store, LAPTOP, params=PARAMS), add_run(store, PI, params=PARAMS)
    ka, kb = _facts(store, a).key, _facts(store, b).key
    assert ka == kb and ka.key_id == kb.key_id and len(ka.key_id) == 8
    assert ka.run.device_id == "" and ka.fields()["suite_sha256"] == SUITE
    for change in ({"max_tokens": 32}, {"concurrency": 2}, {"settings": {"n_ctx": 4096}},
                   {"suite_sha256": "7a" * 32}):  # fmt: skip
        other = _facts(store, add_run(store, PI, params={**PARAMS, **change})).key
        assert other != ka and other.key_id != ka.key_id, change


def test_runs_without_a_suite_hash_are_keyed_on_their_prompts(store: Store) -> None:
    old = {"threads": 4, "max_tokens": 16}
    a, b = (_facts(store, add_run(store, d, params=old)).key for d in (LAPTOP, PI))
    assert a == b and a.run.suite_sha256.startswith("prompts:")
    store.db.execute("UPDATE requests SET prompt_id = 'other' WHERE run_id = ?",
                     [c := add_run(store, PI, params=old)])  # fmt: skip
    store.db.conn.commit()
    assert _facts(store, c).key != a


def test_offload_and_build_are_part_of_the_key(store: Store) -> None:
    base = _facts(store, add_run(store, LAPTOP, params=PARAMS))
    prov = {"runtime": "llama.cpp", "backends": ["CPU"], "n_layer": 30, "gpu_layers_offloaded": 0}
    cpu = replace(base.summary, provenance=prov)
    gpu = replace(base.summary, provenance={**prov, "backends": ["CUDA", "CPU"],
                                            "gpu_layers_offloaded": 31})  # fmt: skip
    (run,) = store.runs([base.summary.run_id])
    k_cpu, k_gpu = comparability_key(run, cpu), comparability_key(run, gpu)
    assert (k_cpu.accelerator, k_cpu.build) == ("CPU only", "CPU")
    assert (k_gpu.accelerator, k_gpu.build) == ("GPU (all 31 layers)", "CUDA+CPU")
    report = pool([replace(base, summary=cpu, key=k_cpu),
                   replace(base, summary=replace(gpu, device_id="other"), key=k_gpu)])  # fmt: skip
    (note,) = report.notes
    assert "accelerator (CPU only vs GPU (all 31 layers)); build (CPU vs CUDA+CPU)" in note


# -- energy basis ------------------------------------------------------------------------------


def _sensor(sensor: str, domain: str, method: str = "measured") -> dict[str, Any]:
    return {"sensor": sensor, "metric": "power_w", "domain": domain, "method": method}


@pytest.mark.parametrize(
    ("sensors", "basis"),
    [
        ([_sensor("hwmon:board", "board"), _sensor("rapl:package-0", "package")], "whole board"),
        ([_sensor("rapl:package-0", "package"), _sensor("rapl:dram", "dram")], "package+DRAM"),
        ([_sensor("rapl:package-0", "package"), _sensor("nvml:0", "gpu")], "package only + GPU"),
        ([_sensor("nvml:0", "gpu")], "GPU only"),
        ([_sensor("rapl:psys", "psys"), _sensor("nvml:0", "gpu")], "SoC + GPU"),
        ([_sensor("jetson:VDD_IN", "rail")], "rails"),
    ],
)
def test_energy_basis_follows_the_domains_energy_used(
    sensors: list[dict[str, Any]], basis: str
) -> None:
    rss = {"sensor": "process", "metric": "rss_bytes", "domain": "process", "method": "measured"}
    assert energy_basis([*sensors, rss], "measured") == basis


def test_estimated_or_no_energy() -> None:
    board = [_sensor("hwmon:board", "board")]
    assert energy_basis(board, "estimated") == ESTIMATED
    assert energy_basis(board, "estimated+measured") == ESTIMATED
    assert energy_basis(board, None) is None


def test_same_basis_gets_no_note_and_remote_or_unfinished_runs_are_left_out(
    store: Store,
) -> None:
    a, b = add_run(store, LAPTOP, params=PARAMS), add_run(store, PI, params=PARAMS)
    aborted = add_run(store, PI, params=PARAMS, status="aborted")
    cloud = add_run(store, PI, backend="openai", params=PARAMS)
    store.db.execute("UPDATE runs SET target_kind = 'remote' WHERE id = ?", [cloud])
    store.db.conn.commit()
    report = pooled_report(store)
    (group,) = report.groups
    assert group.notes == () and {r.run_ids for r in group.rows} == {(a,), (b,)}
    assert report.notes == (
        f"run {cloud[-8:]} left out: remote targets (by device compares local runs)",
        f"run {aborted[-8:]} left out: not complete (aborted)",
    )
