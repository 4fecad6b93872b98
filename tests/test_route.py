"""`edgeprof route` on hand-made graded runs (tests/route_builders.py): every policy's pass rate,
escalation, cost, energy and latency computed by hand; the held-out rule; how prompts are
matched; and the one-line errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from edgeprof.decision.economics import CloudPrice, DeviceCosts
from edgeprof.grading.assertions import Assertion
from edgeprof.grading.grade_runs import quality_of_runs
from edgeprof.grading.records import save_expectations
from edgeprof.measure.prompt import Prompt
from edgeprof.routing.holdout import assign_folds
from edgeprof.routing.load import NO_SIGNALS
from edgeprof.routing.replay import NO_KINDS, RouteOptions, RouteReport, route
from edgeprof.store import Store
from tests.builders import cli
from tests.route_builders import CHECKS, SUITE, Case, Said, add_pair, prompt_ids

R = 2000
COSTS = DeviceCosts(365.0, 1.0, 0.36)  # $1 a day of capital, 1e-7 $ a joule
COST_FLAGS = ("--device-price", "365", "--lifetime-years", "1", "--electricity", "0.36")
FIXED = 1.0 + 2.0 * 86_400 * 1e-7  # one device a day: capital and its 2 W idle draw
NET_J = 15.0 - 2.0 * 1.5  # each device answer: 50 in / 10 out, 1.5 busy s, 15 J gross
CLOUD = 7e-5  # a cloud answer of 50 in / 10 out at $1 / $2 per 1M tokens
CLOUD_C = 1.4e-4  # prompt C's longer one: 100 in / 20 out


def _by_fold(names: list[str], k: int) -> list[list[str]]:
    """`names` dealt into the k folds a replay of exactly these prompts makes."""
    ids = prompt_ids(names)
    folds = assign_folds(list(ids.values()), k)
    return [[n for n in names if folds[ids[n]] == f] for f in range(k)]


def _six(**said: Any) -> list[Case]:
    """Six prompts, two folds. In each fold the device is unsure (low logprob_mean) exactly
    where it fails; the cloud fails only the first prompt of fold 0 (A), which the device
    passes. F's answer is not JSON (a format check fails)."""
    (a, b, c), (d, e, f) = _by_fold([f"q{i}" for i in range(6)], 2)
    lp = {a: -0.1, b: -0.2, c: -1.5, d: -0.3, e: -1.2, f: -2.0}

    def dev(name: str, **kw: Any) -> list[Said]:
        return [Said(signals={"logprob_mean": lp[name]}, **kw, **said)]

    return [
        Case(a, dev(a), [Said(content=False)]),
        Case(b, dev(b), [Said()]),
        Case(c, dev(c, content=False), [Said(input_tokens=100, output_tokens=20, e2e_s=0.8)]),
        Case(d, dev(d), [Said()]),
        Case(e, dev(e, content=False), [Said()]),
        Case(f, dev(f, form=False), [Said()]),
    ]


def _report(tmp_path: Path, cases: list[Case], options: RouteOptions | None = None,
            **kw: Any) -> RouteReport:  # fmt: skip
    with Store(tmp_path / "p.db") as store:
        device, cloud = add_pair(store, cases)
        return route(store, device, cloud, COSTS, R, options or RouteOptions(2, "max-pass"), **kw)


def test_every_policy_priced_graded_and_timed_by_hand(tmp_path: Path) -> None:
    report = _report(tmp_path, _six())
    p = {r.label: r for r in report.policies}
    assert list(p) == ["device-only", "cloud-only", "cascade: format check",
                       "cascade: logprob_mean", "cascade: format check or logprob_mean",
                       "route-by-prompt: input tokens", "oracle"]  # fmt: skip
    assert report.n_prompts == 6 and report.signals == ("logprob_mean",)
    assert report.format_checks == ("is-json",)
    device_day = FIXED + R * NET_J * 1e-7
    escalated_cde = R / 6 * (CLOUD_C + 2 * CLOUD)  # C, E and F, each a sixth of the volume
    expected = {  # pass rate, escalation, $/day, net J/request, p50, p95, gap recovered
        "device-only": (3 / 6, 0, device_day, NET_J, 1.5, 1.5, 0.0),
        "cloud-only": (5 / 6, 1, R / 6 * (5 * CLOUD + CLOUD_C), 0.0, 0.4, 0.7, 1.0),
        # F's failed format check sends it to the cloud, which passes it: 1.5 + 0.4 s
        "cascade: format check": (4 / 6, 1 / 6, device_day + R / 6 * CLOUD, NET_J, 1.5,
                                  1.5 + 0.75 * 0.4, 0.5),
        # held out, each fold's threshold escalates C, E and F: all pass; C takes 1.5 + 0.8 s
        "cascade: logprob_mean": (1.0, 0.5, device_day + escalated_cde, NET_J, 1.7, 2.2, 1.5),
        "cascade: format check or logprob_mean": (1.0, 0.5, device_day + escalated_cde, NET_J,
                                                  1.7, 2.2, 1.5),
        # all prompts are 50 tokens: the rule can only send all of them (cheaper, 5 of 6 pass)
        "route-by-prompt: input tokens": (5 / 6, 1, R / 6 * (5 * CLOUD + CLOUD_C), 0.0, 0.4,
                                          0.7, 1.0),
        # the device answers A, B and D; C, E and F go straight to the cloud
        "oracle": (1.0, 0.5, FIXED + R / 2 * NET_J * 1e-7 + escalated_cde, NET_J / 2,
                   0.8 + 0.5 * 0.7, 1.5, 1.5),
    }  # fmt: skip
    for label, (rate, esc, usd, joules, p50, p95, gap) in expected.items():
        got = p[label]
        assert got.pass_rate.rate == pytest.approx(rate), label
        assert got.escalation_rate == pytest.approx(esc), label
        assert got.cost.usd_per_day == pytest.approx(usd), label
        assert got.cost.energy_net_j_per_request == pytest.approx(joules), label
        assert (got.latency_p50_s, got.latency_p95_s) == (pytest.approx(p50), pytest.approx(p95))
        assert got.gap_recovered == pytest.approx(gap), label
        assert got.cloud_energy_j_per_request is None  # never a figure: no API reports it
    cascade = p["cascade: logprob_mean"]
    assert cascade.held_out and cascade.rule == "logprob_mean < -0.75"
    assert sorted(cascade.fold_rules) == ["logprob_mean < -0.75", "logprob_mean < -0.85"]
    assert cascade.cost.devices_needed == 1 and p["cloud-only"].cost.devices_needed == 0
    assert p["route-by-prompt: input tokens"].rule == "cloud: every prompt"
    # the device's pass rate is the one `edgeprof report` gives
    with Store(tmp_path / "p.db") as store:
        (q,) = quality_of_runs(store, [report.device_run_id]).values()
    assert q.pass_rate == report.device_pass_rate
    assert NO_KINDS in report.notes and any("only 6 prompts" in w for w in report.warnings)
    assert "2-fold cross-validation" in report.protocol_text
    # the sweep: every candidate of every tuned family on every prompt, for a frontier
    points = [s for s in report.sweep if s.variant == "logprob_mean"]
    assert [s.rule for s in points][:2] == ["logprob_mean: never", "logprob_mean < -1.75"]
    assert points[-1].rule == "always" and points[-1].escalation_rate == 1.0


def test_repetitions_weigh_a_prompt_once(tmp_path: Path) -> None:
    # The device answers each prompt twice; for X the answers disagree (one passes).
    cases = [
        Case(
            "X",
            [
                Said(signals={"logprob_mean": -0.1}),
                Said(content=False, signals={"logprob_mean": -3.0}),
            ],
            [Said()],
        ),
        Case("Y", [Said(signals={"logprob_mean": -0.2})] * 2, [Said(), Said(form=False)]),
    ]
    report = _report(tmp_path, cases)  # fmt: skip
    p = {r.label: r for r in report.policies}
    assert p["device-only"].pass_rate.passed == pytest.approx(1.5)  # 0.5 + 1
    assert p["cloud-only"].pass_rate.passed == pytest.approx(1.5)  # 1 + 0.5
    # the oracle sends X's failed answer (a quarter of the requests) to the cloud
    assert p["oracle"].pass_rate.passed == pytest.approx(2.0)
    assert p["oracle"].escalation_rate == pytest.approx(0.25)


def test_a_threshold_perfect_on_calibration_is_reported_held_out(tmp_path: Path) -> None:
    # Fold 0: the signal is right. Fold 1: upside down (see test_routing.py for the figures).
    f0, f1 = _by_fold([f"q{i}" for i in range(4)], 2)

    def said(lp: float, **kw: Any) -> list[Said]:
        return [Said(signals={"logprob_mean": lp}, **kw)]

    cases = [Case(f0[0], said(-0.1), [Said()]), Case(f0[1], said(-1.0, content=False), [Said()]),
             Case(f1[0], said(-0.9), [Said(content=False)]),
             Case(f1[1], said(-0.2, content=False), [Said()])]  # fmt: skip
    db = tmp_path / "p.db"
    with Store(db) as store:
        device, cloud = add_pair(store, cases)
    done = cli("route", "--db", db, "--device", device, "--cloud", cloud, "--requests-per-day",
               str(R), *COST_FLAGS, "--folds", "2", "--objective", "max-pass",
               "--json")  # fmt: skip
    assert done.exit_code == 0, done.stderr
    body = json.loads(done.stdout)
    (row,) = [r for r in body["policies"] if r["label"] == "cascade: logprob_mean"]
    assert row["pass_rate"]["rate"] == 0.25 and row["held_out"]  # what the table reports
    assert row["in_sample_pass_rate"]["rate"] == 0.75  # the same family, tuned on everything
    assert sorted(row["fold_rules"]) == ["logprob_mean < -0.55", "logprob_mean: never"]


def test_the_json_names_every_figure_and_the_protocol(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    with Store(db) as store:
        device, cloud = add_pair(store, _six())
    done = cli("route", "--db", db, "--device", device[:12], "--cloud", cloud, "--json",
               "--requests-per-day", str(R), "--device-preset", "rpi5-8gb")  # fmt: skip
    assert done.exit_code == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["protocol"] == {"folds": 5, "objective": "cheapest-per-pass",
                                "min_pass_rate": None}  # fmt: skip
    assert body["protocol_text"].startswith("held out: 5-fold cross-validation")
    labels = [r["label"] for r in body["policies"]]
    assert labels[0] == "device-only" and labels[-1] == "oracle" and len(labels) == 7
    for row in body["policies"]:
        rate = row["pass_rate"]
        assert rate["low"] <= rate["rate"] <= rate["high"]
        for key in ("escalation_rate", "latency_p95_s", "gap_recovered", "rule", "chosen"):
            assert key in row
        assert row["cost"]["usd_per_day"] > 0 and "energy_net_j_per_request" in row["cost"]
    figures = {f["name"]: f for f in body["inputs"]}
    assert figures["device_price_usd"]["source"].startswith("preset rpi5-8gb")
    assert figures["price_in_usd_per_m"]["value"] == 1.0
    assert body["sweep"] and body["warnings"]

    table = cli("route", "--db", db, "--device", device, "--cloud", cloud,
                "--requests-per-day", str(R), *COST_FLAGS)  # fmt: skip
    assert table.exit_code == 0, table.stderr
    for label in labels:
        assert label in table.stdout
    assert "held out: 5-fold cross-validation" in table.stdout
    assert "+ cloud ?" in table.stdout  # the cloud's energy is not known, and said so
    assert "warning: only 6 prompts" in table.stderr


def test_a_floor_chooses_the_cheapest_rule_that_meets_it(tmp_path: Path) -> None:
    report = _report(tmp_path, _six(), RouteOptions(2, None, 0.6))
    assert report.protocol.objective == "cheapest-at-floor"
    p = {r.label: r for r in report.policies}
    assert p["cascade: logprob_mean"].met_floor is not None
    assert p["device-only"].met_floor is False and p["cloud-only"].met_floor is True
    # a floor nothing meets on a calibration part is said
    high = _report(tmp_path / "x", _six(), RouteOptions(2, None, 1.0))
    assert any("no rule met the 100% floor" in n for n in high.notes)


def test_cached_input_and_an_explicit_price(tmp_path: Path) -> None:
    cases = [
        Case("a", [Said()], [Said(input_tokens=100, cached_input_tokens=80)]),
        Case("b", [Said(content=False)], [Said(input_tokens=100, cached_input_tokens=80)]),
    ]
    price = CloudPrice(1.0, 2.0, cached_input_usd_per_m=0.1)
    report = _report(tmp_path, cases, cloud_price=price)  # fmt: skip
    per_request = (20 * 1.0 + 80 * 0.1 + 10 * 2.0) / 1e6
    assert report.result("cloud-only").cost.usd_per_day == pytest.approx(R * per_request)
    assert NO_SIGNALS in report.notes  # no signals stored: rule-check and prompt policies only
    assert [r.label for r in report.policies] == [
        "device-only",
        "cloud-only",
        "cascade: format check",
        "route-by-prompt: input tokens",
        "oracle",
    ]


def test_prompts_answered_on_one_side_are_named_not_dropped(tmp_path: Path) -> None:
    cases = [*_six(), Case("only-device", [Said()], []), Case("only-cloud", [], [Said()])]
    report = _report(tmp_path, cases)
    assert report.n_prompts == 6
    assert report.missing_on_cloud == ("only-device",)
    assert report.missing_on_device == ("only-cloud",)
    assert "1 prompts answered by the device run only, left out: only-device" in report.notes


def test_prompts_graded_on_one_side_or_in_part_are_said_as_such(tmp_path: Path) -> None:
    """A prompt both runs answered but one side never graded is "not graded on one side"
    (not "answered by one run only"); one with an ungraded repetition is replayed on the rest,
    and a note says so."""
    cases = [*_six(), Case("half", [Said(), Said()], [Said()]), Case("bare", [Said()], [Said()])]
    with Store(tmp_path / "p.db") as store:
        device, cloud = add_pair(store, cases)
        requests = {(r["prompt_id"], r["repetition"]): r["id"] for r in store.requests(device)}
        ids = prompt_ids(["half", "bare"])
        for key in ((ids["half"], 1), (ids["bare"], 0)):
            store.db.execute("DELETE FROM grades WHERE request_id = ?", [requests[key]])
        report = route(store, device, cloud, COSTS, R, RouteOptions(2, "max-pass"))
    assert report.n_prompts == 7  # the six and "half", on its one graded repetition
    assert report.ungraded == ("bare",)
    assert report.missing_on_device == () and report.missing_on_cloud == ()
    assert "1 prompts partly graded, replayed on their graded answers only: half" in report.notes


def test_answers_with_an_unjudged_rubric_are_said(tmp_path: Path) -> None:
    """A prompt's llm-rubric check that no judge has graded: its answers pass or fail on their
    other checks, and the report says how many."""
    with Store(tmp_path / "p.db") as store:
        device, cloud = add_pair(store, _six())
        name = _six()[0].name
        rubric = (*CHECKS, Assertion("llm-rubric", value="is it kind?"))
        save_expectations(store, [Prompt(prompt_ids([name])[name], SUITE, name, (), rubric)])
        report = route(store, device, cloud, COSTS, R, RouteOptions(2, "max-pass"))
    (note,) = [n for n in report.notes if "llm-rubric" in n]
    assert note.startswith("2 answers have a judged check (llm-rubric) without a verdict")
    plain = _report(tmp_path / "plain", _six())
    assert not any("llm-rubric" in n for n in plain.notes)


def test_no_gap_to_recover_is_said(tmp_path: Path) -> None:
    cases = [Case("a", [Said()], [Said()]), Case("b", [Said()], [Said(content=False)])]
    report = _report(tmp_path, cases)
    assert report.result("cascade: format check").gap_recovered is None
    assert any("no gap to recover" in n for n in report.notes)


def _fail(db: Path, *args: Any) -> str:
    done = cli("route", "--db", db, "--requests-per-day", str(R), *COST_FLAGS, *args)
    assert done.exit_code == 2, done.stdout
    assert done.stderr.startswith("edgeprof: error: ") and done.stderr.count("\n") == 1
    return str(done.stderr)


def _pair(db: Path, **kw: Any) -> tuple[str, str]:
    with Store(db) as store:
        return add_pair(store, [Case("a", [Said()], [Said()]), Case("b", [Said()], [Said()])],
                        **kw)  # fmt: skip


def test_bad_input_is_one_line_naming_the_fix(tmp_path: Path) -> None:
    device, cloud = _pair(tmp_path / "ungraded.db", grade=False)
    text = _fail(tmp_path / "ungraded.db", "--device", device, "--cloud", cloud)
    assert f"run {device[:8]} is not graded: run `edgeprof grade {device}` first" in text

    device, cloud = _pair(tmp_path / "suites.db", cloud_suite="other")
    text = _fail(tmp_path / "suites.db", "--device", device, "--cloud", cloud)
    assert "different suites" in text and "'routing-demo'" in text and "'other'" in text
    assert "is a cloud run; give a device run as --device" in _fail(
        tmp_path / "suites.db", "--device", cloud, "--cloud", device
    )
    other, _ = _pair(tmp_path / "suites.db")
    assert "ran on the device; give a cloud run as --cloud" in _fail(
        tmp_path / "suites.db", "--device", device, "--cloud", other
    )
    assert "same run" in _fail(tmp_path / "suites.db", "--device", device, "--cloud", device)
    assert "no run 'ZZZ'" in _fail(tmp_path / "suites.db", "--device", device, "--cloud", "ZZZ")

    device, cloud = _pair(tmp_path / "unpriced.db", cloud_params={})
    text = _fail(tmp_path / "unpriced.db", "--device", device, "--cloud", cloud)
    assert "has no price" in text and "--price-in" in text and "--price-out" in text
    done = cli(
        "route",
        "--db",
        tmp_path / "unpriced.db",
        "--device",
        device,
        "--cloud",
        cloud,
        "--requests-per-day",
        str(R),
        *COST_FLAGS,
        "--price-in",
        "1",
        "--price-out",
        "2",
    )
    assert done.exit_code == 0, done.stderr  # fmt: skip

    with Store(tmp_path / "unpriced.db") as store:
        store.db.execute("DELETE FROM expectations")
        store.db.conn.commit()
    text = _fail(tmp_path / "unpriced.db", "--device", device, "--cloud", cloud)
    assert "has no expectations" in text and "edgeprof grade" in text

    text = _fail(tmp_path / "unpriced.db", "--device", device, "--cloud", cloud,
                 "--format-checks", "llm-rubric")  # fmt: skip
    assert "--format-checks takes deterministic check types" in text
    assert "--price-cached-in goes with --price-in and --price-out" in _fail(
        tmp_path / "unpriced.db", "--device", device, "--cloud", cloud, "--price-cached-in", "1"
    )
    assert "--objective must be one of" in _fail(
        tmp_path / "unpriced.db", "--device", device, "--cloud", cloud, "--objective", "best"
    )
    assert "a dedicated device needs a price: give --device-preset" in cli(
        "route", "--db", tmp_path / "unpriced.db", "--device", device, "--cloud", cloud,
        "--requests-per-day", str(R),
    ).stderr  # fmt: skip


def test_a_named_check_type_escalates_too(tmp_path: Path) -> None:
    # icontains needs the expected answer: only when named does its failure escalate (then
    # the cascade knows what the oracle knows)
    named = _report(tmp_path, _six(), format_checks={"is-json", "icontains"})
    assert named.result("cascade: format check").pass_rate.rate == 1.0
    assert named.format_checks == ("icontains", "is-json")


def test_the_python_example_of_docs_hybrid_runs(tmp_path: Path, monkeypatch: Any) -> None:
    text = (Path(__file__).parents[1] / "docs" / "hybrid.md").read_text("utf-8")
    code = text.split("## From Python", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    with Store(tmp_path / "profiles" / "edgeprof.db") as store:
        device, cloud = add_pair(store, _six())
    scope: dict[str, Any] = {"device_run": device, "cloud_run": cloud}
    exec(compile(code, "docs/hybrid.md", "exec"), scope)
    assert scope["report"].protocol.objective == "cheapest-at-floor"
    assert scope["best"].held_out


def test_a_device_a_preset_describes_is_priced_as_that_preset(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    with Store(db) as store:
        device, cloud = add_pair(store, _six(), device_label="Raspberry Pi 5 Model B")
    done = cli("route", "--db", db, "--device", device, "--cloud", cloud, "--requests-per-day",
               "2000", "--json")  # fmt: skip
    assert done.exit_code == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["notes"][0].startswith("priced as preset rpi5-8gb (Raspberry Pi 5 8 GB)")
    figures = {f["name"]: f for f in body["inputs"]}
    assert figures["device_price_usd"]["value"] == 80.0
