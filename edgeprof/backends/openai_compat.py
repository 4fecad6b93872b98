"""OpenAI-compatible chat completions, streamed.

Works with any `/v1/chat/completions` endpoint (OpenAI, Groq, Together, vLLM, the llama.cpp
server, Ollama...); the HTTP loop, retries and settings are `cloud.CloudBackend`'s.

Answer signals (backends/signals.py): a cloud target is asked for the log-probabilities of its
tokens and their top 5 (`logprobs`, `top_logprobs`), which are stored as the request's signals
(source `api-top-logprobs`). A server that refuses the fields (HTTP 400 or 422 naming them:
OpenAI's reasoning models, some compatible servers) is asked again at once without them, and
never again by this backend; its answers then have none (NULL columns), as do those of a server
that ignores the fields. A server on this machine measured as the device is not asked unless
`logprobs` is set: producing them is work that would be measured with the answer
(llama-cpp-python's server sorts the whole vocabulary in Python per token: decode at a fifth
of its speed, docs/benchmarks.md).
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from dataclasses import dataclass, replace
from typing import Any, ClassVar, TypeGuard

from edgeprof.backends.base import BackendOptions, ModelInfo, Request, ServerTimings
from edgeprof.backends.cloud import CloudBackend, CloudSettings
from edgeprof.backends.counting import TokenCounter, openai_counter
from edgeprof.backends.local_server import server_version
from edgeprof.backends.signals import TopLogprobSignals
from edgeprof.backends.streaming import SSEEvent, StreamState

TOP_LOGPROBS = 5  # alternatives asked for per token: OpenAI allows up to 20
REFUSAL_STATUS = (400, 422)  # 422: FastAPI-based servers' answer to a field they do not know

log = logging.getLogger("edgeprof")


@dataclass(frozen=True)
class OpenAISettings(CloudSettings):
    # Ask for the tokens' log-probabilities (the answer's signals). None: asked of a remote
    # API, not of a server on this machine measured as the device (see the module docstring).
    logprobs: bool | None = None


class OpenAIBackend(CloudBackend):
    name: ClassVar[str] = "openai"
    default_base_url: ClassVar[str] = "https://api.openai.com/v1"
    default_key_env: ClassVar[str] = "OPENAI_API_KEY"
    default_provider: ClassVar[str] = "openai"
    Settings: ClassVar[type[OpenAISettings]] = OpenAISettings

    def __init__(self, options: BackendOptions, settings: OpenAISettings | None = None) -> None:
        super().__init__(options, settings)
        self.settings: OpenAISettings
        asked = self.settings.logprobs
        self.logprobs = asked if asked is not None else self.kind == "remote"
        # the server's refusal of `logprobs`, once it has said it: not asked again
        self.logprobs_refused: str | None = None
        self._refusal_lock = threading.Lock()

    def token_counter(self) -> TokenCounter | None:
        return super().token_counter() or openai_counter(self.model)

    def device_model_info(self) -> ModelInfo:
        """A server on this machine; llama-server's /props names the model file it serves,
        which is hashed (as a llamacpp run's) when this user can read it."""
        info = super().device_model_info()
        name = self.server.name if self.server is not None else None
        if name != "llama-server":
            return info
        _, props = server_version(self.client(), self.server_root(), name)
        path = props.get("model_path")
        if not isinstance(path, str) or not path:
            return info
        readable = os.path.isfile(path) and os.access(path, os.R_OK)
        return replace(
            info,
            path=path if readable else None,
            size_bytes=os.path.getsize(path) if readable else None,
            extra={**info.extra, "server_model_path": path},
        )

    def base_path(self, path: str) -> str:
        # "http://host:8000" means the server's /v1 API, as every compatible server mounts it.
        return path or "/v1"

    def params(self) -> dict[str, Any]:
        return {**super().params(), "logprobs": self.logprobs}

    def stream_url(self) -> str:
        return self.endpoint("/chat/completions")

    def models_url(self) -> str:
        return self.endpoint("/models")

    def headers(self, key: str | None) -> dict[str, str]:
        h = {"Accept": "text/event-stream"}
        if key:
            h["Authorization"] = f"Bearer {key}"
        return h

    def body(self, request: Request) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [dict(m) for m in request.messages],
            "temperature": request.temperature,
            "seed": request.seed,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        # OpenAI's reasoning models refuse max_tokens; compatible servers mostly know only it.
        limit_key = "max_completion_tokens" if "api.openai.com" in self.base_url else "max_tokens"
        body[limit_key] = request.max_tokens
        if request.response_schema is not None:
            body["response_format"] = self.response_format(dict(request.response_schema))
        if self.logprobs and self.logprobs_refused is None:
            body["logprobs"] = True
            body["top_logprobs"] = TOP_LOGPROBS
        return body

    def without_refused(
        self, body: dict[str, Any], status: int, detail: str
    ) -> dict[str, Any] | None:
        """A server that refuses `logprobs` is asked again without them, now and from now on."""
        if status not in REFUSAL_STATUS or "logprobs" not in body:
            return None
        if "logprobs" not in detail.lower():
            return None
        detail = detail[:300]  # the message, shortened for the log and the run's notes
        with self._refusal_lock:
            first = self.logprobs_refused is None
            self.logprobs_refused = detail
        if first:
            log.warning(
                "openai: %s refused `logprobs` (HTTP %d: %s); asking without them from now on: "
                "this run's answers have no signals (set `logprobs` false to not ask)",
                self.safe_base_url(), status, detail,
            )  # fmt: skip
        return {k: v for k, v in body.items() if k not in ("logprobs", "top_logprobs")}

    def response_format(self, schema: dict[str, Any]) -> dict[str, Any]:
        """OpenAI's structured outputs; llama.cpp's server (and most compatible ones) take a
        schema inside `json_object` instead, which becomes a grammar there."""
        if "api.openai.com" in self.base_url:
            return {
                "type": "json_schema",
                "json_schema": {"name": "verdict", "schema": schema, "strict": True},
            }
        return {"type": "json_object", "schema": schema}

    def on_event(self, event: SSEEvent, t_ns: int, state: StreamState) -> None:
        data = event.data
        if data == "[DONE]":
            state.done = True
            return
        try:
            obj = json.loads(data)
        except ValueError:
            state.error = f"malformed JSON in stream chunk: {data[:80]!r}"
            return
        if not isinstance(obj, dict):
            state.error = f"unexpected stream chunk: {data[:80]!r}"
            return
        if obj.get("error"):
            err = obj["error"]
            msg = err.get("message", err) if isinstance(err, dict) else err
            state.error = f"API error in stream: {msg}"
            return
        _usage(obj, state)
        for choice in obj.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            content = (choice.get("delta") or {}).get("content")
            if content:
                state.chunks.append((t_ns, content))
            logprobs = choice.get("logprobs")
            if isinstance(logprobs, dict):
                _logprobs(logprobs, state)
            if choice.get("finish_reason"):
                state.finish_reason = choice["finish_reason"]


def _logprobs(logprobs: dict[str, Any], state: StreamState) -> None:
    """A chunk's `logprobs.content`: one entry per token of its text, with the token's
    log-probability and its `top_logprobs` alternatives (the answer's signals)."""
    for entry in logprobs.get("content") or ():
        if not isinstance(entry, dict):
            continue
        if state.signals is None:
            state.signals = TopLogprobSignals()
        value = entry.get("logprob")
        if not _number(value):  # a token all the same: counted, its answer left without figures
            state.signals.add_unknown()
            continue
        tops = entry.get("top_logprobs") or ()
        top = [t["logprob"] for t in tops if isinstance(t, dict) and _number(t.get("logprob"))]
        state.signals.add(float(value), top)


def _number(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _usage(obj: dict[str, Any], state: StreamState) -> None:
    """A chunk's token counts, and llama-server's own timings where it sends them (each chunk
    carries the latest)."""
    timings = obj.get("timings")
    if isinstance(timings, dict):
        state.server_timings = llama_server_timings(timings)
    usage = obj.get("usage")
    if not isinstance(usage, dict) or usage.get("completion_tokens") is None:
        return
    state.input_tokens = int(usage.get("prompt_tokens") or 0)
    state.output_tokens = int(usage["completion_tokens"])
    details = usage.get("prompt_tokens_details") or {}
    state.cached_input_tokens = int(details.get("cached_tokens") or 0)
    out_details = usage.get("completion_tokens_details") or {}
    state.reasoning_tokens = int(out_details.get("reasoning_tokens") or 0)


def llama_server_timings(timings: dict[str, Any]) -> ServerTimings:
    """llama-server's `timings` object (milliseconds) as the server's own figures."""

    def number(key: str) -> float | None:
        value = timings.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            return None
        return float(value)

    def count(key: str) -> int | None:
        value = number(key)
        return int(value) if value is not None else None

    def seconds(key: str) -> float | None:
        value = number(key)
        return value / 1e3 if value is not None else None

    return ServerTimings(
        source="llama-server",
        prompt_tokens=count("prompt_n"),
        prompt_s=seconds("prompt_ms"),
        output_tokens=count("predicted_n"),
        decode_s=seconds("predicted_ms"),
    )
