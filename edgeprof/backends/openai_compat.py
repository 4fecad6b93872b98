"""OpenAI-compatible chat completions over HTTP streaming, and the base of every cloud backend.

Works with any `/v1/chat/completions` endpoint (OpenAI, Groq, Together, vLLM, the llama.cpp
server, Ollama...). httpx with edgeprof's own SSE parser rather than the openai SDK: the SDK
builds a pydantic object per chunk, and the per-chunk cost is what `scripts/bench_client.py`
measures. TTFT counts from just before the POST (the runner's request start) to the first chunk
with content, so retry waits are part of it, as a user would feel them.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from abc import abstractmethod
from collections.abc import Generator, Mapping
from typing import Any, ClassVar

import httpx

from edgeprof.backends.base import (
    Backend,
    BackendOptions,
    Generation,
    ModelInfo,
    Request,
    TokenEvent,
)
from edgeprof.backends.streaming import (
    RETRYABLE_STATUS,
    SSEDecoder,
    SSEEvent,
    StreamState,
    backoff_s,
    generation,
    retry_after_s,
    token_events,
)
from edgeprof.errors import CloudAPIError, UsageError
from edgeprof.prices import (
    ModelPrice,
    lookup_price,
    manual_price,
    provider_for_url,
)


class CloudBackend(Backend):
    """An HTTP streaming chat API. Subclasses give the URLs, headers, body and event parser.

    One httpx.Client (thread-safe, pooled) serves every concurrent `generate` call; all
    per-request state lives in locals, so the runner may call `generate` from many threads.
    """

    default_base_url: ClassVar[str]
    default_key_env: ClassVar[str]
    default_provider: ClassVar[str]
    OPTION_KEYS: ClassVar[frozenset[str]] = frozenset(
        {"base_url", "api_key_env", "price_in_usd_per_m", "price_out_usd_per_m", "provider",
         "timeout_s", "max_retries", "total_timeout_s"}
    )  # fmt: skip

    def __init__(self, options: BackendOptions) -> None:
        super().__init__(options)
        extra = {k: v for k, v in options.extra.items() if v is not None}
        unknown = sorted(set(extra) - self.OPTION_KEYS)
        if unknown:
            raise UsageError(
                f"the {self.name} backend does not take {', '.join(unknown)}; "
                f"it takes {', '.join(sorted(self.OPTION_KEYS))}"
            )
        if not options.model or not options.model.strip():
            raise UsageError(f"the {self.name} backend needs --model NAME (the endpoint's model)")
        self.model = options.model.strip()
        self.base_url = self.normalize_base_url(str(extra.get("base_url") or self.default_base_url))
        host = httpx.URL(self.base_url).host
        self.loopback = host in ("127.0.0.1", "localhost", "::1")
        self.api_key_env = str(extra.get("api_key_env") or self.default_key_env)
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.api_key_env):
            # Never echo it: a user may have passed the key itself here.
            raise UsageError(
                "--api-key-env takes the NAME of an environment variable holding the key "
                "(e.g. OPENAI_API_KEY), not the key"
            )
        self.timeout_s = _positive(extra, "timeout_s", 300.0)
        self.total_timeout_s = _positive(extra, "total_timeout_s", 900.0)
        retries = extra.get("max_retries", 4)
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise UsageError(f"max_retries must be a whole number >= 0, got {retries!r}")
        self.max_retries = retries
        self.price = self._resolve_price(extra)
        self._client: httpx.Client | None = None
        self._client_lock = threading.Lock()

    # -- hooks ---------------------------------------------------------------------------
    def normalize_base_url(self, url: str) -> str:
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL:
            parsed = httpx.URL("invalid:")
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise UsageError(f"--base-url must be an http(s) URL like {self.default_base_url}")
        return str(parsed.copy_with(path=self.base_path(parsed.path.rstrip("/"))))

    def base_path(self, path: str) -> str:
        return path

    def endpoint(self, suffix: str) -> str:
        """base URL + suffix, keeping any query string (Azure's api-version) at the end."""
        u = httpx.URL(self.base_url)
        return str(u.copy_with(path=u.path.rstrip("/") + suffix))

    @abstractmethod
    def stream_url(self) -> str: ...

    @abstractmethod
    def models_url(self) -> str: ...

    @abstractmethod
    def headers(self, key: str | None) -> dict[str, str]: ...

    @abstractmethod
    def body(self, request: Request) -> dict[str, Any]: ...

    @abstractmethod
    def on_event(self, event: SSEEvent, t_ns: int, state: StreamState) -> None:
        """Record one SSE event; set state.done at the end, state.error on an error event."""

    # -- contract ------------------------------------------------------------------------
    def check(self) -> None:
        """The key is set and the host answers: one clear error before any work starts."""
        key = self._key()
        try:
            resp = self.client().get(
                self.models_url(), headers=self.headers(key), timeout=min(30.0, self.timeout_s)
            )
        except httpx.HTTPError as e:
            raise CloudAPIError(
                f"cannot reach {self.safe_base_url()} ({type(e).__name__}: {e}); "
                "check --base-url and the network"
            ) from None
        if resp.status_code in (401, 403):
            raise CloudAPIError(
                f"{self.safe_base_url()} refused the API key in ${self.api_key_env} "
                f"(HTTP {resp.status_code}); set a valid key"
            )

    def load(self) -> ModelInfo:
        self.check()
        return ModelInfo(
            target=self.model,
            quant=None,
            extra={
                "base_url": self.safe_base_url(),
                "price_source": self.price.source,
                "price_snapshot": self.price.snapshot_date,
                "price_provider": self.price.provider,
                "price_model": self.price.model,
                "price_in_usd_per_m": self.price.input_usd_per_m,
                "price_out_usd_per_m": self.price.output_usd_per_m,
                "price_cached_in_usd_per_m": self.price.cached_input_usd_per_m,
            },
        )

    def params(self) -> dict[str, Any]:
        return {
            "seed": self.options.seed,
            "base_url": self.safe_base_url(),
            "api_key_env": self.api_key_env,  # the variable's name, never its value
            "timeout_s": self.timeout_s,
            "total_timeout_s": self.total_timeout_s,
            "max_retries": self.max_retries,
        }

    def generate(self, request: Request) -> Generator[TokenEvent, None, Generation]:
        state = self._fetch(request)
        for t_ns, text, n in token_events(state, request):
            yield TokenEvent(t_ns=t_ns, text=text, n_tokens=n)
        return generation(state, request, self.price)

    def close(self) -> None:
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    # -- internals -----------------------------------------------------------------------
    def client(self) -> httpx.Client:
        with self._client_lock:
            if self._client is None:
                self._client = httpx.Client(
                    timeout=httpx.Timeout(self.timeout_s, connect=min(30.0, self.timeout_s)),
                    limits=httpx.Limits(max_connections=None, max_keepalive_connections=256),
                    follow_redirects=False,
                )
            return self._client

    def safe_base_url(self) -> str:
        """The base URL without user:password or query string, which may carry a key."""
        u = httpx.URL(self.base_url)
        port = f":{u.port}" if u.port else ""
        return f"{u.scheme}://{u.host}{port}{u.path}".rstrip("/")

    def _key(self) -> str | None:
        key = os.environ.get(self.api_key_env)
        if not key and not self.loopback:
            raise CloudAPIError(
                f"no API key: set ${self.api_key_env} (or name another variable with "
                "--api-key-env VAR)"
            )
        return key or None

    def _resolve_price(self, extra: Mapping[str, Any]) -> ModelPrice:
        p_in, p_out = extra.get("price_in_usd_per_m"), extra.get("price_out_usd_per_m")
        if (p_in is None) != (p_out is None):
            raise UsageError("give both --price-in and --price-out (USD per 1M tokens), or neither")
        if p_in is not None and p_out is not None:
            return manual_price(p_in, p_out)
        provider = extra.get("provider")
        if provider is None:
            provider = provider_for_url(self.base_url)
        if provider is None and self.base_url == self.default_base_url:
            provider = self.default_provider
        return lookup_price(self.model, provider=provider)

    def _fetch(self, request: Request) -> StreamState:
        state = StreamState()
        deadline = time.monotonic() + self.total_timeout_s
        try:
            key = self._key()
        except CloudAPIError as e:
            state.error = str(e)
            return state
        client, url, headers, body = (
            self.client(),
            self.stream_url(),
            self.headers(key),
            self.body(request),
        )
        for attempt in range(self.max_retries + 1):
            state.http_attempts = attempt + 1
            retry_wait: float | None = None
            try:
                with client.stream("POST", url, json=body, headers=headers) as resp:
                    if resp.status_code < 400:
                        state.error = None  # an earlier attempt's failure, now retried
                        self._read(resp, state, deadline)
                        return state
                    detail = _error_detail(resp)
                    state.error = f"HTTP {resp.status_code} from {self.safe_base_url()}: {detail}"
                    if resp.status_code not in RETRYABLE_STATUS:
                        return state
                    retry_wait = retry_after_s(resp.headers)
            except httpx.HTTPError as e:
                # `_read` handles its own errors: this one came before any response, so retry.
                state.error = f"no response from {self.safe_base_url()}: {type(e).__name__}: {e}"
            if attempt == self.max_retries:
                break
            wait = backoff_s(attempt) if retry_wait is None else retry_wait
            if time.monotonic() + wait >= deadline:
                state.error = (
                    f"{state.error} (no retry: waiting {wait:.1f} s would pass the total timeout)"
                )
                return state
            time.sleep(wait)
        state.error = f"{state.error} (after {state.http_attempts} attempts)"
        return state

    def _read(self, resp: httpx.Response, state: StreamState, deadline: float) -> None:
        decoder = SSEDecoder()
        perf_ns = time.perf_counter_ns
        try:
            for raw in resp.iter_bytes():
                t_ns = perf_ns()  # arrival: every event in this read shares it
                for event in decoder.feed(raw):
                    self.on_event(event, t_ns, state)
                    if state.done or state.error:
                        return
                if time.monotonic() > deadline:
                    limit = self.total_timeout_s
                    state.error = f"stopped: the request passed its total timeout of {limit:g} s"
                    return
        except httpx.HTTPError as e:
            state.error = _broken(state, e)
            return
        for event in decoder.flush():
            self.on_event(event, perf_ns(), state)
        if not (state.done or state.error or state.finish_reason):
            state.error = (
                f"stream ended before the server finished it, after {len(state.chunks)} chunks"
            )


def _positive(extra: Mapping[str, Any], key: str, default: float) -> float:
    value = extra.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise UsageError(f"{key} must be a number of seconds > 0, got {value!r}")
    return float(value)


def _error_detail(resp: httpx.Response) -> str:
    """The server's own error message, in one short line."""
    raw = b""
    try:
        raw = resp.read()[:2000]
        obj = json.loads(raw)
        err = obj.get("error", obj) if isinstance(obj, dict) else obj
        msg = err.get("message", err) if isinstance(err, dict) else err
        text = str(msg)
    except (ValueError, httpx.HTTPError):
        text = raw.decode("utf-8", errors="replace")
    return " ".join(text.split())[:300] or resp.reason_phrase


def _broken(state: StreamState, e: Exception) -> str:
    return f"stream broke after {len(state.chunks)} chunks: {type(e).__name__}: {e}"


class OpenAIBackend(CloudBackend):
    name: ClassVar[str] = "openai"
    default_base_url: ClassVar[str] = "https://api.openai.com/v1"
    default_key_env: ClassVar[str] = "OPENAI_API_KEY"
    default_provider: ClassVar[str] = "openai"
    runs_locally: ClassVar[bool] = False  # the device power says nothing about the server

    def base_path(self, path: str) -> str:
        # "http://host:8000" means the server's /v1 API, as every compatible server mounts it.
        return path or "/v1"

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
        return body

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
        usage = obj.get("usage")
        if isinstance(usage, dict) and usage.get("completion_tokens") is not None:
            state.input_tokens = int(usage.get("prompt_tokens") or 0)
            state.output_tokens = int(usage["completion_tokens"])
            details = usage.get("prompt_tokens_details") or {}
            state.cached_input_tokens = int(details.get("cached_tokens") or 0)
            out_details = usage.get("completion_tokens_details") or {}
            state.reasoning_tokens = int(out_details.get("reasoning_tokens") or 0)
        for choice in obj.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            content = (choice.get("delta") or {}).get("content")
            if content:
                state.chunks.append((t_ns, content))
            if choice.get("finish_reason"):
                state.finish_reason = choice["finish_reason"]
