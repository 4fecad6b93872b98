"""End to end: a real OpenAI-compatible server (llama.cpp's) and the tests' own server, driven
through the runner and the command line, checking what lands in the profile database."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import Result

from edgeprof.measure.runner import RunConfig, profile
from edgeprof.store.db import Store
from tests.builders import cli, loose, write_prompts
from tests.cloud_fixtures import FAKE_KEY, drain, make_backend, request
from tests.cloudserver import CloudServer, chunk_text


@pytest.fixture()
def prompts(tmp_path: Path) -> Path:
    return write_prompts(
        tmp_path / "two.jsonl",
        ["Name a colour.", {"name": "b", "system": "Be brief.", "prompt": "Count to three."}],
    )


@pytest.mark.model
@pytest.mark.server
def test_openai_backend_against_llama_cpp_server(llama_server: str) -> None:
    b = make_backend("openai", "smollm2", llama_server)
    info = b.load()
    assert info.extra["base_url"] == llama_server + "/v1"
    events, gen = drain(b, request(max_tokens=8))
    assert gen.error is None and gen.finish_reason in ("stop", "length")
    assert events and gen.text == "".join(e.text for e in events)
    assert sum(e.n_tokens for e in events) == gen.output_tokens
    # llama-cpp-python's server sends no usage in streams: the counts are flagged.
    assert gen.token_count_method == "estimated"
    if gen.finish_reason == "length":
        assert gen.output_tokens == 8
    # it does send log-probabilities, asked of a remote target: one entry per token
    assert gen.signals is not None and gen.signals.source == "api-top-logprobs"
    if gen.finish_reason == "length":
        assert gen.signals.tokens == 8
    b.close()


@pytest.mark.model
@pytest.mark.server
def test_the_servers_logprobs_are_the_logits_edgeprof_reads(llama_server: str) -> None:
    """The same model answering the same prompt through llama.cpp's server (its `logprobs`,
    top 5) and in edgeprof's own decode loop (the whole distribution): the same tokens, each
    with the same log-probability, the same first margin (the top two are in the top 5); the
    server's entropy sees 5 or 6 tokens of 49,152 (its top 5 and the chosen one), so it is
    lower."""
    from edgeprof.backends import BackendOptions, Request, create_backend
    from edgeprof.measure.workload import load_suite

    prompt = load_suite()[0]  # "The capital of Australia is Canberra." and EOG: 7 tokens
    req = Request(prompt.id, prompt.messages, max_tokens=12)
    server = make_backend("openai", "smollm2", llama_server)
    server.load()
    _, api = drain(server, req)
    server.close()
    local = create_backend("llamacpp", BackendOptions(threads=1, ctx=1024))
    local.load()
    _, own = drain(local, req)
    local.close()
    assert api.text == own.text and own.finish_reason == "stop"
    a, o = api.signals, own.signals
    assert a is not None and o is not None
    assert (a.source, o.source) == ("api-top-logprobs", "logits")
    assert a.tokens == o.tokens == own.output_tokens  # the EOG step counted by neither
    assert a.logprob_mean == pytest.approx(o.logprob_mean, abs=1e-4)
    assert a.logprob_min == pytest.approx(o.logprob_min, abs=1e-4)
    assert a.first_margin == pytest.approx(o.first_margin, abs=1e-4)
    assert a.entropy_mean is not None and o.entropy_mean is not None
    assert 0 < a.entropy_mean < o.entropy_mean


@pytest.mark.model
@pytest.mark.server
def test_without_usage_the_gguf_tokenizer_counts_exactly(llama_server: str) -> None:
    """The server serves the demo GGUF and reports no usage; given that GGUF as `tokenizer`,
    the counts are the model's own, not an estimate."""
    from edgeprof.models.files import demo_model_path
    from edgeprof.models.tokens import load_vocab, prompt_tokens

    b = make_backend("openai", "smollm2", llama_server, tokenizer=str(demo_model_path()))
    info = b.load()
    assert info.extra["token_counter"] == f"gguf:{demo_model_path().name}"
    req = request(max_tokens=12)
    events, gen = drain(b, req)
    b.close()
    assert gen.error is None and gen.token_count_method == "tokenizer"
    vocab = load_vocab(demo_model_path())
    assert gen.input_tokens == len(prompt_tokens(vocab, req.messages))
    if gen.finish_reason == "length":  # the server stopped at exactly max_tokens
        assert gen.output_tokens == 12
    assert sum(e.n_tokens for e in events) == gen.output_tokens


def _run(
    db: Path, prompts: Path, model: str, base_url: str, *, backend: str = "openai",
    repetitions: int = 1, concurrency: int = 1,
) -> str:  # fmt: skip
    config = RunConfig(
        backend=backend, model=model, prompts=str(prompts), repetitions=repetitions, warmup=0,
        max_tokens=16, idle_seconds=0, db=db, concurrency=concurrency,
        settings={"base_url": base_url, "price_in_usd_per_m": 5.0, "price_out_usd_per_m": 15.0,
                  "on_device": False},  # a stand-in for a cloud API, though on loopback
    )  # fmt: skip
    return profile(config)


def _rows(db: Path, run_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    with Store(db) as store:
        return dict(store.runs([run_id])[0]), loose(store.requests(run_id))


@pytest.mark.model
@pytest.mark.server
def test_cli_run_against_llama_cpp_server_lands_beside_local_runs(
    llama_server: str, prompts: Path, tmp_path: Path
) -> None:
    db = tmp_path / "p.db"
    common = ["--prompts", str(prompts), "--repetitions", "1", "--warmup", "0",
              "--max-tokens", "8", "--idle-seconds", "0", "--db", str(db)]  # fmt: skip
    cloud = cli(
        "run", "--backend", "openai", "--model", "smollm2", "--base-url", llama_server,
        "--price-in", "5", "--price-out", "15", "--remote", "--json", *common,
    )  # fmt: skip
    assert cloud.exit_code == 0, cloud.output
    local = cli("run", *common)
    assert local.exit_code == 0, local.output
    with Store(db) as store:
        runs = {r["backend"]: r for r in store.runs()}
        assert set(runs) == {"openai", "llamacpp"}
        rows = loose(store.requests(runs["openai"]["id"]))
    assert len(rows) == 2
    for row in rows:
        assert row["error"] is None and row["output_tokens"] > 0
        assert row["ttft_s"] > 0 and row["output_text"]
        expected = (row["input_tokens"] * 5 + row["output_tokens"] * 15) / 1e6
        assert row["cost_usd"] == pytest.approx(expected)
        # the server's log-probabilities, one per token (8: it stopped at the limit)
        assert row["signal_source"] == "api-top-logprobs"
        if row["finish_reason"] == "length":
            assert row["signal_tokens"] == 8
        assert row["logprob_min"] <= row["logprob_mean"] <= 0 <= row["entropy_mean"]
    params = runs["openai"]["params"]
    params = json.loads(params) if isinstance(params, str) else params
    assert params["price_source"] == "user" and params["price_in_usd_per_m"] == 5.0
    assert params["logprobs"] is True
    summary = json.loads(cloud.stdout)
    assert summary["cost_usd_total"] == pytest.approx(sum(r["cost_usd"] for r in rows))


@pytest.mark.parametrize("name", ["openai", "anthropic"])
def test_db_after_429_and_500_retries(
    name: str, cloud_server: CloudServer, prompts: Path, tmp_path: Path
) -> None:
    db = tmp_path / "p.db"
    for spec in (f"fail=429&retry_after=1&chunks=4&id=db{name}", f"fail=500&chunks=4&id=db{name}"):
        run, rows = _rows(db, _run(db, prompts, spec, cloud_server.base_url, backend=name))
        assert run["status"] == "complete" and len(rows) == 2
        assert cloud_server.attempts[spec] == 3  # one failed attempt, then two requests
        for row in rows:
            assert row["error"] is None and row["output_tokens"] == 4
            assert row["token_count_method"] == "api"
            assert row["cost_usd"] == pytest.approx((row["input_tokens"] * 5 + 4 * 15) / 1e6)
        first = min(rows, key=lambda r: r["seq"])
        if spec.startswith("fail=429"):
            assert first["ttft_s"] >= 1.0  # the Retry-After wait is part of what a user waits


@pytest.mark.parametrize("name", ["openai", "anthropic"])
@pytest.mark.parametrize(
    ("spec", "message", "text"),
    [
        ("chunks=8&cut_after=3", "stream broke after 3 chunks", "".join(map(chunk_text, range(3)))),
        ("chunks=8&bad_json_at=2", "malformed JSON", "".join(map(chunk_text, range(2)))),
    ],
)
def test_db_after_a_broken_stream(
    name: str, spec: str, message: str, text: str, cloud_server: CloudServer,
    prompts: Path, tmp_path: Path,
) -> None:  # fmt: skip
    db = tmp_path / "p.db"
    run, rows = _rows(db, _run(db, prompts, spec, cloud_server.base_url, backend=name))
    assert run["status"] == "complete" and len(rows) == 2  # the run went on
    for row in rows:
        assert message in row["error"] and row["finish_reason"] == "error"
        assert row["output_text"] == text and row["output_tokens"] > 0
        assert row["token_count_method"] == "estimated" and row["ttft_s"] > 0


def test_concurrent_run_keeps_streams_in_flight(
    cloud_server: CloudServer, prompts: Path, tmp_path: Path
) -> None:
    db = tmp_path / "p.db"
    cloud_server.reset_stats()
    run_id = _run(db, prompts, "chunks=6&delay_ms=40", cloud_server.base_url,
                  repetitions=4, concurrency=8)  # fmt: skip
    _, rows = _rows(db, run_id)
    assert len(rows) == 8 and all(r["error"] is None for r in rows)
    assert cloud_server.max_in_flight == 8


def test_no_api_key_in_database_exports_or_json(
    keyed_server: CloudServer, prompts: Path, tmp_path: Path
) -> None:
    db = tmp_path / "p.db"
    env = {"EDGEPROF_LEAK_TEST_KEY": FAKE_KEY}
    outputs: list[Result] = []
    for backend in ("openai", "anthropic"):
        r = cli(
            "run", "--backend", backend, "--model", "chunks=3", "--base-url",
            keyed_server.base_url, "--api-key-env", "EDGEPROF_LEAK_TEST_KEY",
            "--price-in", "1", "--price-out", "2", "--prompts", str(prompts),
            "--repetitions", "1", "--warmup", "0", "--idle-seconds", "0", "--db", str(db),
            "--remote", "--json", env=env,
        )  # fmt: skip
        assert r.exit_code == 0, r.output
        outputs.append(r)
    outputs.append(cli("report", db, "--json", "--requests", env=env))
    for fmt in ("csv", "jsonl"):
        out = tmp_path / f"export-{fmt}"
        outputs.append(cli("export", db, "-f", fmt, "-o", out, env=env))
    assert all(r.exit_code == 0 for r in outputs), [r.output for r in outputs]
    with Store(db) as store:  # the key did work: every request was answered
        assert store.count("requests") == 4
        assert all(r["error"] is None for run in store.runs() for r in store.requests(run["id"]))
    for r in outputs:
        assert FAKE_KEY not in r.stdout and FAKE_KEY not in r.stderr
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name.startswith("p.db") for p in files)
    for path in files:
        assert FAKE_KEY.encode() not in path.read_bytes(), path
