"""End to end on real models: the demo model (Q4_1) on the device, the same model at Q8_0
behind llama-cpp-python's OpenAI-compatible server on loopback as the "cloud". Both answer a
few prompts of the bundled `tasks` suite, both are graded, `decide --min-pass-rate` reacts to
their pass rates, and the server judges the summaries under a JSON schema."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from edgeprof.grading.verdicts import parse_verdict
from tests.builders import bundled_tasks, cli

NAMES = ("sentiment-1", "intent-3", "qa-capital-1", "math-add-1", "unit-km-1",
         "format-bullets-1", "summary-2")  # fmt: skip
QUICK = ("--max-tokens", "32", "--repetitions", "1", "--warmup", "0", "--idle-seconds", "0.5",
         "--device", "rpi5-8gb", "--no-onnx", "--requests-per-day", "2000")  # fmt: skip

pytestmark = [pytest.mark.model, pytest.mark.server, pytest.mark.slow]


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bundled_tasks(tmp_path_factory.mktemp("suite") / "tasks7.jsonl", NAMES)


def _decide(db: Path, suite: Path, server: str, *args: str) -> dict[str, Any]:
    res = cli("decide", "--db", db, *QUICK, "--prompts", suite, "--cloud", "openai:gpt-4o-mini",
              "--base-url", server, *args, "--json")  # fmt: skip
    assert res.exit_code == 0, res.stderr
    out: dict[str, Any] = json.loads(res.stdout)
    return out


def test_device_and_cloud_graded_and_the_floor_reacts(
    q8_server: str, suite: Path, tmp_path: Path
) -> None:
    db = tmp_path / "p.db"
    first = _decide(db, suite, q8_server)
    task = first["task_quality"]
    by_side = {t["side"]: t for t in task["targets"]}
    device, cloud = by_side["device"], by_side["cloud"]
    # Both sides graded on the same suite (the cloud profiled live): rates with intervals.
    for t in (device, cloud):
        assert t["run_id"] and t["pass_rate"]["n"] == len(NAMES)
        assert t["pass_rate"]["low"] <= t["pass_rate"]["rate"] <= t["pass_rate"]["high"]
    print("pass rates: device", device["pass_rate"]["rate"], "cloud", cloud["pass_rate"]["rate"])
    assert (
        device["usd_per_passing_answer"] is None
        or device["usd_per_passing_answer"] >= (device["usd_per_request"])
    )
    assert first["verdict"].startswith(task["sentences"][0])

    # A floor just above the device's rate leaves it out, with its rate in the reason.
    rate = device["pass_rate"]["rate"]
    if rate < 1.0:
        floor = f"{rate + 0.01:.2f}"
        second = _decide(db, suite, q8_server, "--min-pass-rate", floor)
        left = dict(second["task_quality"]["left_out"])
        assert device["name"] in left and f"passes {rate:.0%} [" in left[device["name"]]
        assert second["verdict"].startswith(task["sentences"][0].split(":")[0].split(" against")[0])
        assert "below the" in second["verdict"]
        if cloud["pass_rate"]["rate"] >= rate + 0.01:
            assert second["winner"] == cloud["name"]
    # A floor both meet keeps both, priced per passing answer.
    low = min(rate, cloud["pass_rate"]["rate"])
    if low > 0:
        third = _decide(db, suite, q8_server, "--min-pass-rate", f"{low - 0.005:.3f}")
        assert third["task_quality"]["left_out"] == [] and third["rows"]

    # The server judges the summary's rubric under the verdict's JSON schema.
    judge = ("--judge", "openai:q8-judge", "--base-url", q8_server, "--price-in", "0.1",
             "--price-out", "0.4")  # fmt: skip
    done = cli("grade", device["run_id"], "--db", db, *judge, "--json")
    assert done.exit_code == 0, done.stderr
    (judged,) = json.loads(done.stdout)["judges"]
    assert judged["grades"] == 1
    conn = sqlite3.connect(db)
    row = conn.execute(
        "SELECT g.judge_failed, g.reason, r.output_text FROM grades g JOIN requests r "
        "ON r.run_id = g.grader WHERE g.assertion_type = 'llm-rubric'"
    ).fetchone()
    conn.close()
    # Grammar-constrained: the judge's reply is JSON with the verdict's keys. A grammar does
    # not bound numbers, so a small judge may still score outside 0..1: then the schema check
    # stores a judge failure, never a pass.
    reply = json.loads(row[2])
    assert set(reply) == {"pass", "score", "reason"}, row
    assert row[0] == (parse_verdict(row[2]) is None), row
