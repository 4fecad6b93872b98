"""The base of every cloud backend: a streaming chat API over HTTP, with retries.

httpx with edgeprof's own SSE parser rather than a vendor SDK: the openai SDK builds a pydantic
object per chunk, and the per-chunk cost is what `scripts/bench_client.py` measures. TTFT
counts from just before the POST (the runner's request start) to the first chunk with content,
so retry waits are part of it, as a user would feel them.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from abc import abstractmethod
from collections.abc import Generator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Protocol

import httpx

from edgeprof.backends.base import (
    Backend,
    BackendOptions,
    Generation,
    ModelInfo,
    Request,
    TargetKind,
    TokenEvent,
)
from edgeprof.backends.counting import TokenCounter, gguf_counter
from edgeprof.backends.local_server import (
    ListenerFinder,
    ServerProcess,
    find_server,
    is_loopback_host,
    placement,
    server_version,
    url_port,
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
from edgeprof.decision.prices import (
    ModelPrice,
    lookup_price,
    manual_price,
    provider_for_url,
)
from edgeprof.errors import CloudAPIError, UsageError


@dataclass(frozen=True)
class CloudSettings:
    base_url: str | None = None  # default: the provider's own API
    api_key_env: str | None = None  # the NAME of the variable holding the key, never the key
    price_in_usd_per_m: float | None = None  # override the price list (both or neither)
    price_out_usd_per_m: float | None = None
    provider: str | None = None  # the price list's provider, when the URL does not tell
    timeout_s: float = 300.0  # per read: long, since a streaming answer may pause
    total_timeout_s: float = 900.0
    max_retries: int = 4
    # A GGUF whose tokenizer counts tokens when the server reports no usage (a llama.cpp
    # server of a local file); OpenAI models use their own BPE when bpe-openai is installed.
    tokenizer: Path | None = None
    # A server on this machine is a device target (power, memory, device economics): None
    # decides by the URL (loopback), True for one reached through another address
    # (`--on-device`), False to treat a loopback server as remote (`--remote`).
    on_device: bool | None = None

    def __post_init__(self) -> None:
        for name in ("timeout_s", "total_timeout_s"):
            value = getattr(self, name)
            if not value > 0:
                raise UsageError(f"`{name}` must be a number of seconds > 0, got {value!r}")
        if self.max_retries < 0:
            raise UsageError(f"`max_retries` must be a whole number >= 0, got {self.max_retries}")
        if (self.price_in_usd_per_m is None) != (self.price_out_usd_per_m is None):
            raise UsageError(
                "give both `price_in_usd_per_m` and `price_out_usd_per_m` (USD per 1M tokens), "
                "or neither"
            )


class EventDecoder(Protocol):
    def feed(self, chunk: bytes) -> list[SSEEvent]: ...

    def flush(self) -> list[SSEEvent]: ...


class CloudBackend(Backend):
    """An HTTP streaming chat API. Subclasses give the URLs, headers, body and event parser.

    One httpx.Client (thread-safe, pooled) serves every concurrent `generate` call; all
    per-request state lives in locals, so the runner may call `generate` from many threads.
    """

    default_base_url: ClassVar[str]
    default_key_env: ClassVar[str]
    default_provider: ClassVar[str]
    kind: TargetKind = "remote"  # the device's power says nothing about the server...
    Settings: ClassVar[type[CloudSettings]] = CloudSettings
    # the local server this API belongs to ("ollama"), for its version; None: by its process
    server_api: ClassVar[str | None] = None

    def __init__(self, options: BackendOptions, settings: CloudSettings | None = None) -> None:
        super().__init__(options, settings)
        self.settings: CloudSettings
        s = self.settings
        if not options.model or not options.model.strip():
            raise UsageError(f"the {self.name} backend needs `model` (the endpoint's model name)")
        self.model = options.model.strip()
        self.base_url = self.normalize_base_url(s.base_url or self.default_base_url)
        # the provider's own API is never this machine: no name lookup for it
        given = s.base_url is not None or self.default_base_url.startswith("http://127.")
        self.loopback = given and is_loopback_host(httpx.URL(self.base_url).host)
        self.kind = placement(self.loopback, s.on_device)
        if self.kind == "device" and s.base_url:
            # recorded with the run's settings (a device's are): never user:password or a query
            self.settings = replace(s, base_url=self.safe_base_url())
        self.server: ServerProcess | None = None  # a device target's serving process, by check()
        self.find_listener: ListenerFinder | None = None  # tests inject one; None: psutil
        self.api_key_env = s.api_key_env or self.default_key_env
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.api_key_env):
            # Never echo it: a user may have passed the key itself here.
            raise UsageError(
                "`api_key_env` takes the NAME of an environment variable holding the key "
                "(e.g. OPENAI_API_KEY), not the key"
            )
        self.timeout_s = s.timeout_s
        self.total_timeout_s = s.total_timeout_s
        self.max_retries = s.max_retries
        self.price = self._resolve_price(s)
        self.counter: TokenCounter | None = None  # set by load()
        self._client: httpx.Client | None = None
        self._client_lock = threading.Lock()

    # -- hooks ---------------------------------------------------------------------------
    def normalize_base_url(self, url: str) -> str:
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL:
            parsed = httpx.URL("invalid:")
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise UsageError(f"`base_url` must be an http(s) URL like {self.default_base_url}")
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

    def without_refused(
        self, body: dict[str, Any], status: int, detail: str
    ) -> dict[str, Any] | None:
        """The request's body without an optional field the server refused (`status`, its
        message `detail`), to send again at once; None: the refusal stands (the default)."""
        return None

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
                "check `base_url` and the network"
            ) from None
        if resp.status_code in (401, 403):
            raise CloudAPIError(
                f"{self.safe_base_url()} refused the API key in ${self.api_key_env} "
                f"(HTTP {resp.status_code}); set a valid key"
            )
        if self.kind == "device":
            self.server = self.identify_server()

    def identify_server(self) -> ServerProcess:
        """The process serving on this machine, named, with the version it reports."""
        found = find_server(url_port(self.base_url), self.find_listener)
        api = self.server_api or found.name  # the server's kind: its API says, else its process
        version, _ = server_version(self.client(), self.server_root(), api)
        return replace(found, version=version)

    def server_root(self) -> str:
        """The server's own root (where /props, /api/version live), without the API's path."""
        u = httpx.URL(self.base_url)
        port = f":{u.port}" if u.port else ""
        return f"{u.scheme}://{u.host}{port}"

    def measured_pid(self) -> int | None:
        return self.server.pid if self.server is not None else None

    def token_counter(self) -> TokenCounter | None:
        """The tokenizer that counts tokens when the server reports no usage (see counting)."""
        if self.settings.tokenizer is not None:
            return gguf_counter(self.settings.tokenizer.expanduser())
        return None

    def load(self) -> ModelInfo:
        if self.server is None:
            self.check()
        self.counter = self.token_counter()
        if self.kind == "device":
            return self.device_model_info()
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
                "token_counter": self.counter.name if self.counter else "estimate",
            },
        )

    def device_model_info(self) -> ModelInfo:
        """A server on this machine: no per-token price; the serving process and what the
        server says of its model (a subclass adds the model's identity)."""
        return ModelInfo(target=self.model, extra=self.server_extra())

    def server_extra(self) -> dict[str, Any]:
        server = self.server.params() if self.server is not None else None
        return {
            "base_url": self.safe_base_url(),
            "server": server,
            "token_counter": self.counter.name if self.counter else "estimate",
        }

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
        for t_ns, text, n in token_events(state, request, self.counter):
            yield TokenEvent(t_ns=t_ns, text=text, n_tokens=n)
        result = generation(state, request, self.price, self.counter)
        if self.kind == "device":
            result.cost_usd = None  # the device's costs are priced by `decide`, not per token
        return result

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
        if not key and not self.loopback and self.kind == "remote":
            raise CloudAPIError(
                f"no API key: set ${self.api_key_env} (or name another variable with "
                "`api_key_env` VAR)"
            )
        return key or None

    def _resolve_price(self, s: CloudSettings) -> ModelPrice:
        p_in, p_out = s.price_in_usd_per_m, s.price_out_usd_per_m
        if p_in is not None and p_out is not None:
            return manual_price(p_in, p_out)
        if self.kind == "device":
            return manual_price(0.0, 0.0)  # never used: a device target has no token price
        provider = s.provider
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
        attempt = 0  # retries of a failure; a body without a refused field goes again at once
        refused = False  # ...once
        while True:
            state.http_attempts += 1
            state.last_attempt_ns = time.perf_counter_ns()
            retry_wait: float | None = None
            smaller: dict[str, Any] | None = None
            try:
                with client.stream("POST", url, json=body, headers=headers) as resp:
                    if resp.status_code < 400:
                        state.error = None  # an earlier attempt's failure, now retried
                        self._read(resp, state, deadline)
                        return state
                    # whole (up to 2,000 bytes) for the refusal check: a validation error may
                    # name the refused field after others; shortened for the message
                    whole = _error_detail(resp, DETAIL_READ_BYTES)
                    detail = whole[:DETAIL_CHARS] or resp.reason_phrase
                    state.error = f"HTTP {resp.status_code} from {self.safe_base_url()}: {detail}"
                    if not refused:
                        smaller = self.without_refused(body, resp.status_code, whole)
                    if smaller is None and resp.status_code not in RETRYABLE_STATUS:
                        return state
                    retry_wait = retry_after_s(resp.headers)
            except httpx.HTTPError as e:
                # `_read` handles its own errors: this one came before any response, so retry.
                state.error = f"no response from {self.safe_base_url()}: {type(e).__name__}: {e}"
            if smaller is not None:
                body, refused = smaller, True
                continue
            if attempt == self.max_retries:
                break
            wait = backoff_s(attempt) if retry_wait is None else retry_wait
            if time.monotonic() + wait >= deadline:
                state.error = (
                    f"{state.error} (no retry: waiting {wait:.1f} s would pass the total timeout)"
                )
                return state
            time.sleep(wait)
            state.retry_wait_s += wait
            attempt += 1
        state.error = f"{state.error} (after {state.http_attempts} attempts)"
        return state

    def decoder(self) -> EventDecoder:
        """How the response body becomes events: server-sent events (Ollama: NDJSON)."""
        return SSEDecoder()

    def _read(self, resp: httpx.Response, state: StreamState, deadline: float) -> None:
        decoder = self.decoder()
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


DETAIL_READ_BYTES = 2000
DETAIL_CHARS = 300  # of the server's message in a request's error


def _error_detail(resp: httpx.Response, limit: int = DETAIL_CHARS) -> str:
    """The server's own error message, in one line of at most `limit` characters."""
    raw = b""
    try:
        raw = resp.read()[:DETAIL_READ_BYTES]
        obj = json.loads(raw)
        err = obj.get("error", obj) if isinstance(obj, dict) else obj
        msg = err.get("message", err) if isinstance(err, dict) else err
        text = str(msg)
    except (ValueError, httpx.HTTPError):
        text = raw.decode("utf-8", errors="replace")
    return " ".join(text.split())[:limit] or resp.reason_phrase


def _broken(state: StreamState, e: Exception) -> str:
    return f"stream broke after {len(state.chunks)} chunks: {type(e).__name__}: {e}"
