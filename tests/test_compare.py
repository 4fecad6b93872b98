"""The comparator on profile databases built here (and one real llama.cpp run)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from typer.testing import Result

from edgeprof.decision import prices
from edgeprof.decision.compare import compare, to_dict
from edgeprof.decision.economics import DeviceCosts
from edgeprof.errors import PricingError, ProfileDBError, UsageError
from edgeprof.measure.runner import RunConfig, profile
from edgeprof.report.plots import plot_costs
from edgeprof.store.db import Store
from tests.builders import cli, request_row, write_prompts

# The device run below, by hand:
#   each request: 100 in, 50 out, ttft 0.5 s, e2e 5.5 s, 55 J
#   prefill = 100 / 0.5 = 200 tok/s; decode = 49 / 5.0 = 9.8 tok/s
#   average power = 55 J / 5.5 s = 10 W
#   J/input token = 10 / 200 = 0.05;  J/output token = 10 / 9.8 = 1.0204
# At 100 in / 50 out, $5/$15 per 1M, $600 over 3 years, $0.30/kWh:
#   busy = 0.5 + 50 / 9.8 = 5.60204 s; capacity = 86,400 / 5.60204 = 15,423 requests/day
#   energy = 10 W × 5.60204 s = 56.0204 J = 56.0204 / 3.6e6 × 0.30 = $0.0000046684/request
#   cloud = 0.0005 + 0.00075 = $0.00125/request
#   capital = 600 / 1095 = $0.547945/day; break-even = 0.547945 / 0.0012453316 = 440.0/day
COSTS = DeviceCosts(device_price_usd=600, lifetime_years=3, electricity_usd_per_kwh=0.30)
BUSY_S = 0.5 + 50 / 9.8
BREAK_EVEN = (600 / 1095) / (0.00125 - 10 * BUSY_S / 3.6e6 * 0.30)


def _add_run(
    store: Store,
    backend: str,
    target: str,
    *,
    energy_j: float | None = 55.0,
    cost_usd: float | None = None,
    params: dict[str, Any] | None = None,
    ttft_s: float = 0.5,
) -> str:
    store.upsert_device({"id": "dev1", "label": "test box", "cpu_model": "x", "cores": 2})
    run_id = uuid.uuid4().hex
    store.insert_run(
        {
            "id": run_id,
            "device_id": "dev1",
            "backend": backend,
            "target_kind": "remote" if backend in ("openai", "anthropic") else "device",
            "target": target,
            "status": "complete",
            "params": params or {"threads": 2},
        }
    )
    for seq in range(4):
        store.insert_request(
            request_row(
                run_id, seq, warmup=int(seq == 0), input_tokens=100, output_tokens=50,
                t_start_ns=seq * 6_000_000_000, t_end_ns=seq * 6_000_000_000 + 5_500_000_000,
                ttft_s=ttft_s, prefill_tps=200.0, decode_tps=9.8, e2e_s=5.5,
                energy_j=energy_j if seq else 999.0,  # the warm-up must not count
                energy_method="measured" if energy_j is not None else None,
                cost_usd=cost_usd,
            )
        )  # fmt: skip
    return run_id


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "p.db"
    with Store(path) as store:
        _add_run(store, "llamacpp", "/models/demo.gguf")
    return path


def test_hand_computed_comparison_with_explicit_prices(db: Path) -> None:
    with Store(db) as store:
        c = compare(
            store,
            COSTS,
            requests_per_day=1000,
            input_tokens=100,
            output_tokens=50,
            price_in_usd_per_m=5,
            price_out_usd_per_m=15,
        )
    (dev,) = c.devices
    perf = dev.performance
    assert (perf.prefill_tps, perf.decode_tps) == pytest.approx((200, 9.8))
    assert perf.j_per_input_token == pytest.approx(0.05)
    assert perf.j_per_output_token == pytest.approx(10 / 9.8)
    (pair,) = c.pairs
    r = pair.result
    assert r.cloud_cost_per_request_usd == pytest.approx(0.00125)
    assert r.device_energy_j_per_request == pytest.approx(10 * BUSY_S)
    assert r.break_even_requests_per_day == pytest.approx(BREAK_EVEN)
    assert r.device_capacity_requests_per_day == pytest.approx(86_400 / BUSY_S)
    assert r.verdict.startswith("on-device is cheaper than $5/$15 per 1M above 440 requests/day")
    kinds = {f.name: f.provenance for f in dev.inputs}
    assert kinds == {
        "prefill_tps": "measured",
        "decode_tps": "measured",
        "avg_power_w": "measured",
        "j_per_input_token": "estimated",
        "j_per_output_token": "measured",
        "idle_power_w": "assumed",  # the builder's run has no idle baseline
    }
    assert {f.provenance for f in c.assumptions} == {"assumed"}
    assert {f.provenance for f in c.clouds[0].inputs} == {"assumed"}
    assert len(pair.sensitivity) == 6


def test_one_idle_draw_per_device_pooled_over_its_runs(tmp_path: Path) -> None:
    """Two backends on one device: idle is the device's, so both are charged the mean of the
    two baselines, not each its own few noisy seconds."""
    with Store(tmp_path / "p.db") as store:
        a = _add_run(store, "llamacpp", "m.gguf")
        b = _add_run(store, "onnx", "m.onnx")
        store.update_run(a, {"idle_power_w": 2.0})
        store.update_run(b, {"idle_power_w": 3.0})
        c = compare(
            store, COSTS, requests_per_day=1000, price_in_usd_per_m=5, price_out_usd_per_m=15
        )
    for d in c.devices:
        assert d.performance.idle_power_w == pytest.approx(2.5)
        (idle,) = [f for f in d.inputs if f.name == "idle_power_w"]
        assert (
            idle.value == pytest.approx(2.5)
            and "mean of the idle baselines of 2 runs" in idle.source
        )
    # the same idle draw, so the same idle cost a day for both
    assert len({round(p.result.device_idle_cost_per_day_usd, 12) for p in c.pairs}) == 1


def test_token_counts_default_to_the_runs_means(db: Path) -> None:
    with Store(db) as store:
        c = compare(
            store, COSTS, requests_per_day=1000, price_in_usd_per_m=5, price_out_usd_per_m=15
        )
    assert (c.workload.input_tokens, c.workload.output_tokens) == (100, 50)
    measured = {f.name for f in c.assumptions if f.provenance == "measured"}
    assert measured == {"input_tokens", "output_tokens"}


def test_named_cloud_model_and_cloud_runs_are_priced(db: Path) -> None:
    with Store(db) as store:
        _add_run(store, "openai", "gpt-4o-mini", energy_j=None, cost_usd=0.0001)
        _add_run(store, "openai", "my-private-endpoint-model", energy_j=None, cost_usd=0.0002)
        c = compare(
            store,
            COSTS,
            requests_per_day=1000,
            input_tokens=100,
            output_tokens=50,
            cloud_models=["anthropic:claude-3-5-haiku-latest"],
        )
    names = {t.kind: t for t in c.clouds if t.kind == "model"}
    haiku = prices.lookup_price("anthropic:claude-3-5-haiku-latest")
    assert names["model"].price.output_usd_per_m == haiku.output_usd_per_m
    runs = [t for t in c.clouds if t.kind == "run"]
    listed = next(t for t in runs if "gpt-4o-mini" in t.name)
    mini = prices.lookup_price("gpt-4o-mini", provider="openai")
    assert listed.price.input_usd_per_m == mini.input_usd_per_m
    unknown = next(t for t in runs if "my-private" in t.name)
    # no list price: the cost the run recorded stands in, marked measured
    assert unknown.price.cost_per_request_usd == pytest.approx(0.0002)
    assert unknown.inputs[0].provenance == "measured"
    assert len(c.pairs) == 3
    pair = c.pair(c.devices[0].name, unknown.name)
    assert pair.result.cloud_cost_per_request_usd == pytest.approx(0.0002)


def test_run_without_energy_is_skipped_with_a_note(db: Path) -> None:
    with Store(db) as store:
        _add_run(store, "onnx", "demo.onnx", energy_j=None)
        c = compare(
            store,
            COSTS,
            requests_per_day=10,
            input_tokens=100,
            output_tokens=50,
            price_in_usd_per_m=1,
            price_out_usd_per_m=1,
        )
    assert len(c.devices) == 1
    assert any("no energy figures" in n for n in c.notes)


def test_errors(tmp_path: Path, db: Path) -> None:
    empty = tmp_path / "empty.db"
    with Store(empty) as store, pytest.raises(ProfileDBError, match="no complete runs"):
        compare(store, COSTS, requests_per_day=1, price_in_usd_per_m=1, price_out_usd_per_m=1)
    with Store(db) as store:
        with pytest.raises(UsageError, match="`cloud_models`"):
            compare(store, COSTS, requests_per_day=1)
        with pytest.raises(UsageError, match="both `price_in_usd_per_m` and `price_out_usd_per_m`"):
            compare(store, COSTS, requests_per_day=1, price_in_usd_per_m=1)
        with pytest.raises(PricingError, match="no price for model"):
            compare(store, COSTS, requests_per_day=1, cloud_models=["openai:no-such-model-x"])


def test_plot_is_written(db: Path, tmp_path: Path) -> None:
    with Store(db) as store:
        c = compare(
            store, COSTS, requests_per_day=1000, price_in_usd_per_m=5, price_out_usd_per_m=15
        )
    png = plot_costs(c, tmp_path / "out" / "costs.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 10_000


def test_json_round_trips(db: Path) -> None:
    with Store(db) as store:
        c = compare(
            store, COSTS, requests_per_day=1000, price_in_usd_per_m=5, price_out_usd_per_m=15
        )
    d = json.loads(json.dumps(to_dict(c)))
    assert d["pairs"][0]["result"]["break_even_requests_per_day"] == pytest.approx(BREAK_EVEN)


# -- the command ---------------------------------------------------------------------------


def _cli(*args: str | Path) -> Result:
    """`edgeprof compare ARGS`, in-process."""
    return cli("compare", *args)


BASE = (
    "--requests-per-day",
    "1000",
    "--input-tokens",
    "100",
    "--output-tokens",
    "50",
    "--device-price",
    "600",
    "--lifetime-years",
    "3",
    "--electricity",
    "0.30",
)


def test_cli_tables_verdicts_json_and_plot(db: Path, tmp_path: Path) -> None:
    png = tmp_path / "c.png"
    res = _cli(
        db,
        *BASE,
        "--cloud",
        "openai:gpt-4o-mini",
        "--price-in",
        "5",
        "--price-out",
        "15",
        "--plot",
        png,
    )
    assert res.exit_code == 0, res.output
    assert "on-device is cheaper than $5/$15 per 1M above 440 requests/day" in res.stdout
    assert "Sensitivity" in res.stdout and "lifetime_years" in res.stdout
    assert "measured" in res.stdout and "estimated" in res.stdout and "assumed" in res.stdout
    assert png.exists()
    res = _cli(
        db, *BASE, "--cloud", "openai:gpt-4o-mini", "--price-in", "5", "--price-out", "15", "--json"
    )
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    by_cloud = {p["cloud"]: p for p in d["pairs"]}
    assert set(by_cloud) == {"openai:gpt-4o-mini", "$5/$15 per 1M"}
    explicit = by_cloud["$5/$15 per 1M"]["result"]
    assert explicit["break_even_requests_per_day"] == pytest.approx(BREAK_EVEN)
    # The command prints exactly what the library computes from the same inputs.
    with Store(db) as store:
        c = compare(
            store, COSTS, requests_per_day=1000, input_tokens=100, output_tokens=50,
            cloud_models=["openai:gpt-4o-mini"], price_in_usd_per_m=5, price_out_usd_per_m=15,
        )  # fmt: skip
    # ...beside task quality, which the command adds (docs/quality.md): no checks here.
    task = d.pop("task_quality")
    assert task["closing"] == [
        "Task quality not measured: the suite has no expectations (docs/quality.md)."
    ]
    assert d == json.loads(json.dumps(to_dict(c), default=str))
    assert len(by_cloud["openai:gpt-4o-mini"]["sensitivity"]) == 6


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (("--price-in", "-1", "--price-out", "15"), "--price-in"),
        (("--cloud", "openai:no-such-model-x"), "no price for model"),
    ],
)
def test_cli_bad_prices(db: Path, extra: tuple[str, ...], needle: str) -> None:
    res = _cli(db, *BASE, *extra)
    assert res.exit_code == 2
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith("edgeprof: error: ") and needle in line


def test_cli_bad_costs_and_databases(db: Path, tmp_path: Path) -> None:
    prices_args = ("--price-in", "5", "--price-out", "15")
    zero_life = [a if a != "3" else "0" for a in BASE]
    cases: list[tuple[tuple[str | Path, ...], str]] = [
        ((db, *zero_life, *prices_args), "--lifetime-years"),
        ((db, *[a if a != "600" else "-5" for a in BASE], *prices_args), "--device-price"),
        ((tmp_path / "missing.db", *BASE, *prices_args), "does not exist"),
        (
            (db, "--requests-per-day", "5", "--electricity", "0.3", *prices_args),
            "--deployment owned",
        ),
    ]
    empty = tmp_path / "empty.db"
    Store(empty).close()
    cases.append(((empty, *BASE, *prices_args), "no complete runs"))
    for args, needle in cases:
        res = _cli(*args)
        assert res.exit_code == 2, (args, res.stdout)
        (line,) = res.stderr.strip().splitlines()
        assert line.startswith("edgeprof: error: ") and needle in line, line


def test_cli_owned_device(db: Path) -> None:
    res = _cli(
        db,
        "--requests-per-day",
        "5",
        "--electricity",
        "0.3",
        "--owned",
        "--price-in",
        "5",
        "--price-out",
        "15",
        "--json",
    )
    assert res.exit_code == 0, res.output
    r = json.loads(res.stdout)["pairs"][0]["result"]
    assert r["device_capital_usd_per_day"] == 0 and r["break_even_requests_per_day"] == 0
    assert "already owned" in r["verdict"]


def test_without_request_timing_energy_is_charged_to_output_tokens(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    with Store(path) as store:
        run_id = _add_run(store, "llamacpp", "demo.gguf")
        store.db.execute("UPDATE requests SET e2e_s = NULL WHERE run_id = ?", [run_id])
        store.db.conn.commit()
        c = compare(
            store,
            COSTS,
            requests_per_day=1000,
            input_tokens=100,
            output_tokens=50,
            price_in_usd_per_m=5,
            price_out_usd_per_m=15,
        )
    perf = c.devices[0].performance
    # 55 J over 50 output tokens, nothing charged per input token
    assert (perf.j_per_input_token, perf.j_per_output_token) == (0.0, pytest.approx(1.1))
    assert c.pairs[0].result.device_energy_j_per_request == pytest.approx(55)


@pytest.mark.model
@pytest.mark.slow
def test_real_llamacpp_run_of_the_demo_model(tmp_path: Path) -> None:
    db, png = tmp_path / "demo.db", tmp_path / "demo.png"
    suite = write_prompts(tmp_path / "two.jsonl", ["Say hello.", "Name a colour."])
    profile(RunConfig(max_tokens=8, repetitions=1, idle_seconds=0.5, prompts=str(suite), db=db))
    res = _cli(
        db,
        *BASE,
        "--cloud",
        "openai:gpt-4o-mini",
        "--price-in",
        "5",
        "--price-out",
        "15",
        "--json",
        "--plot",
        png,
    )
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert png.stat().st_size > 10_000
    assert {p["cloud"] for p in d["pairs"]} == {"openai:gpt-4o-mini", "$5/$15 per 1M"}
    (device,) = d["devices"]
    assert device["backend"] == "llamacpp"
    perf = device["performance"]
    assert perf["prefill_tps"] > 0 and perf["decode_tps"] > 0 and perf["j_per_output_token"] > 0
    for p in d["pairs"]:
        r = p["result"]
        busy = 100 / perf["prefill_tps"] + 50 / perf["decode_tps"]
        assert r["device_busy_s_per_request"] == pytest.approx(busy)
        assert r["verdict"].startswith(("on-device is cheaper", "no break-even"))
        if r["break_even_requests_per_day"] is not None:
            # the two daily costs meet at the break-even volume
            be = r["break_even_requests_per_day"]
            device_day = (
                r["device_fixed_usd_per_device_day"] + be * r["device_energy_cost_per_request_usd"]
            )
            assert device_day == pytest.approx(be * r["cloud_cost_per_request_usd"])


def test_a_cached_shared_prefix_by_hand(db: Path) -> None:
    """100 input tokens of which 60 are a shared system prompt, 50 output. The cloud bills the
    60 at its cached-input price; the device keeps their KV state and prefills only 40."""
    model = prices.lookup_price("openai:gpt-4o-mini")
    assert model.cached_input_usd_per_m is not None  # the catalog lists one for this model
    args: dict[str, Any] = {"requests_per_day": 1000, "input_tokens": 100, "output_tokens": 50,
                            "cloud_models": ["openai:gpt-4o-mini"]}  # fmt: skip
    with Store(db) as store:
        cold = compare(store, COSTS, **args)
        cached = compare(store, COSTS, shared_prefix_tokens=60, **args)
        device_only = compare(store, COSTS, shared_prefix_tokens=60, cache_cloud=False, **args)
    (p0,), (p1,), (p2,) = cold.pairs, cached.pairs, device_only.pairs
    cloud_cold = (100 * model.input_usd_per_m + 50 * model.output_usd_per_m) / 1e6
    cloud_cached = (40 * model.input_usd_per_m + 60 * model.cached_input_usd_per_m
                    + 50 * model.output_usd_per_m) / 1e6  # fmt: skip
    assert p0.result.cloud_cost_per_request_usd == pytest.approx(cloud_cold)
    assert p1.result.cloud_cost_per_request_usd == pytest.approx(cloud_cached)
    assert p2.result.cloud_cost_per_request_usd == pytest.approx(cloud_cold)
    # device: prefill 200 tok/s, decode 9.8 tok/s (the builder's run)
    assert p0.result.device_busy_s_per_request == pytest.approx(100 / 200 + 50 / 9.8)
    assert p1.result.device_busy_s_per_request == pytest.approx(40 / 200 + 50 / 9.8)
    assert p1.cloud_caching_saves_usd_per_day == pytest.approx(1000 * (cloud_cold - cloud_cached))
    assert p1.device_caching_saves_usd_per_day == pytest.approx(
        p0.result.device_cost_per_day_usd - p1.result.device_cost_per_day_usd
    )
    assert p1.device_caching_saves_usd_per_day > 0
    assert p0.cloud_caching_saves_usd_per_day == 0 and p2.cloud_caching_saves_usd_per_day == 0
    (prefix,) = [f for f in cached.assumptions if f.name == "shared_prefix_tokens"]
    assert prefix.value == 60 and "device KV cache and cloud cached-input price" in prefix.source


def test_compare_says_what_caching_saved(db: Path) -> None:
    res = cli("compare", db, "--requests-per-day", "1000", "--device-price", "100",
              "--lifetime-years", "3", "--electricity", "0.2", "--input-tokens", "100",
              "--output-tokens", "50", "--cloud", "openai:gpt-4o-mini",
              "--shared-prefix-tokens", "60")  # fmt: skip
    assert res.exit_code == 0, res.stderr
    assert "caching 60 shared tokens saves" in res.stdout
    assert "openai:gpt-4o-mini (at its cached-input price)" in res.stdout
    res = cli("compare", db, "--requests-per-day", "1000", "--electricity", "0.2",
              "--deployment", "owned", "--input-tokens", "100", "--output-tokens", "50",
              "--cloud", "openai:gpt-4o-mini", "--shared-prefix-tokens", "200")  # fmt: skip
    assert res.exit_code == 2 and "--shared-prefix-tokens" in res.stderr


def test_capacity_comes_from_the_throughput_curve(tmp_path: Path) -> None:
    """One target profiled at concurrency 1, 4 and 8 (each request: 200/9.8 tok/s under that
    load, as the builder writes it; 55 J per request). p95 TTFT 0.5, 1.5 and 3 s: with the
    default 2 s the curve gives concurrency 4, and the device serves 4 at once."""
    with Store(tmp_path / "p.db") as store:
        for n, ttft in ((1, 0.5), (4, 1.5), (8, 3.0)):
            _add_run(store, "llamacpp", "/models/demo.gguf", ttft_s=ttft,
                     params={"threads": 2, "concurrency": n, "max_tokens": 50})  # fmt: skip
        c = compare(store, COSTS, requests_per_day=1000, input_tokens=100, output_tokens=50,
                    price_in_usd_per_m=5, price_out_usd_per_m=15)  # fmt: skip
        strict = compare(store, COSTS, requests_per_day=1000, input_tokens=100,
                         output_tokens=50, price_in_usd_per_m=5, price_out_usd_per_m=15,
                         max_ttft_s=1.0)  # fmt: skip
    (dev,) = c.devices
    assert dev.performance.concurrency == 4
    (pair,) = c.pairs
    assert pair.result.device_capacity_requests_per_day == pytest.approx(4 * 86_400 / BUSY_S)
    # each request's share of the device: the run's power (3 × 55 J over the span of its
    # measured requests, 6 s to 23.5 s) over 4 requests at once, per decoded token
    assert dev.performance.j_per_output_token == pytest.approx(3 * 55 / 17.5 / 4 / 9.8)
    (note,) = [n for n in c.notes if "throughput curve" in n]
    assert "1: 0.50 s, 4: 1.50 s, 8: 3.00 s" in note and "concurrency 4" in note
    assert "default; set --max-ttft-s" in note
    from edgeprof.decision.verdict import decision_rows, verdict_paragraph

    _, words = verdict_paragraph(c, decision_rows(c), runs=[], device_name="test box",
                                 energy=[], max_ttft_s=None, suite="demo")  # fmt: skip
    assert "capacity assumes 4 requests decoded together" in words
    (one,) = strict.devices
    assert one.performance.concurrency == 1
    assert strict.pairs[0].result.device_capacity_requests_per_day == pytest.approx(86_400 / BUSY_S)
