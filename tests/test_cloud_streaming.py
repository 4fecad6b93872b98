"""The cloud backends' pure parts: SSE parsing, retry timing, and sharing tokens among chunks."""

from __future__ import annotations

import email.utils
import itertools
import random

from hypothesis import given
from hypothesis import strategies as st

from edgeprof.analysis.metrics import token_times_ns
from edgeprof.backends.streaming import (
    BACKOFF_CAP_S,
    SSEDecoder,
    SSEEvent,
    backoff_s,
    chunk_events,
    estimate_tokens,
    retry_after_s,
    split_tokens,
)

STREAM = (
    b": keep-alive comment\r\n"
    b'data: {"a": 1}\r\n\r\n'
    b"event: content_block_delta\n"
    b"data: line one\n"
    b"data:line two\n\n"
    b"data: [DONE]\r\r"
    b"data: never terminated\n"
)
EXPECTED = [
    SSEEvent("message", '{"a": 1}'),
    SSEEvent("content_block_delta", "line one\nline two"),
    SSEEvent("message", "[DONE]"),
]


def parse(pieces: list[bytes]) -> list[SSEEvent]:
    d = SSEDecoder()
    events = [e for p in pieces for e in d.feed(p)]
    return events + d.flush()


def test_sse_whole_stream() -> None:
    assert parse([STREAM]) == EXPECTED


@given(st.lists(st.integers(0, len(STREAM)), max_size=12))
def test_sse_events_do_not_depend_on_how_the_bytes_are_split(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(STREAM)]
    assert parse([STREAM[a:b] for a, b in itertools.pairwise(bounds)]) == EXPECTED


def test_sse_byte_by_byte_crlf_split() -> None:
    data = b"data: x\r\n\r\ndata: y\r\n\r\n"
    assert parse([data[i : i + 1] for i in range(len(data))]) == [
        SSEEvent("message", "x"),
        SSEEvent("message", "y"),
    ]


def test_retry_after_forms() -> None:
    assert retry_after_s({"retry-after": "3"}) == 3.0
    assert retry_after_s({"retry-after": "0.25"}) == 0.25
    assert retry_after_s({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 7, usegmt=True)
    assert abs((retry_after_s({"retry-after": date}, now=now) or 0) - 7.0) < 1.0
    assert retry_after_s({"retry-after": "soon"}) is None
    assert retry_after_s({"retry-after": "-1"}) is None
    assert retry_after_s({}) is None


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    rng = random.Random(1)
    for attempt in range(12):
        full = min(BACKOFF_CAP_S, 0.5 * 2**attempt)
        for _ in range(20):
            assert full / 2 <= backoff_s(attempt, rng=rng) <= full
    assert backoff_s(30, rng=rng) <= BACKOFF_CAP_S


@given(st.lists(st.integers(0, 50), min_size=1, max_size=40), st.integers(0, 400))
def test_split_tokens_sums_exactly_and_follows_weights(weights: list[int], total: int) -> None:
    counts = split_tokens(weights, total)
    assert sum(counts) == total
    assert len(counts) == len(weights)
    if total >= len(weights):
        assert min(counts) >= 1
    for i in range(len(weights)):
        for j in range(len(weights)):
            if max(1, weights[i]) > max(1, weights[j]):
                assert counts[i] >= counts[j]


def test_split_tokens_by_hand() -> None:
    assert split_tokens([1, 1, 1], 3) == [1, 1, 1]
    assert split_tokens([5, 1, 1], 7) == [5, 1, 1]  # one each, the other 4 to the big chunk
    assert split_tokens([2, 2], 5) == [3, 2]  # a tie goes to the earlier chunk
    assert split_tokens([], 4) == []


chunk_lists = st.lists(
    st.tuples(st.integers(0, 10**9), st.text(min_size=1, max_size=12)), min_size=1, max_size=30
).map(lambda cs: sorted(cs))


@given(chunk_lists, st.integers(1, 200))
def test_chunk_events_keep_text_and_time_and_sum_to_usage(
    chunks: list[tuple[int, str]], total: int
) -> None:
    events = chunk_events(chunks, total)
    assert sum(n for _, _, n in events) == total
    assert all(n >= 1 for _, _, n in events)
    assert "".join(t for _, t, _ in events) == "".join(t for _, t in chunks)
    assert {t for t, _, _ in events} <= {t for t, _ in chunks}
    # The lead's metrics then place exactly `total` token timestamps.
    assert len(token_times_ns([(t, n) for t, _, n in events])) == total


def test_multi_token_chunk_gap_is_split_evenly_by_the_metrics() -> None:
    events = chunk_events([(1000, " a"), (4000, " three token chunk")], 4)
    assert [n for _, _, n in events] == [1, 3]
    assert token_times_ns([(t, n) for t, _, n in events]) == [1000.0, 2000.0, 3000.0, 4000.0]


def test_estimate_tokens_is_rough_but_sane() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("Hello, world!") == 4
    long = estimate_tokens("internationalization " * 10)
    assert 20 <= long <= 60
