"""A real local server as a device target, end to end: llama-cpp-python's OpenAI-compatible
server on the demo model, on loopback (tests/cloud_fixtures.py `llama_server`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from edgeprof.store.db import Store
from tests.builders import cli, write_prompts

pytestmark = [pytest.mark.model, pytest.mark.server, pytest.mark.slow]


def _server_process(base_url: str) -> psutil.Process:
    """The fixture's server, found by its command line (not by the code under test's way)."""
    port = str(httpx.URL(base_url).port)
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info.get("cmdline") or []
        if "llama_cpp.server" in cmd and port in cmd:
            return proc
    raise AssertionError(f"no llama_cpp.server on port {port}")


def test_run_against_the_loopback_server_is_a_device_run(llama_server: str, tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    prompts = write_prompts(tmp_path / "two.jsonl", ["Name a colour.", "Count to three."])
    done = cli("run", "--backend", "openai", "--base-url", llama_server + "/v1", "--model",
               "smollm2", "--prompts", prompts, "--repetitions", "1", "--warmup", "1",
               "--max-tokens", "8", "--idle-seconds", "0.5", "--db", db)  # fmt: skip
    assert done.exit_code == 0, done.stderr
    report = cli("report", db, "--json")
    (run,) = json.loads(report.stdout)
    assert run["target_kind"] == "device"
    assert run["energy_j"] and run["energy_method"] in ("measured", "estimated")
    assert run["idle_power_w"] is not None  # the idle baseline ran, as for llama.cpp
    proc = _server_process(llama_server)
    process = run["server"]["process"]
    assert process["name"] == "python -m llama_cpp.server" and process["pid"] == proc.pid
    # the run's peak RSS is the server's (the demo model loaded), not edgeprof's own
    rss_now = proc.memory_info().rss
    assert 0.7 * rss_now <= run["peak_rss_bytes"] <= 1.3 * rss_now
    assert run["server"]["timings"]["figures"] == "client-side only"
    with Store(db) as store:
        sensors = store.sensors(run["run_id"])
        rows = store.requests(run["run_id"])
    (detail,) = {s["detail"] for s in sensors if s["sensor"] == "process"}
    assert f"pid {proc.pid} (" in str(detail)
    assert all(r["cost_usd"] is None and r["energy_j"] for r in rows)
    # not asked for logprobs: the server's work on them would be measured (openai_compat)
    assert all(r["signal_source"] is None and r["logprob_mean"] is None for r in rows)
    text = cli("report", db)
    assert f"python -m llama_cpp.server, pid {proc.pid}" in text.stdout
    assert "client-side figures only" in text.stdout


def test_decide_with_the_server_as_the_device_side(llama_server: str, tmp_path: Path) -> None:
    target = f"openai:smollm2@{llama_server}/v1"
    res = cli("decide", "--requests-per-day", "2000", "--db", tmp_path / "p.db", "--max-tokens",
              "8", "--repetitions", "1", "--warmup", "0", "--idle-seconds", "0.5", "--prompts",
              Path(__file__).parent / "data" / "four_prompts.jsonl", "--device", "rpi5-8gb",
              "--device-target", target, "--cloud", "openai:gpt-4o-mini", "--json")  # fmt: skip
    assert res.exit_code == 0, res.stderr
    d: dict[str, Any] = json.loads(res.stdout)
    name = f"python -m llama_cpp.server smollm2 at {llama_server}/v1"  # the server, named
    assert [r["target"] for r in d["runs"]] == [name]  # instead of llama.cpp: no --model
    (device,) = d["comparison"]["devices"]
    assert device["run_id"] == d["runs"][0]["run_id"]
    assert name in d["verdict"]
    with Store(tmp_path / "p.db") as store:
        (run,) = store.runs()
    assert run["target_kind"] == "device" and run["backend"] == "openai"
