"""Token counts for endpoints that report no usage: a real tokenizer before an estimate."""

from __future__ import annotations

import pytest

from edgeprof.backends.base import Request
from edgeprof.backends.counting import openai_counter
from edgeprof.backends.streaming import StreamState, generation
from edgeprof.decision.prices import manual_price

REQUEST = Request("p", ({"role": "user", "content": "Count to three, please."},), max_tokens=50)


def _state(text: str) -> StreamState:
    return StreamState(chunks=[(1, text[:5]), (2, text[5:])], finish_reason="stop", done=True)


def test_openai_models_count_with_their_own_bpe() -> None:
    pytest.importorskip("bpe_openai")
    counter = openai_counter("gpt-4o-mini")
    assert counter is not None and counter.name == "bpe-openai:o200k_base"
    assert openai_counter("gpt-4.1") is not None
    assert openai_counter("my-local-model") is None  # never claim a tokenizer we do not know
    # o200k: "one, two, three." is 6 pieces: "one", ",", " two", ",", " three", "."
    text = "one, two, three."
    gen = generation(_state(text), REQUEST, manual_price(1, 1), counter)
    assert gen.output_tokens == counter.text(text) == 6
    assert gen.token_count_method == "tokenizer"
    # Cookbook framing: 3 per message + its content + 1, and 3 to prime the reply.
    assert gen.input_tokens == 3 + counter.text("Count to three, please.") + 1 + 3


def test_without_a_tokenizer_the_estimate_is_labelled() -> None:
    gen = generation(_state("one, two, three."), REQUEST, manual_price(1, 1), None)
    assert gen.token_count_method == "estimated" and gen.output_tokens > 0


def test_usage_from_the_server_wins() -> None:
    pytest.importorskip("bpe_openai")
    state = _state("one, two, three.")
    state.input_tokens, state.output_tokens = 11, 7
    gen = generation(state, REQUEST, manual_price(1, 1), openai_counter("gpt-4o-mini"))
    assert (gen.input_tokens, gen.output_tokens, gen.token_count_method) == (11, 7, "api")
