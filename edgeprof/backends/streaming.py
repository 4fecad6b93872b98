"""Pieces shared by the cloud backends: an SSE parser, retry timing, and token accounting.


How a chunk's tokens are counted. A stream reports its token total (`usage`) only at the end,
while text arrives in chunks that may hold several tokens. The backend keeps each chunk's
arrival time, and once the total N is known, `split_tokens` shares N among the k chunks in
proportion to an estimate of each chunk's size (largest remainder, at least one token per chunk
while N >= k), so the counts sum to N exactly. A `TokenEvent` with `n_tokens=j` then tells the
metrics that j tokens arrived together: `edgeprof.analysis.metrics.token_times_ns` spreads
the gap since the previous event evenly over them (the first event's tokens all count at its
own time).
When N < k (a chunk held half a character, say), chunks left without a token are merged into
the previous event, so that no event claims zero tokens.
"""

from __future__ import annotations

import email.utils
import math
import random
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from edgeprof.backends.base import Generation, Request, ServerTimings, TokenCountMethod
from edgeprof.backends.counting import TokenCounter
from edgeprof.backends.signals import TopLogprobSignals
from edgeprof.decision.prices import ModelPrice, request_cost_usd

RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 30.0


@dataclass(frozen=True)
class SSEEvent:
    event: str  # "message" unless the server names it (Anthropic does)
    data: str


class SSEDecoder:
    """Server-sent events (WHATWG HTML §9.2) from a byte stream fed in arbitrary pieces."""

    def __init__(self) -> None:
        self._buf = b""
        self._event = ""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        buf = self._buf + chunk if self._buf else chunk
        lines = buf.splitlines(keepends=True)
        # Keep an unterminated last line, and one ending in "\r" whose "\n" may come next.
        if lines and (lines[-1][-1:] not in (b"\n", b"\r") or lines[-1][-1:] == b"\r"):
            self._buf = lines.pop()
        else:
            self._buf = b""
        events: list[SSEEvent] = []
        for raw in lines:
            self._line(raw.rstrip(b"\r\n"), events)
        return events

    def flush(self) -> list[SSEEvent]:
        """At end of stream: a trailing line is processed, but an event never terminated by a
        blank line is dropped, as the spec says."""
        events: list[SSEEvent] = []
        if self._buf:
            self._line(self._buf.rstrip(b"\r\n"), events)
            self._buf = b""
        self._event, self._data = "", []
        return events

    def _line(self, line: bytes, events: list[SSEEvent]) -> None:
        if not line:
            if self._data:
                data = b"\n".join(self._data).decode("utf-8", errors="replace")
                events.append(SSEEvent(self._event or "message", data))
            self._event, self._data = "", []
            return
        if line[:1] == b":":
            return  # comment / keep-alive
        name, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event = value.decode("utf-8", errors="replace")
        # "id" and "retry" are not used by LLM APIs.


def retry_after_s(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds the server asks us to wait: `retry-after-ms` (OpenAI), then `Retry-After` as
    seconds or an HTTP date. None when absent or unreadable."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            value = float(ms) / 1000.0
            if math.isfinite(value) and value >= 0:
                return value
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        value = float(raw)
        return value if math.isfinite(value) and value >= 0 else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when is None:  # pragma: no cover - older Pythons
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def backoff_s(attempt: int, *, rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter for retry `attempt` (0-based): 0.5, 1, 2 s... × [0.5, 1]."""
    r = (rng or random).random()
    return min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2.0**attempt) * (0.5 + 0.5 * r)


_PIECE = re.compile(r" ?[^\W\d_]+| ?\d{1,3}| ?[^\s\w]+|\s+", re.UNICODE)


def estimate_tokens(text: str) -> int:
    """A rough BPE-like count (GPT-2-style pieces; long words cost one token per ~4 characters).
    Used only when a server reports no usage, and then flagged "estimated"."""
    return sum(1 if len(p) <= 7 else math.ceil(len(p) / 4) for p in _PIECE.findall(text))


def estimate_prompt_tokens(messages: tuple[Mapping[str, str], ...]) -> int:
    # About four tokens of chat-template framing per message, as OpenAI's cookbook counts.
    return sum(estimate_tokens(str(m.get("content", ""))) + 4 for m in messages) + 3


def split_tokens(weights: list[int], total: int) -> list[int]:
    """Share `total` tokens among chunks in proportion to `weights` (largest remainder), giving
    every chunk at least one token while total >= len(weights). Sums to `total` exactly."""
    k = len(weights)
    if k == 0 or total <= 0:
        return [0] * k
    w = [max(1, x) for x in weights]
    if total >= k:
        # One token each first; the rest in proportion to the weights beyond that one.
        rest = total - k
        extra = [x - 1 for x in w]
        if sum(extra) == 0:
            extra = [1] * k
        shares = _largest_remainder(extra, rest)
        return [1 + s for s in shares]
    return _largest_remainder(w, total)


def _largest_remainder(weights: list[int], total: int) -> list[int]:
    wsum = sum(weights)
    exact = [total * x / wsum for x in weights]
    floor = [int(e) for e in exact]
    left = total - sum(floor)
    # Ties go to earlier chunks, so the result is deterministic.
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - floor[i]), i))
    for i in order[:left]:
        floor[i] += 1
    return floor


def chunk_events(chunks: list[tuple[int, str]], total: int) -> list[tuple[int, str, int]]:
    """(t_ns, text) per content chunk -> (t_ns, text, n_tokens) summing to `total`, with
    zero-token chunks merged into their neighbour (see the module docstring)."""
    counts = split_tokens([estimate_tokens(text) for _, text in chunks], total)
    merged: list[tuple[int, str, int]] = []
    pending = ""  # text of leading chunks that got no token, carried into the first counted one
    for (t_ns, text), n in zip(chunks, counts, strict=True):
        if n > 0:
            merged.append((t_ns, pending + text, n))
            pending = ""
        elif merged:
            t0, text0, n0 = merged[-1]
            merged[-1] = (t0, text0 + text, n0)
        else:
            pending += text
    if pending and merged:  # pragma: no cover - counts > 0 exist whenever total > 0
        t0, text0, n0 = merged[-1]
        merged[-1] = (t0, text0 + pending, n0)
    return merged


@dataclass
class StreamState:
    """What one request has received so far; filled by a backend's `on_event`."""

    chunks: list[tuple[int, str]] = field(default_factory=list)  # (t_ns, text) with content
    input_tokens: int | None = None
    output_tokens: int | None = None  # final count from the server's usage, once it arrives
    cached_input_tokens: int = 0
    reasoning_tokens: int = 0
    finish_reason: str | None = None
    done: bool = False  # the server said the stream is complete ([DONE], message_stop)
    error: str | None = None
    http_attempts: int = 0
    retry_wait_s: float = 0.0  # time slept between attempts (Retry-After or backoff)
    last_attempt_ns: int | None = None  # perf_counter_ns when the final attempt's POST began
    server_timings: ServerTimings | None = None  # a local server's own (Ollama, llama-server)
    # the tokens' log-probabilities, where the API sent them (OpenAI's `logprobs`)
    signals: TopLogprobSignals | None = None


def output_total(
    state: StreamState, max_tokens: int | None = None, counter: TokenCounter | None = None
) -> tuple[int, TokenCountMethod]:
    """Output tokens, and how they were counted: the server's usage ("api"); else a real
    tokenizer over the text received ("tokenizer"); else `max_tokens` when the server says it
    stopped at the limit, or a text estimate (both "estimated")."""
    if state.output_tokens is not None and (state.output_tokens > 0 or not state.chunks):
        return state.output_tokens, "api"
    text = "".join(t for _, t in state.chunks)
    if counter is not None:
        return counter.text(text), "tokenizer"
    if max_tokens and state.finish_reason == "length" and not state.error:
        return max_tokens, "estimated"
    return estimate_tokens(text), "estimated"


def token_events(
    state: StreamState, request: Request, counter: TokenCounter | None = None
) -> list[tuple[int, str, int]]:
    """(t_ns, text, n_tokens) per event, the counts summing to the request's output tokens."""
    if not state.chunks:
        return []
    total, _ = output_total(state, request.max_tokens, counter)
    # Reasoning tokens were all produced before the first visible chunk arrived.
    reasoning = min(state.reasoning_tokens, max(0, total - 1))
    events = chunk_events(state.chunks, max(1, total - reasoning))
    if reasoning:
        t0, text0, n0 = events[0]
        events[0] = (t0, text0, n0 + reasoning)
    return events


def generation(
    state: StreamState, request: Request, price: ModelPrice, counter: TokenCounter | None = None
) -> Generation:
    """The request's outcome: usage counts where the server sent them, else a real tokenizer's
    where one is known, else estimates; the row says which (`token_count_method`)."""
    got_response = state.input_tokens is not None or bool(state.chunks) or state.done
    output, out_method = output_total(state, request.max_tokens, counter)
    if state.chunks and output < 1:
        output, out_method = 1, "estimated"
    in_method: TokenCountMethod
    if state.input_tokens is not None:
        input_tokens, in_method = state.input_tokens, "api"
    elif got_response and counter is not None:
        input_tokens, in_method = counter.prompt(request.messages), "tokenizer"
    elif got_response:
        input_tokens, in_method = estimate_prompt_tokens(request.messages), "estimated"
    else:  # never reached the model: nothing generated, nothing billed
        input_tokens, in_method, out_method = 0, "api", "api"
    methods = {in_method, out_method}
    method: TokenCountMethod = (
        "estimated" if "estimated" in methods else "tokenizer" if "tokenizer" in methods else "api"
    )
    return Generation(
        input_tokens=input_tokens,
        output_tokens=output,
        text="".join(t for _, t in state.chunks),
        finish_reason="error" if state.error else (state.finish_reason or "stop"),
        error=state.error,
        token_count_method=method,
        cost_usd=request_cost_usd(
            price, input_tokens, output, min(state.cached_input_tokens, input_tokens)
        ),
        attempts=max(1, state.http_attempts),
        retry_wait_s=state.retry_wait_s,
        last_attempt_ns=state.last_attempt_ns,
        cached_input_tokens=min(state.cached_input_tokens, input_tokens),
        server_timings=state.server_timings,
        signals=state.signals.result() if state.signals is not None else None,
    )
