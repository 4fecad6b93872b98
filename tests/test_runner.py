"""The runner end to end, in-process and in seconds, on the fake backend (tests/fakes.py):
rows and their order, warm-up handling, timing against the fake's configured rates, energy
attribution, concurrency, abort, failure, the summary and the backend registry."""

from __future__ import annotations

import itertools
import json
import statistics
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from edgeprof.analysis.energy import build_series, window_energy
from edgeprof.analysis.summary import summarize_run
from edgeprof.backends import (
    Backend,
    BackendOptions,
    Generation,
    ModelInfo,
    Request,
    TokenEvent,
    backend_class,
    backend_names,
    create_backend,
    register_backend,
    unregister_backend,
)
from edgeprof.errors import UsageError
from edgeprof.measure.device import fingerprint
from edgeprof.measure.runner import RunConfig, profile
from edgeprof.measure.workload import load_suite
from edgeprof.samplers import SensorEnv
from edgeprof.store import Store
from tests.builders import cli, loose, write_prompts
from tests.fakes import FakeBackend, token_text

# Two prompts of different lengths, so a mean over the wrong rows shows. Input tokens are
# words (the fake's tokenizer): 4, and 2 (system) + 7.
PROMPTS: list[str | dict[str, str]] = [
    "Say hello to everyone.",
    {"name": "long", "system": "Be brief.", "prompt": "Name three colours of the rainbow please."},
]
WORDS = [4, 9]
TDP_W = 10.0  # the estimator's power stays within [0.1, 1] x TDP
P_MIN, P_MAX = 0.1 * TDP_W * (1 - 1e-9), TDP_W * (1 + 1e-9)  # with room for rounding
RATE = 400.0  # fake decode tok/s
TTFT_S = 0.02
MAX_TOKENS = 32
# time.sleep never wakes early, so measured decode tok/s is at most RATE and TTFT at least
# TTFT_S; a late wake-up (a busy machine) moves them the other way, by this much at most.
DECODE_TOLERANCE = 0.15  # the mean decode rate is within 15 % below RATE
TTFT_SLACK_S = 0.010  # the median TTFT is within 10 ms above TTFT_S


@pytest.fixture()
def prompts(tmp_path: Path) -> Path:
    return write_prompts(tmp_path / "two.jsonl", PROMPTS)


@pytest.fixture()
def db(tmp_path: Path) -> Path:
    """A profile database that already knows this device's memory bandwidth, as after a first
    run, so each test skips the ~1 s bandwidth benchmark (test_first_run_measures_... runs it)."""
    path = tmp_path / "p.db"
    with Store(path) as store:
        store.upsert_device(
            {**fingerprint(SensorEnv.from_environ().sys_root), "mem_bandwidth_gbs": 10.0}
        )
    return path


def config(db: Path, prompts: Path, **kw: Any) -> RunConfig:
    settings = {"tokens_per_s": RATE, "ttft_s": TTFT_S, **kw.pop("settings", {})}
    base: dict[str, Any] = {
        "backend": "fake", "prompts": str(prompts), "db": db, "repetitions": 2, "warmup": 1,
        "max_tokens": MAX_TOKENS, "hz": 20.0, "idle_seconds": 0.0, "tdp_w": TDP_W,
        # The estimator on every machine, so energy is `estimated` with a known TDP bound.
        "sensors": ["estimate"],
    }  # fmt: skip
    return RunConfig(**{**base, **kw}, settings=settings)


def only_run(db: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The database's one run and its requests (for runs that raised instead of returning)."""
    with Store(db) as store:
        (run,) = store.runs()
        return dict(run), loose(store.requests(run["id"]))


def max_overlap(rows: list[dict[str, Any]]) -> int:
    """The most request windows open at one instant."""
    edges = sorted(
        [(r["t_start_ns"], 1) for r in rows] + [(r["t_end_ns"], -1) for r in rows],
        key=lambda e: (e[0], e[1]),  # an end before a start at the same instant
    )
    return max(itertools.accumulate(d for _, d in edges))


def test_full_run_rows_order_warmup_and_timing(db: Path, prompts: Path) -> None:
    run_id = profile(config(db, prompts))
    suite = load_suite(str(prompts))
    words = {p.id: n for p, n in zip(suite, WORDS, strict=True)}
    with Store(db) as store:
        (run,) = store.runs([run_id])
        rows = loose(store.requests(run_id))
    assert run["status"] == "complete" and run["error"] is None and run["ended_at"]
    assert (run["backend"], run["target_kind"], run["target"]) == ("fake", "device", "fake-model")
    assert run["params"]["tokens_per_s"] == RATE and run["params"]["max_tokens"] == MAX_TOKENS
    assert FakeBackend.last is not None and FakeBackend.last.closed

    # One warm-up (the first prompt), then the suite twice in order; seq follows time.
    assert len(rows) == 1 + 2 * len(suite)
    assert [r["seq"] for r in rows] == list(range(len(rows)))
    assert [r["warmup"] for r in rows] == [1, 0, 0, 0, 0]
    assert [r["repetition"] for r in rows] == [0, 0, 0, 1, 1]
    assert [r["prompt_id"] for r in rows] == [suite[0].id] + [p.id for p in suite] * 2
    starts = [r["t_start_ns"] for r in rows]
    assert starts == sorted(starts)
    assert all(a["t_end_ns"] <= b["t_start_ns"] for a, b in itertools.pairwise(rows))

    for r in rows:
        assert r["input_tokens"] == words[r["prompt_id"]]
        assert r["output_tokens"] == MAX_TOKENS and r["finish_reason"] == "length"
        assert r["output_text"] == "".join(token_text(i) for i in range(MAX_TOKENS))
        assert r["error"] is None and r["token_count_method"] == "tokenizer"
        assert r["ttft_s"] >= TTFT_S and r["decode_tps"] <= RATE * 1.001
        assert r["prefill_tps"] == pytest.approx(r["input_tokens"] / r["ttft_s"])
        # e2e: TTFT, then 31 gaps at the decode rate the row reports.
        decode_s = (MAX_TOKENS - 1) / r["decode_tps"]
        assert r["e2e_s"] == pytest.approx(r["ttft_s"] + decode_s, rel=1e-3)
    measured = [r for r in rows if not r["warmup"]]
    assert statistics.mean(r["decode_tps"] for r in measured) >= RATE * (1 - DECODE_TOLERANCE)
    assert statistics.median(r["ttft_s"] for r in measured) <= TTFT_S + TTFT_SLACK_S


def test_first_run_measures_the_devices_bandwidth(tmp_path: Path, prompts: Path) -> None:
    db = tmp_path / "fresh.db"
    run_id = profile(config(db, prompts, repetitions=1, warmup=0))
    with Store(db) as store:
        (run,) = store.runs([run_id])
        device = store.device(run["device_id"])
    assert device is not None and device["mem_bandwidth_gbs"] > 0


def test_recorder_samples_and_estimated_energy_cover_each_request(db: Path, prompts: Path) -> None:
    run_id = profile(config(db, prompts, idle_seconds=0.2))
    with Store(db) as store:
        (run,) = store.runs([run_id])
        rows = loose(store.requests(run_id))
        sensors = loose(store.sensors(run_id))
        samples = list(store.samples(run_id))
        summary = summarize_run(store, run_id)
    power = [s for s in sensors if s["metric"] == "power_w"]
    assert [(s["sensor"], s["method"]) for s in power] == [("estimate:cpu", "estimated")]
    assert f"TDP {TDP_W:g} W (--tdp-w)" in power[0]["detail"]
    assert {s["metric"] for s in samples} >= {"power_w", "rss_bytes"}

    # The idle baseline came from the estimator too, inside its TDP bounds.
    assert run["idle_method"] == "estimated" and run["idle_power_w"] is not None
    assert P_MIN <= run["idle_power_w"] <= P_MAX

    # Each request's energy, integrated again from the stored samples over its window,
    # is the energy the runner attributed when it ended: nothing outside the window, no gap.
    series = build_series(sensors, samples)
    for r in rows:
        assert r["energy_method"] == "estimated" and r["energy_j"] > 0
        again = window_energy(series, r["t_start_ns"], r["t_end_ns"])
        assert again.method == "estimated"
        assert again.energy_j == pytest.approx(r["energy_j"], rel=1e-9)
        duration_s = (r["t_end_ns"] - r["t_start_ns"]) / 1e9
        assert r["avg_power_w"] == pytest.approx(r["energy_j"] / duration_s)
        assert P_MIN <= r["avg_power_w"] <= P_MAX
        net = max(0.0, r["energy_j"] - run["idle_power_w"] * duration_s)
        assert r["energy_net_j"] == pytest.approx(net, abs=1e-12)
        assert r["peak_rss_bytes"] > 0
    # Samples were taken at both edges of every window (the runner's marks).
    times = sorted(s["t_ns"] for s in samples if s["metric"] == "power_w")
    for r in rows:
        assert min(times) <= r["t_start_ns"] and max(times) >= r["t_end_ns"]

    measured = [r for r in rows if not r["warmup"]]
    assert summary.energy_method == "estimated"
    assert summary.energy_j == pytest.approx(sum(r["energy_j"] for r in measured))
    assert summary.j_per_output_token == pytest.approx(
        summary.energy_j / sum(r["output_tokens"] for r in measured)
    )


def test_concurrent_requests_overlap_and_every_row_lands(db: Path, prompts: Path) -> None:
    """A remote endpoint: `concurrency` requests in flight from parallel threads."""
    run_id = profile(config(db, prompts, repetitions=3, concurrency=3, backend="fake-remote"))
    with Store(db) as store:
        (run,) = store.runs([run_id])
        rows = loose(store.requests(run_id))
    assert run["status"] == "complete" and run["params"]["concurrency"] == 3
    assert len(rows) == 1 + 3 * 2
    assert sorted(r["seq"] for r in rows) == list(range(7))
    assert all(r["output_tokens"] == MAX_TOKENS and r["error"] is None for r in rows)
    measured = [r for r in rows if not r["warmup"]]
    # Three requests in flight at once, as recorded by the runner and seen by the backend;
    # the warm-up ran alone, before them.
    assert max_overlap(measured) == 3
    assert FakeBackend.last is not None and FakeBackend.last.max_in_flight == 3
    warm = next(r for r in rows if r["warmup"])
    assert warm["t_end_ns"] <= min(r["t_start_ns"] for r in measured)


def test_a_device_backend_that_cannot_batch_refuses_concurrency(db: Path, prompts: Path) -> None:
    """N threads on one device context would measure contention, not serving: refused before
    anything is recorded (llama.cpp batches instead, tests/test_llama_batch.py)."""
    with pytest.raises(UsageError, match="cannot decode several requests in one batch"):
        profile(config(db, prompts, concurrency=2))
    with Store(db) as store:
        assert not store.runs()


def test_ctrl_c_leaves_an_aborted_run_with_its_rows(db: Path, prompts: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        profile(config(db, prompts, settings={"interrupt_at_request": 4}))
    run, rows = only_run(db)
    assert run["status"] == "aborted" and run["error"] == "interrupted (Ctrl-C)"
    assert run["ended_at"]
    assert [r["seq"] for r in rows] == [0, 1, 2]  # the three requests before the interrupt
    assert all(r["output_tokens"] == MAX_TOKENS for r in rows)
    with Store(db) as store:
        assert store.count("samples") > 0  # the recorder's buffer was flushed
    assert FakeBackend.last is not None and FakeBackend.last.closed


def test_a_crash_leaves_a_failed_run_with_the_error(db: Path, prompts: Path) -> None:
    with pytest.raises(RuntimeError, match="crashed at request 3"):
        profile(config(db, prompts, settings={"fail_at_request": 3}))
    run, rows = only_run(db)
    assert run["status"] == "failed"
    assert run["error"] == "RuntimeError: fake backend crashed at request 3"
    assert len(rows) == 2 and run["ended_at"]


def test_a_failed_request_is_stored_and_the_run_goes_on(db: Path, prompts: Path) -> None:
    # Call 2 is the first measured request (call 1 is the warm-up).
    run_id = profile(config(db, prompts, settings={"fail_at_request": 2, "fail_mode": "return"}))
    with Store(db) as store:
        (run,) = store.runs([run_id])
        rows = loose(store.requests(run_id))
        summary = summarize_run(store, run_id)
    assert run["status"] == "complete" and len(rows) == 5
    bad = rows[1]
    assert bad["error"] == "fake error at 2" and bad["finish_reason"] == "error"
    assert bad["output_tokens"] == 0 and bad["ttft_s"] is None and bad["decode_tps"] is None
    assert all(r["error"] is None for r in rows if r is not bad)
    assert summary.n_requests == 4 and summary.n_errors == 1
    assert len(summary.decode_tps_values) == 3  # the failed request is not averaged


def test_summary_is_computed_from_the_measured_rows(db: Path, prompts: Path) -> None:
    run_id = profile(config(db, prompts, repetitions=3, label="fake-run"))
    with Store(db) as store:
        rows = loose(store.requests(run_id))
        summary = summarize_run(store, run_id)
    measured = [r for r in rows if not r["warmup"]]
    decode = [r["decode_tps"] for r in measured]
    assert (summary.run_id, summary.backend, summary.status) == (run_id, "fake", "complete")
    assert (summary.label, summary.max_tokens, summary.concurrency) == ("fake-run", MAX_TOKENS, 1)
    assert (summary.n_requests, summary.n_warmup, summary.n_errors) == (6, 1, 0)
    assert summary.decode_tps_values == decode
    assert summary.decode_tps_mean == pytest.approx(statistics.mean(decode))
    assert summary.decode_tps_sd == pytest.approx(statistics.stdev(decode))
    assert summary.ttft_p50_s == pytest.approx(statistics.median(r["ttft_s"] for r in measured))
    assert summary.output_tokens_total == MAX_TOKENS * 6
    # The warm-up (the short prompt) is left out: with it the mean would be lower.
    assert summary.mean_input_tokens == pytest.approx(statistics.mean(WORDS))
    assert statistics.mean(r["input_tokens"] for r in rows) != pytest.approx(statistics.mean(WORDS))
    assert summary.decode_tps_mean is not None  # every measured request decoded
    assert RATE * (1 - DECODE_TOLERANCE) <= summary.decode_tps_mean <= RATE * 1.001


def test_fake_settings_are_checked_like_any_backends(db: Path, prompts: Path) -> None:
    with pytest.raises(UsageError, match="does not take speed"):
        profile(config(db, prompts, settings={"speed": 3}))
    with pytest.raises(UsageError, match="`tokens_per_s` must be float"):
        profile(config(db, prompts, settings={"tokens_per_s": "fast"}))
    with Store(db) as store:
        assert store.runs() == []  # refused before any run was recorded


# -- the registry, as a third-party package uses it ---------------------------------------


class EchoBackend(Backend):
    """A minimal third-party backend: echoes the prompt's words back, one token each."""

    name: ClassVar[str] = "thirdparty_echo"

    def load(self) -> ModelInfo:
        return ModelInfo(target="echo")

    def generate(self, request: Request) -> Generator[TokenEvent, None, Generation]:
        words = request.messages[-1]["content"].split()[: request.max_tokens]
        for w in words:
            yield TokenEvent(time.perf_counter_ns(), w)
        return Generation(len(words), len(words), text="".join(words), finish_reason="stop")


@pytest.fixture()
def echo_registered() -> Iterator[str]:
    import edgeprof.cli  # noqa: F401 - the app exists before the registration, as in a script

    register_backend(EchoBackend.name, EchoBackend)
    yield EchoBackend.name
    unregister_backend(EchoBackend.name)  # keep other tests' registry as it was


def test_a_registered_backend_runs_through_the_public_path(
    echo_registered: str, db: Path, prompts: Path
) -> None:
    assert echo_registered in backend_names() and "fake" in backend_names()
    assert backend_class(echo_registered) is EchoBackend
    backend = create_backend(echo_registered, BackendOptions())
    assert isinstance(backend, EchoBackend) and backend.runs_locally
    with pytest.raises(UsageError, match="thirdparty_echo backend does not take"):
        create_backend(echo_registered, BackendOptions(settings={"temperature": 1.0}))
    done = cli("run", "--backend", echo_registered, "--prompts", prompts, "--db", db,
               "--repetitions", "1", "--warmup", "0", "--idle-seconds", "0",
               "--sensors", "estimate", "--json")  # fmt: skip
    assert done.exit_code == 0, done.output
    with Store(db) as store:
        (run,) = store.runs()
        rows = loose(store.requests(run["id"]))
    assert run["backend"] == echo_registered and run["status"] == "complete"
    assert [r["output_text"] for r in rows] == [
        "".join(p.messages[-1]["content"].split()) for p in load_suite(str(prompts))
    ]


def test_a_registered_backend_is_listed_with_its_kind_and_settings(echo_registered: str) -> None:
    done = cli("backends", "--json")
    assert done.exit_code == 0, done.output
    listed = {b["name"]: b for b in json.loads(done.stdout)["backends"]}
    assert listed[echo_registered]["kind"] == "device"
    assert listed["llamacpp"]["kind"] == "device" and listed["openai"]["kind"] == "remote"
    n_batch = next(s for s in listed["llamacpp"]["settings"] if s["name"] == "n_batch")
    assert n_batch == {"name": "n_batch", "type": "int", "default": 512}
