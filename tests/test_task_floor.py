"""Task quality in the verdict: `--min-pass-rate` on device and cloud targets alike, $ and J
per passing answer, and the sentences the verdict opens with. Fixed answers (tests/canned.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import tests.canned  # noqa: F401 - registers the `canned` backends
from edgeprof.decision.task_quality import (
    Side,
    TargetTaskQuality,
    TaskFloor,
    TaskQualityReport,
    cloud_only_verdict,
    per_passing,
    verdict_sentences,
)
from edgeprof.grading.rates import PassRate
from tests.builders import cli, write_prompts
from tests.test_grading import ANSWERS, SUITE

FLAGS = ("--repetitions", "2", "--warmup", "0", "--idle-seconds", "0", "--max-tokens", "16",
         "--tdp-w", "15", "--json")  # fmt: skip
COMPARE = ("--requests-per-day", "1000", "--electricity", "0.2", "--owned")


def _target(name: str, side: Side, rate: PassRate | None, usd: float | None = None,
            meets: bool | None = None) -> TargetTaskQuality:  # fmt: skip
    return TargetTaskQuality(name, side, "r", rate, usd, per_passing(usd, rate), None, None, meets)


def test_per_passing_answer_divides_by_the_pass_rate() -> None:
    assert per_passing(0.002, PassRate.of(1, 4)) == pytest.approx(0.008)
    assert per_passing(0.002, PassRate.of(0, 4)) is None  # nothing passes: no such answer
    assert per_passing(None, PassRate.of(1, 4)) is None
    assert per_passing(0.002, None) is None


def test_verdict_sentences_put_a_device_below_the_floor_first() -> None:
    floor = TaskFloor(0.8, "tasks")
    device = _target("llamacpp:SmolLM2-135M.gguf [01J]", "device", PassRate.of(23, 60),
                     meets=False)  # fmt: skip
    good = _target("llamacpp:Qwen.gguf [01K]", "device", PassRate.of(55, 60), meets=True)
    cloud = _target("openai:gpt-5-nano", "cloud", PassRate.of(55, 60), meets=True)
    unknown = _target("anthropic:claude-haiku", "cloud", None)
    s, closing = verdict_sentences([good, device, cloud, unknown], floor, True)
    assert s[0] == (
        "SmolLM2-135M passes 38% [27%–51%] of the suite's checks against 92% for "
        "gpt-5-nano: below the 80% floor."
    )
    assert s[1].startswith("Qwen passes 92%") and "floor" not in s[1]
    assert closing == ["Task quality not measured for the cloud side (claude-haiku): "
                       "assumed to pass."]  # fmt: skip
    assert verdict_sentences([device], floor, False) == (
        [],
        ["Task quality not measured: the suite has no expectations (docs/quality.md)."],
    )


def test_cloud_only_verdict_picks_the_cheapest_passing_answer() -> None:
    report = TaskQualityReport(
        TaskFloor(0.8, "tasks"), "tasks",
        (_target("llamacpp:x [01]", "device", PassRate.of(1, 10), 1e-6, False),
         _target("openai:a", "cloud", PassRate.of(9, 10), 0.0009, True),
         _target("openai:b", "cloud", PassRate.of(10, 10), 0.0008, True),
         _target("openai:c", "cloud", PassRate.of(1, 10), 0.00001, False)),
        (("llamacpp:x [01]", "below"), ("openai:c", "below")), (), (), True,
    )  # fmt: skip
    winner, sentence = cloud_only_verdict(report)
    assert winner == "openai:b" and "b in the cloud" in sentence and "$0.0008 per" in sentence


def _runs(tmp_path: Path, suite: list[dict[str, Any]] = SUITE) -> Path:
    db = tmp_path / "p.db"
    prompts = write_prompts(tmp_path / "mine.jsonl", suite)
    answers = {
        "canned": ANSWERS,  # 3 of 4 prompts pass
        "cloudy": {**ANSWERS, "2+2?": "4"},  # 4 of 4
        # 1 of 4: "no idea" meets the summary's word limit (its rubric waits for a judge)
        "sloppy": {k: "no idea" for k in ANSWERS},
    }
    for model, table in answers.items():
        path = tmp_path / f"{model}.json"
        path.write_text(json.dumps(table))
        backend = "canned" if model == "canned" else "canned-remote"
        extra = () if model == "canned" else ("--set", "price_in_usd_per_m=1", "--set",
                                                "price_out_usd_per_m=2")  # fmt: skip
        done = cli("run", "--backend", backend, "--model", model, "--set", f"answers={path}",
                   *extra, "--prompts", prompts, "--db", db, *FLAGS)  # fmt: skip
        assert done.exit_code == 0, done.stderr
    return db


def test_compare_floor_leaves_out_device_and_cloud_targets_alike(tmp_path: Path) -> None:
    db = _runs(tmp_path)
    suite = str(tmp_path / "mine.jsonl")
    done = cli("compare", db, *COMPARE, "--prompts", suite, "--min-pass-rate", "0.6", "--json")
    assert done.exit_code == 0, done.stderr
    body = json.loads(done.stdout)
    task = body["task_quality"]
    rates = {t["name"].split(" [")[0]: t["pass_rate"]["rate"] for t in task["targets"]}
    assert rates == {"canned:canned": 0.75, "canned-remote:cloudy": 1.0,
                     "canned-remote:sloppy": 0.25}  # fmt: skip
    (left,) = task["left_out"]
    assert left[0].startswith("canned-remote:sloppy")
    r = PassRate.of(1, 4)  # Wilson: [4.6%, 69.9%]
    assert (
        f"passes 25% [{r.low:.0%}–{r.high:.0%}] of the suite's checks (n=4), below the 60% "
        "floor" in left[1]
    )
    assert (r.low, r.high) == (pytest.approx(0.0456, abs=1e-4), pytest.approx(0.6994, abs=1e-4))
    # The cloud target below the floor is out of the comparison itself.
    assert [c["name"].split(" [")[0] for c in body["clouds"]] == ["canned-remote:cloudy"]
    device = next(t for t in task["targets"] if t["side"] == "device")
    assert device["usd_per_passing_answer"] == pytest.approx(device["usd_per_request"] / 0.75)
    assert device["j_per_passing_answer"] == pytest.approx(device["j_per_request"] / 0.75)
    cloud = next(t for t in task["targets"] if t["name"].startswith("canned-remote:cloudy"))
    assert cloud["usd_per_passing_answer"] == cloud["usd_per_request"] > 0
    assert task["sentences"] == [
        "canned passes 75% [30%–95%] of the suite's checks against 100% for cloudy."
    ]

    table = cli("compare", db, *COMPARE, "--prompts", suite, "--min-pass-rate", "0.6")
    assert table.exit_code == 0, table.stderr
    assert table.stdout.startswith("task quality: canned passes 75%")
    assert "$/passing answer" in table.stdout and "left out" in table.stdout

    # A floor the device misses: the verdict is the cloud's, and says why first.
    high = cli("compare", db, *COMPARE, "--prompts", suite, "--min-pass-rate", "0.8")
    assert high.exit_code == 2
    assert high.stderr.startswith(
        "edgeprof: error: canned passes 75% [30%–95%] of the suite's checks against 100% for "
        "cloudy: below the 80% floor. No on-device target does the feature well enough: "
        "cloudy in the cloud is the option that does"
    )
    bad = cli("compare", db, *COMPARE, "--min-pass-rate", "80")
    assert bad.exit_code == 2 and "share from 0 to 1" in bad.stderr


def test_a_suite_without_expectations_says_task_quality_was_not_measured(
    tmp_path: Path,
) -> None:
    db = _runs(tmp_path, suite=[{"prompt": p} for p in ANSWERS])
    done = cli("compare", db, *COMPARE, "--prompts", str(tmp_path / "mine.jsonl"),
               "--min-pass-rate", "0.9", "--json")  # fmt: skip
    assert done.exit_code == 0, done.stderr
    task = json.loads(done.stdout)["task_quality"]
    assert task["sentences"] == [] and task["closing"] == [
        "Task quality not measured: the suite has no expectations (docs/quality.md)."
    ]
    assert task["left_out"] == [] and not task["expectations"]
