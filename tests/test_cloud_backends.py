"""The OpenAI-compatible and Anthropic backends against the tests' own streaming server."""

from __future__ import annotations

import itertools
import json
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from edgeprof.analysis.metrics import token_times_ns
from edgeprof.backends import BackendOptions, create_backend
from edgeprof.decision.prices import lookup_price, manual_price, request_cost_usd
from edgeprof.errors import CloudAPIError, PricingError, UsageError
from tests.cloud_fixtures import FAKE_KEY, drain, free_port, make_backend, request
from tests.cloudserver import CloudServer, chunk_text, prompt_tokens

BACKENDS = ["openai", "anthropic"]
_ids = iter(range(10**6))


def fresh(spec: str) -> str:
    """A scenario with its own attempt counter on the shared server."""
    return f"{spec}&id={next(_ids)}"


def server_prompt_tokens(name: str) -> int:
    msgs = [dict(m) for m in request().messages if name == "openai" or m["role"] != "system"]
    if name == "anthropic":  # the server counts the system prompt it receives separately
        msgs.append({"role": "system", "content": "Be brief."})
    return prompt_tokens(msgs)


@pytest.mark.parametrize("name", BACKENDS)
def test_stream_with_usage(name: str, cloud_server: CloudServer) -> None:
    b = make_backend(name, "chunks=6", cloud_server.base_url)
    info = b.load()
    events, gen = drain(b, request())
    assert [e.text for e in events] == [chunk_text(i) for i in range(6)]
    assert [e.n_tokens for e in events] == [1] * 6
    assert all(a.t_ns <= b.t_ns for a, b in itertools.pairwise(events))
    assert gen.error is None and gen.finish_reason == "length"
    assert gen.token_count_method == "api"
    assert (gen.input_tokens, gen.output_tokens) == (server_prompt_tokens(name), 6)
    assert gen.text == "".join(chunk_text(i) for i in range(6))
    assert gen.cost_usd == pytest.approx(request_cost_usd(manual_price(5, 15), gen.input_tokens, 6))
    assert info.target == "chunks=6" and info.extra["price_source"] == "user"
    assert info.extra["price_in_usd_per_m"] == 5.0 and info.extra["price_out_usd_per_m"] == 15.0
    b.close()


def test_openai_request_body(cloud_server: CloudServer) -> None:
    model = fresh("chunks=2")
    b = make_backend("openai", model, cloud_server.base_url)
    drain(b, request(max_tokens=7))
    body = next(x for x in cloud_server.bodies if x["model"] == model)
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["max_tokens"] == 7 and body["temperature"] == 0.0 and body["seed"] == 0
    assert body["messages"] == [dict(m) for m in request().messages]


def test_anthropic_request_body(cloud_server: CloudServer) -> None:
    model = fresh("chunks=2")
    b = make_backend("anthropic", model, cloud_server.base_url)
    drain(b, request(max_tokens=7))
    body = next(x for x in cloud_server.bodies if x["model"] == model)
    assert body["system"] == "Be brief." and body["max_tokens"] == 7 and body["stream"] is True
    assert [m["role"] for m in body["messages"]] == ["user"]


@pytest.mark.parametrize("name", BACKENDS)
def test_multi_token_chunks_share_their_gap(name: str, cloud_server: CloudServer) -> None:
    b = make_backend(name, "chunks=5&tpc=3&delay_ms=5", cloud_server.base_url)
    events, gen = drain(b, request())
    assert gen.output_tokens == 15 and gen.token_count_method == "api"
    assert [e.n_tokens for e in events] == [3] * 5
    times = token_times_ns([(e.t_ns, e.n_tokens) for e in events])
    assert len(times) == 15 and times == sorted(times)


@pytest.mark.parametrize("name", BACKENDS)
def test_no_usage_falls_back_to_an_estimate_and_says_so(
    name: str, cloud_server: CloudServer
) -> None:
    b = make_backend(name, "chunks=6&usage=0", cloud_server.base_url)
    events, gen = drain(b, request())
    assert gen.error is None and gen.token_count_method == "estimated"
    assert gen.output_tokens >= 6 and sum(e.n_tokens for e in events) == gen.output_tokens
    assert gen.input_tokens > 0


@pytest.mark.parametrize("name", BACKENDS)
def test_429_with_retry_after_then_success(name: str, cloud_server: CloudServer) -> None:
    model = fresh("fail=429&retry_after=1&chunks=3")
    b = make_backend(name, model, cloud_server.base_url)
    t0 = time.monotonic()
    events, gen = drain(b, request())
    assert gen.error is None and gen.output_tokens == 3 and len(events) == 3
    assert cloud_server.attempts[model] == 2
    first, second = cloud_server.attempt_times[model]
    assert second - first >= 0.95 and time.monotonic() - t0 < 5


@pytest.mark.parametrize("name", BACKENDS)
def test_500_then_success(name: str, cloud_server: CloudServer) -> None:
    model = fresh("fail=500&chunks=3")
    b = make_backend(name, model, cloud_server.base_url)
    _, gen = drain(b, request())
    assert gen.error is None and gen.output_tokens == 3
    assert cloud_server.attempts[model] == 2


def test_retries_are_bounded(cloud_server: CloudServer) -> None:
    model = fresh("fail=503&fail_times=99")
    b = make_backend("openai", model, cloud_server.base_url, max_retries=2)
    events, gen = drain(b, request())
    assert events == [] and gen.finish_reason == "error" and gen.output_tokens == 0
    assert gen.error is not None and "HTTP 503" in gen.error and "after 3 attempts" in gen.error
    assert cloud_server.attempts[model] == 3
    assert gen.cost_usd == 0.0


def test_retry_after_beyond_the_total_timeout_gives_up_at_once(cloud_server: CloudServer) -> None:
    model = fresh("fail=429&retry_after=60")
    b = make_backend("openai", model, cloud_server.base_url, total_timeout_s=5)
    t0 = time.monotonic()
    _, gen = drain(b, request())
    assert time.monotonic() - t0 < 2
    assert gen.error is not None and "HTTP 429" in gen.error and "total timeout" in gen.error
    assert cloud_server.attempts[model] == 1


def test_client_errors_are_not_retried(cloud_server: CloudServer) -> None:
    model = fresh("fail=400")
    _, gen = drain(make_backend("openai", model, cloud_server.base_url), request())
    assert gen.error is not None and "HTTP 400" in gen.error and "canned 400" in gen.error
    assert cloud_server.attempts[model] == 1


@pytest.mark.parametrize("name", BACKENDS)
def test_stream_cut_midway_returns_what_arrived(name: str, cloud_server: CloudServer) -> None:
    b = make_backend(name, "chunks=8&cut_after=3", cloud_server.base_url)
    events, gen = drain(b, request())
    assert [e.text for e in events] == [chunk_text(i) for i in range(3)]
    assert gen.finish_reason == "error" and gen.error is not None and "broke" in gen.error
    assert gen.text == "".join(chunk_text(i) for i in range(3))
    assert gen.token_count_method == "estimated"
    assert gen.output_tokens == sum(e.n_tokens for e in events) > 0
    assert gen.cost_usd is not None and gen.cost_usd > 0


@pytest.mark.parametrize("name", BACKENDS)
def test_malformed_json_chunk(name: str, cloud_server: CloudServer) -> None:
    b = make_backend(name, "chunks=8&bad_json_at=2", cloud_server.base_url)
    events, gen = drain(b, request())
    assert [e.text for e in events] == [chunk_text(0), chunk_text(1)]
    assert gen.finish_reason == "error" and gen.error is not None and "malformed JSON" in gen.error


@pytest.mark.parametrize("name", BACKENDS)
def test_cached_input_is_priced_at_the_cached_rate(name: str, cloud_server: CloudServer) -> None:
    b = make_backend(name, "chunks=2&cached=4", cloud_server.base_url)
    b.price = manual_price(10.0, 20.0, cached_input_usd_per_m=1.0)  # type: ignore[attr-defined]
    _, gen = drain(b, request())
    # Anthropic reports cache reads apart from input_tokens; edgeprof counts all input.
    total_in = server_prompt_tokens(name) + (4 if name == "anthropic" else 0)
    assert gen.input_tokens == total_in
    assert gen.cost_usd == pytest.approx(((total_in - 4) * 10 + 4 * 1 + 2 * 20) / 1e6)


@pytest.mark.parametrize("name", BACKENDS)
def test_32_concurrent_streams_stay_in_flight(name: str, cloud_server: CloudServer) -> None:
    b = make_backend(name, "chunks=10&delay_ms=30", cloud_server.base_url)
    b.load()
    cloud_server.reset_stats()
    start = threading.Barrier(32)

    def one(_: int) -> tuple[int, str | None]:
        start.wait()
        events, gen = drain(b, request())
        return len(events), gen.error

    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(one, range(32)))
    assert results == [(10, None)] * 32
    assert cloud_server.max_in_flight == 32
    b.close()


@pytest.mark.parametrize("name", BACKENDS)
def test_load_needs_a_key_for_remote_hosts(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGEPROF_TEST_MISSING_KEY", raising=False)
    b = make_backend(
        name, "x", "https://api.example.invalid/v1", api_key_env="EDGEPROF_TEST_MISSING_KEY"
    )
    with pytest.raises(CloudAPIError, match=r"\$EDGEPROF_TEST_MISSING_KEY"):
        b.load()


@pytest.mark.parametrize("name", BACKENDS)
def test_load_unreachable_host_is_one_clear_error(name: str) -> None:
    b = make_backend(name, "x", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(CloudAPIError, match=r"cannot reach http://127\.0\.0\.1"):
        b.load()


@pytest.mark.parametrize("name", BACKENDS)
def test_load_refused_key(
    name: str, keyed_server: CloudServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGEPROF_TEST_KEY", "sk-wrong")
    b = make_backend(name, "chunks=2", keyed_server.base_url, api_key_env="EDGEPROF_TEST_KEY")
    with pytest.raises(CloudAPIError, match="refused the API key in \\$EDGEPROF_TEST_KEY"):
        b.load()
    monkeypatch.setenv("EDGEPROF_TEST_KEY", FAKE_KEY)
    b.load()
    _, gen = drain(b, request())
    assert gen.error is None and gen.output_tokens == 2


@pytest.mark.parametrize("name", BACKENDS)
def test_no_secret_in_model_info_or_params(
    name: str, cloud_server: CloudServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGEPROF_TEST_KEY", FAKE_KEY)
    host = cloud_server.base_url.removeprefix("http://")
    # Keys can hide in a URL too: as user:password, or in the query string.
    url = f"http://user:{FAKE_KEY}@{host}/v1?api-version=1&key={FAKE_KEY}"
    b = make_backend(name, "chunks=2", url, api_key_env="EDGEPROF_TEST_KEY")
    info = b.load()
    _, gen = drain(b, request())
    assert gen.error is None  # the query string survives into the endpoint's URL
    recorded = json.dumps({"info": info.extra, "params": b.params(), "target": info.target})
    assert FAKE_KEY not in recorded and "user:" not in recorded
    assert info.extra["base_url"].startswith(f"http://{host}")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"temperature": 1}, "does not take temperature"),
        ({"base_url": "ftp://x"}, "http"),
        ({"api_key_env": FAKE_KEY}, "NAME of an environment variable"),
        ({"price_in_usd_per_m": 1.0, "price_out_usd_per_m": None}, "both `price_in_usd_per_m`"),
        ({"price_in_usd_per_m": -1.0, "price_out_usd_per_m": 1.0}, "price_in_usd_per_m"),
        ({"max_retries": -1}, "max_retries"),
        ({"timeout_s": 0}, "timeout_s"),
    ],
)
@pytest.mark.parametrize("name", BACKENDS)
def test_options_validated_when_built(name: str, extra: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match=message) as e:
        create_backend(name, BackendOptions(model="gpt-4o", settings=extra))
    assert FAKE_KEY not in str(e.value)


def test_model_is_required() -> None:
    with pytest.raises(UsageError, match="`model`"):
        create_backend(
            "openai",
            BackendOptions(settings={"price_in_usd_per_m": 1.0, "price_out_usd_per_m": 1.0}),
        )


def test_prices_come_from_genai_prices_by_default() -> None:
    b = create_backend("openai", BackendOptions(model="gpt-4o-mini"))
    assert b.price == lookup_price("openai:gpt-4o-mini")  # type: ignore[attr-defined]
    c = create_backend("anthropic", BackendOptions(model="claude-sonnet-4-5"))
    assert c.price == lookup_price("anthropic:claude-sonnet-4-5")  # type: ignore[attr-defined]


def test_unpriced_model_names_the_fix() -> None:
    with pytest.raises(PricingError, match="price_in_usd_per_m"):
        create_backend(
            "openai",
            # TEST-NET-1: not this machine, so a remote target that needs a price
            BackendOptions(model="my-local-model", settings={"base_url": "http://192.0.2.1:1"}),
        )


@pytest.mark.parametrize("name", BACKENDS)
def test_without_usage_a_stop_at_the_limit_counts_max_tokens(
    name: str, cloud_server: CloudServer
) -> None:
    b = make_backend(name, "chunks=6&usage=0", cloud_server.base_url)
    events, gen = drain(b, request(max_tokens=6))
    assert gen.finish_reason == "length" and gen.output_tokens == 6
    assert gen.token_count_method == "estimated"  # inferred, not reported: still flagged
    assert [e.n_tokens for e in events] == [1] * 6


@pytest.mark.parametrize("name", BACKENDS)
def test_check_fails_fast_before_any_work(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGEPROF_TEST_MISSING_KEY", raising=False)
    b = make_backend(
        name, "x", "https://api.example.invalid", api_key_env="EDGEPROF_TEST_MISSING_KEY"
    )
    with pytest.raises(CloudAPIError, match="no API key"):
        b.check()
    local = make_backend(name, "x", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(CloudAPIError, match="cannot reach"):
        local.check()


# -- answer signals from the API's log-probabilities (backends/signals.py) -------------------


def _entropy(logprobs: list[float]) -> float:
    weights = [math.exp(x) for x in logprobs]
    p = [w / sum(weights) for w in weights]
    return -sum(q * math.log(q) for q in p)


def test_openai_asks_for_logprobs_and_stores_them_as_signals(cloud_server: CloudServer) -> None:
    """8 tokens in 4 chunks of 2, token j at log-probability -0.1 (j + 1) with alternatives
    at -2, -3, -4, -5 (tests.cloudserver.canned_logprobs)."""
    model = fresh("chunks=4&tpc=2&logprobs=1")
    b = make_backend("openai", model, cloud_server.base_url)
    assert b.params()["logprobs"] is True
    _, gen = drain(b, request())
    body = next(x for x in cloud_server.bodies if x["model"] == model)
    assert body["logprobs"] is True and body["top_logprobs"] == 5
    s = gen.signals
    assert s is not None and gen.output_tokens == 8
    assert (s.source, s.tokens) == ("api-top-logprobs", 8)
    assert s.logprob_mean == pytest.approx(-0.45) and s.logprob_min == pytest.approx(-0.8)
    expected = [_entropy([-0.1 * (j + 1), -2.0, -3.0, -4.0, -5.0]) for j in range(8)]
    assert s.entropy_mean == pytest.approx(sum(expected) / 8)
    assert s.first_margin == pytest.approx(-0.1 + 2.0)


@pytest.mark.parametrize("name", BACKENDS)
def test_no_logprobs_in_the_answer_no_signals(name: str, cloud_server: CloudServer) -> None:
    """An OpenAI-compatible server that ignores the fields, and Anthropic (its API has none)."""
    model = fresh("chunks=3")
    _, gen = drain(make_backend(name, model, cloud_server.base_url), request())
    assert gen.error is None and gen.output_tokens == 3 and gen.signals is None
    body = next(x for x in cloud_server.bodies if x["model"] == model)
    assert ("logprobs" in body) == (name == "openai")


@pytest.mark.parametrize("status", [400, 422])
def test_refused_logprobs_are_dropped_once_and_not_asked_again(
    status: int, cloud_server: CloudServer, caplog: pytest.LogCaptureFixture
) -> None:
    model = fresh(f"chunks=3&logprobs=1&refuse_logprobs={status}")
    b = make_backend("openai", model, cloud_server.base_url, max_retries=0)
    with caplog.at_level("WARNING", logger="edgeprof"):
        _, first = drain(b, request())
        _, second = drain(b, request())
    # refused, then asked again at once without them (not a retry: max_retries is 0)
    assert first.error is None and first.output_tokens == 3 and first.signals is None
    assert first.attempts == 2 and first.retry_wait_s == 0
    assert second.error is None and second.attempts == 1 and second.signals is None
    assert cloud_server.attempts[model] == 3
    bodies = [x for x in cloud_server.bodies if x["model"] == model]
    assert ["logprobs" in x for x in bodies] == [True, False, False]
    assert "top_logprobs" not in bodies[-1]
    (warning,) = [r.getMessage() for r in caplog.records if "refused `logprobs`" in r.message]
    assert f"HTTP {status}: logprobs is not supported with this model" in warning
    assert getattr(b, "logprobs_refused", None) == "logprobs is not supported with this model"


def test_a_refusal_naming_logprobs_late_in_a_long_message_is_seen(
    cloud_server: CloudServer,
) -> None:
    """A validation error may list other fields first: the check reads the whole message,
    past the 300 characters a request's error keeps."""
    model = fresh("chunks=3&logprobs=1&refuse_logprobs=422&refusal_padding=500")
    b = make_backend("openai", model, cloud_server.base_url, max_retries=0)
    _, gen = drain(b, request())
    assert gen.error is None and gen.output_tokens == 3 and gen.attempts == 2
    refused = getattr(b, "logprobs_refused", None)
    assert refused is not None and len(refused) == 300


def test_logprobs_off_and_a_device_server_are_not_asked(cloud_server: CloudServer) -> None:
    """`logprobs` false; and by default a server on this machine measured as the device,
    whose work on them would be measured with the answer."""
    for extra, want in (({"logprobs": False}, False), ({"on_device": True}, False),
                        ({"on_device": True, "logprobs": True}, True)):  # fmt: skip
        model = fresh("chunks=2&logprobs=1")
        b = make_backend("openai", model, cloud_server.base_url, **extra)
        assert b.params()["logprobs"] is want
        _, gen = drain(b, request())
        body = next(x for x in cloud_server.bodies if x["model"] == model)
        assert ("logprobs" in body) is want and (gen.signals is not None) is want
