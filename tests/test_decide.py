"""`edgeprof decide`: inputs with their provenance, and the whole command on the demo model.

The end-to-end tests profile llama.cpp and ONNX Runtime (the int4 export is converted once and
cached next to the demo model, as for users) with a few tokens per request, so that the
figures are real and the suite stays quick.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from edgeprof.decision.orchestrate import DEFAULT_CLOUDS, DecideConfig, cost_inputs
from edgeprof.decision.presets import get_preset
from edgeprof.errors import UsageError
from tests.builders import cli, interruptible
from tests.test_decision_page import raw_values

PROVENANCES = {"measured", "estimated", "assumed"}
# Short profiles: 12 prompts × 1 repetition × 8 tokens on each device target.
QUICK = ("--max-tokens", "8", "--repetitions", "1", "--warmup", "0", "--idle-seconds", "0.5")
# The first four prompts of the bundled suite, for the tests of one aspect each.
FOUR = ("--prompts", str(Path(__file__).parent / "data" / "four_prompts.jsonl"))


# -- inputs (no model) ---------------------------------------------------------------------


def _by_name(figures: list[Any]) -> dict[str, Any]:
    return {f.name: f for f in figures}


def test_a_preset_fills_price_and_lifetime_and_says_so() -> None:
    preset = get_preset("rpi5-8gb")
    costs, figures = cost_inputs(DecideConfig(requests_per_day=2000, device="rpi5-8gb"), preset)
    fig = _by_name(figures)
    assert costs.device_price_usd == preset.price_usd.value
    assert fig["device_price_usd"].source.startswith("preset rpi5-8gb: ")
    assert preset.price_usd.as_of in fig["device_price_usd"].source
    assert costs.lifetime_years == preset.lifetime_years.value
    # not given, no preset figure: the default, named as one
    assert fig["electricity_usd_per_kwh"].source.startswith("default")
    assert fig["utilization"].source.startswith("default")
    assert {f.provenance for f in figures} <= PROVENANCES


def test_flags_override_the_preset() -> None:
    config = DecideConfig(
        requests_per_day=2000, device="rpi5-8gb", device_price_usd=95, electricity_usd_per_kwh=0.3
    )
    costs, figures = cost_inputs(config, get_preset("rpi5-8gb"))
    fig = _by_name(figures)
    assert costs.device_price_usd == 95 and fig["device_price_usd"].source == "--device-price"
    assert costs.electricity_usd_per_kwh == 0.3
    assert fig["electricity_usd_per_kwh"].source == "--electricity"


def test_a_dedicated_device_needs_a_price() -> None:
    with pytest.raises(UsageError, match=r"`device`.*`device_price_usd`"):
        cost_inputs(DecideConfig(requests_per_day=2000), None)
    # an owned device's price is sunk, a user's device is not the operator's
    for mode in ("owned", "user-device"):
        costs, _ = cost_inputs(DecideConfig(requests_per_day=2000, deployment=mode), None)
        assert costs.deployment == mode and costs.device_price_usd == 0


def test_bad_input_is_one_line_naming_the_flag(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    cases = [
        (("--requests-per-day", "2000", "--db", db), "--device"),
        (("--requests-per-day", "2000", "--device", "rpi5-8g", "--db", db), "did you mean"),
        (("--requests-per-day", "0", "--device", "rpi5-8gb", "--db", db), "--requests-per-day"),
        (("--requests-per-day", "5", "--deployment", "rented", "--db", db), "--deployment"),
        (("--requests-per-day", "5", "--device", "rpi5-8gb", "--price-in", "1"), "--price-out"),
        (
            (
                "--requests-per-day",
                "5",
                "--device",
                "rpi5-8gb",
                "--db",
                db,
                "--cloud",
                "openai:no-such-model-9",
            ),
            "edgeprof prices",
        ),
    ]
    for args, needle in cases:
        res = cli("decide", *args)
        assert res.exit_code == 2, (args, res.stdout, res.stderr)
        (line,) = res.stderr.strip().splitlines()
        assert line.startswith("edgeprof: error: ") and needle in line, line
    assert not db.exists()  # nothing was profiled


# -- the whole command on the demo model ----------------------------------------------------


def _decide(db: Path, *args: str, suite: tuple[str, ...] = FOUR) -> dict[str, Any]:
    res = cli("decide", "--requests-per-day", "2000", "--db", db, *QUICK, *suite, *args, "--json")
    assert res.exit_code == 0, res.stderr
    out: dict[str, Any] = json.loads(res.stdout)
    return out


@pytest.fixture(scope="module")
def first_and_second(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, ...]:
    """Two decides on one database, and the database (its runs are reused by later tests)."""
    db = tmp_path_factory.mktemp("decide") / "p.db"
    first = _decide(db, "--device", "rpi5-8gb", suite=())  # the bundled suite, as users run it
    second = _decide(db, "--device", "rpi5-8gb", suite=())
    return first, second, db


@pytest.mark.model
@pytest.mark.slow
def test_decide_rows_cover_every_device_and_cloud_target(
    first_and_second: tuple[dict[str, Any], ...],
) -> None:
    d = first_and_second[0]
    assert {r["target"] for r in d["runs"]} == {"llama.cpp", "ONNX int4"}
    assert not any(r["reused"] for r in d["runs"])
    devices = {r["device"] for r in d["rows"]}
    clouds = {r["cloud"] for r in d["rows"]}
    assert len(devices) == 2 and len(clouds) == len(DEFAULT_CLOUDS)
    assert len(d["rows"]) == len(devices) * len(clouds)
    for row in d["rows"]:
        assert row["device_capacity_requests_per_day"] > 0
        assert row["devices_needed"] >= 1
        assert row["device_cost_per_day_usd"] > 0 and row["cloud_cost_per_day_usd"] > 0
        assert row["break_even_status"] in ("ok", "energy_exceeds_cloud", "exceeds_capacity")
        if row["break_even_status"] != "energy_exceeds_cloud":
            assert row["break_even_requests_per_day"] > 0
        assert "payback_months" in row
        # the device's latency is measured; the catalog clouds' is not, and says so
        assert row["device_ttft_p50_s"] > 0 and row["device_e2e_p50_s"] >= row["device_ttft_p50_s"]
        assert row["cloud_latency"] == "not measured" and row["cloud_ttft_p50_s"] is None
    assert d["winner"] in {"llama.cpp", "ONNX int4", *clouds}
    assert d["verdict"].startswith("At 2,000 requests/day")


@pytest.mark.model
@pytest.mark.slow
def test_every_input_carries_its_provenance(first_and_second: tuple[dict[str, Any], ...]) -> None:
    d = first_and_second[0]
    names = {f["name"] for f in d["inputs"]}
    assert {"requests_per_day", "device_price_usd", "lifetime_years", "electricity_usd_per_kwh",
            "utilization", "input_tokens", "output_tokens", "max_tokens"} <= names  # fmt: skip
    for f in d["inputs"]:
        assert f["provenance"] in PROVENANCES and f["source"], f
    targets = [*d["comparison"]["devices"], *d["comparison"]["clouds"]]
    for t in targets:
        assert t["inputs"], t["name"]
        for f in t["inputs"]:
            assert f["provenance"] in PROVENANCES and f["source"], f
    # on a machine without sensors, energy is labelled estimated, in the figures and in words
    if not d["device"]["power_sensors"]:
        energy = [f for t in d["comparison"]["devices"] for f in t["inputs"]
                  if f["name"] == "j_per_output_token"]  # fmt: skip
        assert {f["provenance"] for f in energy} == {"estimated"}
        assert "Energy: estimated" in d["verdict"]
    # the preset is a Raspberry Pi; this test machine is not one, and the verdict says so
    if d["device"]["preset_mismatch"]:
        assert "priced as a Raspberry Pi 5" in d["verdict"]


@pytest.mark.model
@pytest.mark.slow
def test_a_second_decide_reuses_the_runs(first_and_second: tuple[dict[str, Any], ...]) -> None:
    first, second, _ = first_and_second
    assert all(r["reused"] for r in second["runs"])
    assert [r["run_id"] for r in second["runs"]] == [r["run_id"] for r in first["runs"]]
    assert "2 reused from the database" in second["verdict"]
    assert second["rows"] == first["rows"]


@pytest.mark.model
@pytest.mark.slow
def test_a_quality_floor_picks_another_target(first_and_second: tuple[Any, ...]) -> None:
    """Hand-made quality rows for the two profiled targets: the one that wins on cost loses
    much more against its reference. `--max-kld` then leaves it out, and the verdict picks
    the other and says why."""
    from edgeprof.store.db import Store
    from tests.builders import quality_row

    first, _, db = first_and_second
    owned = ("--device", "rpi5-8gb", "--deployment", "owned")  # energy only: a device wins
    before = _decide(db, *owned, suite=())
    assert all(r["reused"] for r in before["runs"])
    by_target = {r["target"]: r["run_id"] for r in first["runs"]}
    winner = before["winner"]
    assert winner in by_target, before["verdict"]
    (other,) = set(by_target) - {winner}
    assert "quality not measured" in before["verdict"]
    with Store(db) as store:
        for name, run_id in by_target.items():
            (run,) = store.runs([run_id])
            store.insert_quality(quality_row(run, kld_mean=0.4 if name == winner else 0.01))
    after = _decide(db, *owned, "--max-kld", "0.1", suite=())
    assert after["winner"] == other, after["verdict"]
    assert f"left out {winner} (KLD 0.4000 > 0.1)" in after["verdict"]
    floored = {r["device"] for r in after["rows"]}
    assert len(floored) == 1 and all(r["device_kld_mean"] == 0.01 for r in after["rows"])
    # without a floor the cheaper one wins again, its loss stated
    again = _decide(db, *owned, suite=())
    assert again["winner"] == winner and "KLD 0.4000" in again["verdict"]


@pytest.mark.model
@pytest.mark.slow
def test_reuse_is_printed_and_fresh_profiles_again(
    first_and_second: tuple[dict[str, Any], ...], tmp_path: Path
) -> None:
    db = tmp_path / "p.db"
    _decide(db, "--device", "rpi5-8gb", "--no-onnx")
    res = cli("decide", "--requests-per-day", "2000", "--db", db, *QUICK, *FOUR,
              "--device", "rpi5-8gb", "--no-onnx")  # fmt: skip
    assert res.exit_code == 0, res.stderr
    assert "llama.cpp: reused: run " in res.stdout
    assert "verdict" in res.stdout.splitlines()[0]  # the verdict comes first
    assert res.stdout.strip().splitlines()[-1].startswith("verdict: ")  # and has the last word
    fresh = _decide(db, "--device", "rpi5-8gb", "--no-onnx", "--fresh")
    assert not any(r["reused"] for r in fresh["runs"])


@pytest.mark.model
@pytest.mark.slow
def test_user_device_reports_battery_and_memory(tmp_path: Path) -> None:
    d = _decide(
        tmp_path / "p.db", "--deployment", "user-device", "--battery-wh", "50", "--no-onnx",
        "--cloud", "openai:gpt-4o-mini",
    )  # fmt: skip
    (row,) = d["rows"]
    assert row["device_cost_per_day_usd"] == 0 and row["devices_needed"] == 0
    joules = row["device_energy_net_j_per_request"]
    assert row["user_battery_pct_per_100_requests"] == pytest.approx(
        100 * 100 * joules / (50 * 3600)
    )
    assert "the operator pays nothing" in d["verdict"]
    assert "MiB of RAM" in d["verdict"] and "battery charge per 100 requests" in d["verdict"]
    battery = next(f for f in d["inputs"] if f["name"] == "battery_wh")
    assert battery["value"] == 50 and battery["source"] == "--battery-wh"


@pytest.mark.model
@pytest.mark.slow
def test_concurrency_levels_make_a_curve_and_capacity_comes_from_it(tmp_path: Path) -> None:
    """llama.cpp profiled one at a time and two at a time; with a latency requirement both
    meet, the comparator takes the higher level and the verdict says so."""
    d = _decide(tmp_path / "p.db", "--device", "rpi5-8gb", "--no-onnx", "--concurrency", "1,2",
                "--max-ttft-s", "100")  # fmt: skip
    assert [r["target"] for r in d["runs"]] == ["llama.cpp", "llama.cpp ×2"]
    (device,) = d["comparison"]["devices"]
    assert device["performance"]["concurrency"] == 2
    assert device["run_id"] == d["runs"][1]["run_id"]
    assert "capacity assumes 2 requests decoded together" in d["verdict"]
    assert any("throughput curve" in n for n in d["notes"])


@pytest.mark.model
@pytest.mark.slow
def test_a_latency_requirement_excludes_slower_targets(tmp_path: Path) -> None:
    d = _decide(tmp_path / "p.db", "--device", "rpi5-8gb", "--no-onnx", "--max-ttft-s", "1e-6")
    (device_row, *_) = d["rows"]
    assert device_row["device_meets_max_ttft"] is False
    assert "Excluded for a first token slower than 1e-06 s" in d["verdict"]
    assert d["winner"] in {r["cloud"] for r in d["rows"]}


@pytest.mark.model
@pytest.mark.server
@pytest.mark.slow
def test_a_live_endpoint_measures_cloud_latency(llama_server: str, tmp_path: Path) -> None:
    d = _decide(
        tmp_path / "p.db", "--device", "rpi5-8gb", "--no-onnx", "--cloud", "openai:gpt-4o-mini",
        "--base-url", llama_server + "/v1",
    )  # fmt: skip
    targets = {r["target"] for r in d["runs"]}
    assert targets == {"llama.cpp", "cloud openai:gpt-4o-mini"}
    (row,) = d["rows"]
    assert row["cloud_latency"] == "measured" and row["cloud_ttft_p50_s"] > 0
    assert "measured live" in d["verdict"]
    # priced at the catalog's list price for the model it names, at the measured tokens
    (cloud,) = d["comparison"]["clouds"]
    assert {f["name"] for f in cloud["inputs"]} >= {"price_in_usd_per_m", "price_out_usd_per_m"}


@pytest.mark.model
@pytest.mark.slow
def test_html_puts_the_verdict_on_top(tmp_path: Path) -> None:
    page = tmp_path / "r.html"
    res = cli("decide", "--requests-per-day", "2000", "--db", tmp_path / "p.db", *QUICK, *FOUR,
              "--device", "rpi5-8gb", "--no-onnx", "--html", page)  # fmt: skip
    assert res.exit_code == 0, res.stderr
    text = page.read_text()
    assert text.index("Verdict.") < text.index("<h2>Runs</h2>")
    # the decision section: chart, matrix, cost and latency, inputs, all formatted
    for part in ('alt="Cost per day against requests per day', 'id="break-even"', 'id="targets"',
                 'id="assumptions"'):  # fmt: skip
        assert text.index("Verdict.") < text.index(part) < text.index("<h2>Runs</h2>")
    assert raw_values(text) == []


@pytest.mark.model
@pytest.mark.slow
def test_ctrl_c_keeps_the_finished_runs_for_the_next_decide(tmp_path: Path) -> None:
    """Interrupted while profiling ONNX Runtime: llama.cpp's finished run is kept (and said),
    the ONNX run is kept as aborted, and the next decide reuses the finished one."""
    db = tmp_path / "p.db"
    args = ["--requests-per-day", "2000", "--device", "rpi5-8gb", "--db", str(db), "--warmup",
            "0", "--max-tokens", "16", "--repetitions", "3", "--idle-seconds", "0"]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgeprof", "decide", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "EDGEPROF_DEBUG": ""}, preexec_fn=interruptible,
    )  # fmt: skip
    try:
        assert _wait_for_onnx_requests(db, proc, 2), "decide never reached the ONNX run"
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:  # a failed assertion or a timeout must not leave decide profiling for minutes
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    runs = dict(sqlite3.connect(db).execute("SELECT backend, status FROM runs").fetchall())
    assert runs == {"llamacpp": "complete", "onnx": "aborted"}
    (llama_id,) = sqlite3.connect(db).execute("SELECT id FROM runs WHERE backend='llamacpp'")
    assert f"finished runs kept: {llama_id[0]}" in stderr
    again = _decide_args(args)
    assert [(r["target"], r["reused"]) for r in again["runs"]] == [
        ("llama.cpp", True),
        ("ONNX int4", False),
    ]


def _decide_args(args: list[str]) -> dict[str, Any]:
    res = cli("decide", *args, "--json")
    assert res.exit_code == 0, res.stderr
    out: dict[str, Any] = json.loads(res.stdout)
    return out


def _wait_for_onnx_requests(db: Path, proc: subprocess.Popen[str], n: int) -> bool:
    """Whether `decide` wrote n ONNX requests while still running. It gets there after
    profiling llama.cpp and converting the export, minutes on a loaded 2-core machine: the
    bound is only a guard against a hang (the loop ends as soon as decide exits)."""
    deadline = time.monotonic() + 1200
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        if not db.exists():
            continue
        try:
            with contextlib.closing(sqlite3.connect(db)) as conn:
                (count,) = conn.execute(
                    "SELECT count(*) FROM requests JOIN runs ON runs.id = requests.run_id "
                    "WHERE runs.backend = 'onnx'"
                ).fetchone()
        except sqlite3.OperationalError:
            continue  # tables not created yet
        if count >= n:
            return True
    return False
