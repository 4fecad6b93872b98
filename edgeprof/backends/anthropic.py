"""Anthropic's Messages API, streaming: the same HTTP loop and metrics as the OpenAI backend.

Events: message_start (usage.input_tokens), content_block_delta (text_delta), message_delta
(stop_reason, usage.output_tokens: the final count), message_stop; `error` mid-stream.

No answer signals (backends/signals.py): the Messages API returns no log-probabilities, so an
Anthropic request's signal columns stay NULL.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from edgeprof.backends.base import Request
from edgeprof.backends.cloud import CloudBackend
from edgeprof.backends.streaming import SSEEvent, StreamState

ANTHROPIC_VERSION = "2023-06-01"
STOP_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length"}


class AnthropicBackend(CloudBackend):
    name: ClassVar[str] = "anthropic"
    default_base_url: ClassVar[str] = "https://api.anthropic.com"
    default_key_env: ClassVar[str] = "ANTHROPIC_API_KEY"
    default_provider: ClassVar[str] = "anthropic"

    def base_path(self, path: str) -> str:
        # The SDK's convention is the host; accept ".../v1" too rather than doubling it.
        return path.removesuffix("/v1")

    def stream_url(self) -> str:
        return self.endpoint("/v1/messages")

    def models_url(self) -> str:
        return self.endpoint("/v1/models")

    def headers(self, key: str | None) -> dict[str, str]:
        h = {"accept": "text/event-stream", "anthropic-version": ANTHROPIC_VERSION}
        if key:
            h["x-api-key"] = key
        return h

    def body(self, request: Request) -> dict[str, Any]:
        system = "\n\n".join(m["content"] for m in request.messages if m.get("role") == "system")
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": request.max_tokens,
            "messages": [
                {"role": m["role"], "content": m["content"]}
                for m in request.messages
                if m.get("role") != "system"
            ],
            "temperature": request.temperature,
            "stream": True,
        }
        if system:
            body["system"] = system
        return body

    def on_event(self, event: SSEEvent, t_ns: int, state: StreamState) -> None:
        try:
            obj = json.loads(event.data)
        except ValueError:
            state.error = f"malformed JSON in stream event: {event.data[:80]!r}"
            return
        if not isinstance(obj, dict):
            state.error = f"unexpected stream event: {event.data[:80]!r}"
            return
        kind = obj.get("type") or event.event
        if kind == "content_block_delta":
            delta = obj.get("delta") or {}
            if delta.get("type") == "text_delta" and delta.get("text"):
                state.chunks.append((t_ns, delta["text"]))
        elif kind == "message_start":
            _usage(((obj.get("message") or {}).get("usage")) or {}, state, final=False)
        elif kind == "message_delta":
            stop = (obj.get("delta") or {}).get("stop_reason")
            if stop:
                state.finish_reason = STOP_REASONS.get(stop, stop)
            _usage(obj.get("usage") or {}, state, final=True)
        elif kind == "message_stop":
            state.done = True
        elif kind == "error":
            err = obj.get("error") or {}
            msg = err.get("message", err) if isinstance(err, dict) else err
            state.error = f"API error in stream: {msg}"


def _usage(usage: dict[str, Any], state: StreamState, *, final: bool) -> None:
    if usage.get("input_tokens") is not None:
        cache_read = int(usage.get("cache_read_input_tokens") or 0)
        cache_write = int(usage.get("cache_creation_input_tokens") or 0)
        # Anthropic's input_tokens exclude cache reads and writes; edgeprof counts all input.
        state.input_tokens = int(usage["input_tokens"]) + cache_read + cache_write
        state.cached_input_tokens = cache_read
    if final and usage.get("output_tokens") is not None:
        state.output_tokens = int(usage["output_tokens"])
