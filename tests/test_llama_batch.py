"""Batched decoding on llama.cpp (`run --concurrency N`): the same greedy tokens as each request
alone, energy shared between requests decoded together, the KV cache checked before a run, and
the throughput curve end to end on the demo model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeprof.analysis.energy import SensorSeries, shared_energy_j
from edgeprof.backends.base import BackendOptions, Request
from edgeprof.backends.batching import BatchJob, kv_cells_needed
from edgeprof.backends.llamacpp import LlamaCppBackend, LlamaCppSettings, kv_bytes_per_cell
from edgeprof.measure.workload import load_suite
from tests.builders import answers_without_signals, check_signals, cli, generation

FOUR = Path(__file__).parent / "data" / "four_prompts.jsonl"
S = 1_000_000_000


def _requests(max_tokens: int) -> list[Request]:
    return [Request(p.id, p.messages, max_tokens=max_tokens) for p in load_suite(str(FOUR))]


def test_kv_cells_are_one_longest_request_per_sequence() -> None:
    jobs = [BatchJob(i, [0] * n, 10) for i, n in enumerate((5, 50, 20, 30))]
    assert kv_cells_needed(jobs, 1) == 60
    assert kv_cells_needed(jobs, 2) == 120
    assert kv_cells_needed(jobs, 8) == 480


def test_a_batch_shares_the_energy_of_its_window() -> None:
    """10 W for 4 s; one request alone for 1 s, then with another for 2 s (each gets half),
    then alone again for 1 s: 10 + 10 + 10 = 30 J, over 1 + 1 + 1 = 3 s of the device."""
    watts = SensorSeries("est", "package", "power_w", "estimated",
                         [(t * S // 10, 10.0) for t in range(0, 41)])  # fmt: skip
    energy, seconds = shared_energy_j([watts], [(0, S, 1), (S, 3 * S, 2), (3 * S, 4 * S, 1)])
    assert energy == pytest.approx(30.0, rel=1e-6)
    assert seconds == pytest.approx(3.0)


@pytest.fixture(scope="module")
def backend(demo_model: Path) -> Iterator[LlamaCppBackend]:
    b = LlamaCppBackend(BackendOptions(model=str(demo_model), threads=2, ctx=4096))
    b.load()
    yield b
    b.close()


@pytest.mark.model
@pytest.mark.parametrize("concurrency", [4, 3])
def test_batched_greedy_tokens_match_each_request_alone(
    backend: LlamaCppBackend, concurrency: int
) -> None:
    """All four at once, and three at a time (the fourth joins as the first finishes)."""
    requests = _requests(max_tokens=24)
    alone = [generation(backend, r).text for r in requests]
    results = {id(request): res for request, res in backend.serve(requests, concurrency)}
    assert [results[id(r)].generation.text for r in requests] == alone
    for r in requests:
        res = results[id(r)]
        assert res.generation.output_tokens == len(res.events) > 0
        assert res.t_start_ns < res.events[0][0] <= res.events[-1][0] <= res.t_end_ns
        assert max(n for _, _, n in res.shares) <= concurrency
    # the shares tile the busy span: every instant is split among the requests running then
    start = min(res.t_start_ns for res in results.values())
    end = max(res.t_end_ns for res in results.values())
    shared_s = sum((t1 - t0) / n for res in results.values() for t0, t1, n in res.shares) / 1e9
    assert shared_s == pytest.approx((end - start) / 1e9, rel=1e-6)


@pytest.mark.model
def test_kv_cache_too_small_is_refused_before_the_run(demo_model: Path, tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    res = cli("run", "--concurrency", "8", "--ctx", "256", "--prompts", FOUR, "--db", db)
    assert res.exit_code == 2
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith("edgeprof: error: --concurrency 8 needs"), line
    assert "raise --ctx to" in line and "lower --concurrency" in line
    assert not db.exists()  # nothing recorded
    assert kv_bytes_per_cell(demo_model) == 30 * 3 * (64 + 64) * 2  # 30 layers, 3 KV heads


@pytest.mark.model
def test_concurrency_beyond_the_batch_is_refused_before_the_run(tmp_path: Path) -> None:
    """A decode step holds one token of each sequence: 8 at a time need a batch of 8."""
    db = tmp_path / "p.db"
    res = cli("run", "--concurrency", "8", "--set", "n_batch=4", "--set", "n_ubatch=4",
              "--prompts", FOUR, "--db", db)  # fmt: skip
    assert res.exit_code == 2
    (line,) = res.stderr.strip().splitlines()
    assert "concurrency 8 needs a batch of at least 8 tokens" in line, line
    assert "n_batch=8" in line and not db.exists()
    res = cli("run", "--concurrency", "4", "--set", "n_batch=4", "--set", "n_ubatch=4",
              "--prompts", FOUR, "--db", db, "--max-tokens", "4", "--repetitions", "1",
              "--warmup", "0", "--idle-seconds", "0")  # fmt: skip
    assert res.exit_code == 0, res.stderr


@pytest.mark.model
@pytest.mark.slow
def test_concurrency_curve_end_to_end(tmp_path: Path) -> None:
    png = tmp_path / "curve.png"
    res = cli("run", "--concurrency", "1,4", "--max-tokens", "16", "--repetitions", "1",
              "--warmup", "1", "--prompts", FOUR, "--threads", "2", "--idle-seconds", "0",
              "--db", tmp_path / "p.db", "--plot", png, "--json")  # fmt: skip
    assert res.exit_code == 0, res.stderr
    one, four = json.loads(res.stdout)
    assert (one["concurrency"], four["concurrency"]) == (1, 4)
    for p in (one, four):
        assert p["aggregate_tps"] > 0 and p["j_per_output_token"] > 0 and p["ttft_p95_s"] > 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads(cli("report", tmp_path / "p.db", "--json").stdout)
    batched = next(r for r in report if r["concurrency"] == 4)
    assert batched["n_requests"] == 4 and batched["output_tps_aggregate"] > 0


@pytest.mark.model
def test_a_shared_prefix_is_computed_once_and_copied(demo_model: Path) -> None:
    """With --keep-cache the batch prefills the prompts' common start (a ~320-token system
    prompt and the template's opening) once, in a stream of its own, and copies it to each
    request's stream: every request records those tokens as cached and reads only the rest."""
    from edgeprof.measure.workload import with_system_prompt

    system = (Path(__file__).parent / "data" / "system_prompt_300.txt").read_text("utf-8")
    prompts = with_system_prompt(load_suite(str(FOUR)), system)
    requests = [Request(p.id, p.messages, max_tokens=16) for p in prompts]
    results = {}
    for keep in (False, True):
        b = LlamaCppBackend(
            BackendOptions(model=str(demo_model), threads=2, ctx=8192, keep_cache=keep),
            LlamaCppSettings(),
        )
        b.load()
        try:
            results[keep] = {id(r): res for r, res in b.serve(requests, 4)}
        finally:
            b.close()
    for r in requests:
        cold, warm = results[False][id(r)], results[True][id(r)]
        assert cold.generation.cached_input_tokens == 0
        assert 320 <= warm.generation.cached_input_tokens < warm.generation.input_tokens
        assert warm.generation.input_tokens == cold.generation.input_tokens
        # the copied K/V are what the request would have computed: the same greedy tokens
        assert warm.generation.text == cold.generation.text


@pytest.mark.model
def test_signals_alone_and_batched_and_the_tokens_without_them(
    backend: LlamaCppBackend, demo_model: Path
) -> None:
    """Every answer carries its signals, alone and batched (the same tokens scored on the
    same model: the same figures, to float32 rounding of the batched logits); turned off,
    none, and the greedy tokens are the same."""
    requests = _requests(max_tokens=24)
    alone = [generation(backend, r) for r in requests]
    batched = {id(r): res.generation for r, res in backend.serve(requests, 3)}
    for request, a in zip(requests, alone, strict=True):
        b = batched[id(request)]
        assert b.text == a.text
        sa, sb = check_signals(a), check_signals(b)
        assert sb.tokens == sa.tokens
        for name in ("logprob_mean", "logprob_min", "entropy_mean", "first_margin"):
            # identical on this machine (AVX-512); other kernels may round a batch otherwise
            assert getattr(sb, name) == pytest.approx(getattr(sa, name), abs=0.02), name
    off = LlamaCppBackend(
        BackendOptions(model=str(demo_model), threads=2, ctx=4096), LlamaCppSettings(signals=False)
    )
    plain, plain_batched = answers_without_signals(off, requests, 3)
    assert [g.text for g in plain] == [g.text for g in alone]
    assert [g.output_tokens for g in plain] == [g.output_tokens for g in alone]
    assert [plain_batched[id(r)].text for r in requests] == [g.text for g in alone]
