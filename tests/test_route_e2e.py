"""`edgeprof route` end to end on real models: the demo model (Q4_1) on the device, the same
model at Q8_0 behind llama-cpp-python's OpenAI-compatible server on loopback as the "cloud"
(as tests/test_tasks_e2e.py), a few prompts of the bundled `tasks` suite answered and graded
by `decide`, then replayed: every policy, with or without the device's signals."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from edgeprof.routing.load import NO_SIGNALS
from tests.builders import bundled_tasks, cli

# two of each kind the replay can route on, and the format checks a cascade escalates on
NAMES = ("sentiment-1", "intent-3", "extract-person-1", "extract-order-1", "qa-capital-1",
         "math-add-1", "format-bullets-1", "format-words-1")  # fmt: skip
QUICK = ("--max-tokens", "24", "--repetitions", "1", "--warmup", "0", "--idle-seconds", "0.5",
         "--device", "rpi5-8gb", "--no-onnx", "--requests-per-day", "2000")  # fmt: skip
ROUTE = ("--requests-per-day", "2000", "--device-preset", "rpi5-8gb")

pytestmark = [pytest.mark.model, pytest.mark.server, pytest.mark.slow]


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bundled_tasks(tmp_path_factory.mktemp("suite") / "tasks8.jsonl", NAMES)


@pytest.fixture(scope="module")
def decided(
    q8_server: str, suite: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str, str]:
    """Both sides profiled and graded by `decide`: (the database, device run, cloud run)."""
    db = tmp_path_factory.mktemp("db") / "p.db"
    t0 = time.monotonic()
    done = cli("decide", "--db", db, *QUICK, "--prompts", suite, "--cloud", "openai:gpt-4o-mini",
               "--base-url", q8_server, "--json")  # fmt: skip
    assert done.exit_code == 0, done.stderr
    runs = {r["backend"]: r["run_id"] for r in json.loads(done.stdout)["runs"]}
    print(f"decide (profile and grade both sides): {time.monotonic() - t0:.1f} s")
    return db, runs["llamacpp"], runs["openai"]


def test_decide_hybrid_names_a_policy_with_its_threshold(
    decided: tuple[Path, str, str], q8_server: str, suite: Path, tmp_path: Path
) -> None:
    db, device, cloud = decided
    plot, page = tmp_path / "frontier.png", tmp_path / "d.html"
    done = cli("decide", "--db", db, *QUICK, "--prompts", suite, "--cloud", "openai:gpt-4o-mini",
               "--base-url", q8_server, "--hybrid", "--min-pass-rate", "0.8", "--json",
               "--plot", plot, "--html", page)  # fmt: skip
    assert done.exit_code == 0, done.stderr
    body = json.loads(done.stdout)
    (h,) = body["hybrids"]
    assert h["device"] == "llama.cpp" and h["device_run_id"] == device
    best = h["best"]
    assert best["policy"] == "cascade" and best["rule"]
    assert 0 <= best["escalation_rate"] <= 1 and len(h["curve"]) == 21
    assert h["report"]["protocol"]["folds"] == 5
    # the verdict names the cascade, its rule and how it compares with the cloud alone
    assert f"({best['rule']})" in body["verdict"]
    said = "held out: 5-fold" if best["held_out"] else "a fixed rule with nothing to tune"
    assert said in body["verdict"]
    # "none": nothing meets the floor (the loopback "cloud" is the demo model at Q8_0)
    assert body["winner"] in ("llama.cpp", h["cloud"], h["name"], "none")
    print(body["verdict"])
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert "Hybrid: device first, cloud when unsure" in page.read_text("utf-8")
    # the table form says the same
    table = cli("decide", "--db", db, *QUICK, "--prompts", suite, "--cloud", "openai:gpt-4o-mini",
                "--base-url", q8_server, "--hybrid", "--min-pass-rate", "0.8")  # fmt: skip
    assert table.exit_code == 0, table.stderr
    assert "hybrid: device first, cloud when unsure" in table.stdout
    assert "break-even requests/day against the cloud alone" in table.stdout
    # compare --hybrid on the stored runs: the same pair, the same replay (at a floor the
    # device meets: compare refuses a comparison where no device target does)
    stored = cli("compare", db, "--run", device, "--run", cloud, "--requests-per-day", "2000",
                 "--device-price", "80", "--lifetime-years", "3", "--electricity", "0.17",
                 "--prompts", suite,
                 "--hybrid", "--min-pass-rate", "0.3", "--json")  # fmt: skip
    assert stored.exit_code == 0, stored.stderr
    (again,) = json.loads(stored.stdout)["hybrids"]
    assert again["device_run_id"] == device and again["cloud_run_id"] == cloud
    assert again["best"]["policy"] == "cascade"


def test_route_replays_every_policy_over_the_demo_model_and_a_loopback_cloud(
    decided: tuple[Path, str, str],
) -> None:
    db, device, cloud = decided
    t1 = time.monotonic()

    replay = cli("route", "--db", db, "--device", device, "--cloud", cloud, *ROUTE, "--json")
    assert replay.exit_code == 0, replay.stderr
    body = json.loads(replay.stdout)
    labels = [p["label"] for p in body["policies"]]
    for label in ("device-only", "cloud-only", "cascade: format check",
                  "route-by-prompt: input tokens", "route-by-prompt: kind", "oracle"):  # fmt: skip
        assert label in labels
    assert body["n_prompts"] == len(NAMES) and body["protocol"]["folds"] == 5
    assert set(body["format_checks"]) == {"is-json", "bullets", "max-words"}
    by = {p["label"]: p for p in body["policies"]}
    assert by["oracle"]["pass_rate"]["rate"] >= max(
        by["device-only"]["pass_rate"]["rate"], by["cloud-only"]["pass_rate"]["rate"]
    )
    assert by["device-only"]["cost"]["devices_needed"] == 1
    assert by["cloud-only"]["cost"]["devices_needed"] == 0
    assert by["cloud-only"]["latency_p95_s"] > 0 and by["device-only"]["latency_p95_s"] > 0
    if body["signals"]:  # the decode loops store them (issue 26 §1)
        assert "cascade: logprob_mean" in labels
    else:
        assert NO_SIGNALS in body["notes"]
        assert not any(label.startswith("cascade: logprob") for label in labels)

    # With signals stored (written here when this edgeprof's decode loops do not yet), a
    # cascade per signal is replayed too; the table names every policy and the protocol.
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(
            "UPDATE requests SET signal_source = 'logits', signal_tokens = output_tokens, "
            "logprob_mean = coalesce(logprob_mean, -0.1 * (seq + 1)), "
            "logprob_min = coalesce(logprob_min, -1.0 * (seq + 1)), "
            "entropy_mean = coalesce(entropy_mean, 0.2 * (seq % 3)), "
            "first_margin = coalesce(first_margin, 0.5 * (seq % 4)) WHERE run_id = ?",
            [device],
        )
    conn.close()
    table = cli("route", "--db", db, "--device", device, "--cloud", cloud, *ROUTE)
    assert table.exit_code == 0, table.stderr
    for label in [*labels, "cascade: logprob_mean", "cascade: entropy_mean",
                  "cascade: format check or first_margin"]:  # fmt: skip
        assert label in table.stdout
    assert "held out: 5-fold cross-validation" in table.stdout
    assert NO_SIGNALS not in table.stderr
    print(f"route: {time.monotonic() - t1:.1f} s")
