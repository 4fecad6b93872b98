"""The backend contract: one class per kind of target (llama.cpp, ONNX Runtime, a cloud API).

A backend is built from the shared `BackendOptions` and its own typed `Settings` (a frozen
dataclass, checked by `backends.settings.parse_settings`), loads its model once (`load`, timed
and metered by the runner outside every request window), then answers requests with
`generate`, a generator that yields one `TokenEvent` per token (or per chunk, with `n_tokens`)
and *returns* the final `Generation` (exact token counts, finish reason, error).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from edgeprof.backends.signals import AnswerSignals

TokenCountMethod = Literal["tokenizer", "api", "estimated"]
# "device": runs on this machine, so its power is the request's energy; "remote": a server
# elsewhere (a cloud API), whose energy this device cannot see. Stored as runs.target_kind.
TargetKind = Literal["device", "remote"]


@dataclass(frozen=True)
class Request:
    prompt_id: str
    messages: tuple[Mapping[str, str], ...]  # chat messages: {"role": ..., "content": ...}
    max_tokens: int
    seed: int = 0
    temperature: float = 0.0  # greedy by default, the same on every target
    # A JSON Schema the answer must follow (a judge's verdict): response_format for
    # OpenAI-compatible servers, a grammar for llama.cpp; backends that cannot constrain
    # output ignore it, and the caller checks the reply.
    response_schema: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class TokenEvent:
    t_ns: int  # time.perf_counter_ns() when the token (or chunk) became available
    text: str
    n_tokens: int = 1  # a cloud chunk may carry several tokens; their gap is split between them


@dataclass(frozen=True)
class ServerTimings:
    """A local server's own account of one request, beside edgeprof's client-side figures:
    Ollama's `*_duration` fields (ns), llama-server's `timings` (ms), in seconds here."""

    source: str  # "ollama" | "llama-server": whose fields these are
    prompt_tokens: int | None = None  # prompt tokens the server evaluated (not cached ones)
    prompt_s: float | None = None
    output_tokens: int | None = None
    decode_s: float | None = None
    load_s: float | None = None  # model load the request waited for (Ollama's load_duration)

    def row(self) -> dict[str, Any]:
        """The request row's `server_*` columns (store m008)."""
        return {
            "server_timings_source": self.source,
            "server_load_s": self.load_s,
            "server_prompt_tokens": self.prompt_tokens,
            "server_prompt_s": self.prompt_s,
            "server_output_tokens": self.output_tokens,
            "server_decode_s": self.decode_s,
        }


@dataclass
class Generation:
    input_tokens: int
    output_tokens: int
    text: str = ""
    finish_reason: str | None = None  # "stop" | "length" | "error" | ...
    error: str | None = None
    token_count_method: TokenCountMethod = "tokenizer"
    cost_usd: float | None = None
    # A remote API may refuse (429, 5xx) and be asked again: what the request went through.
    attempts: int = 1
    retry_wait_s: float = 0.0
    last_attempt_ns: int | None = None  # perf_counter_ns when the final attempt began
    # Input tokens not computed again: a prefix kept in llama.cpp's KV cache, or the cached
    # tokens a cloud API reports (billed at its cached-input price)
    cached_input_tokens: int = 0
    # A local server's own timings of this request, where it reports them
    server_timings: ServerTimings | None = None
    # How sure the model was of its answer (backends/signals.py); None where none was read
    signals: AnswerSignals | None = None


@dataclass(frozen=True)
class ModelInfo:
    target: str  # model file name, or the endpoint's model name
    path: str | None = None
    sha256: str | None = None
    quant: str | None = None
    size_bytes: int | None = None
    arch: str | None = None
    n_params: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)  # recorded in runs.params; no secrets


@dataclass(frozen=True)
class BackendOptions:
    model: str | None = None
    threads: int | None = None
    ctx: int = 4096
    seed: int = 0
    keep_cache: bool = False  # reuse llama.cpp's prompt cache across requests (off: fair TTFT)
    # Backend-specific settings by name, as given; `create_backend` checks them against the
    # backend's `Settings` dataclass before the backend is built.
    settings: Mapping[str, Any] = field(default_factory=dict)

    def check_local(self) -> None:
        """The checks every on-device backend makes of the shared options."""
        from edgeprof.errors import UsageError

        if self.threads is not None and self.threads < 1:
            raise UsageError("`threads` must be at least 1")
        if self.ctx < 16:
            raise UsageError("`ctx` must be at least 16 tokens")


@dataclass(frozen=True)
class NoSettings:
    """The settings of a backend that takes none beyond `BackendOptions`."""


class Backend(ABC):
    """One kind of target. Subclasses set `name`, `kind` and, when they take settings of their
    own, `Settings`; then implement `load` and `generate`."""

    name: ClassVar[str]
    # Not a ClassVar: an HTTP backend decides per instance (a server on this machine is a device)
    kind: TargetKind = "device"
    Settings: ClassVar[type[Any]] = NoSettings
    # Run in a worker process of its own (edgeprof.measure.isolation): a crash of the native
    # code becomes a failed run, not a dead profiler, and memory is the model's alone. The
    # worker imports `native_modules` first, before numpy; `engine` names it in messages.
    isolated: ClassVar[bool] = False
    native_modules: ClassVar[tuple[str, ...]] = ()
    engine: ClassVar[str] = ""

    def __init__(self, options: BackendOptions, settings: Any = None) -> None:
        self.options = options
        self.settings = settings if settings is not None else self.Settings()

    @property
    def runs_locally(self) -> bool:
        return self.kind == "device"

    def measured_pid(self) -> int | None:
        """The process whose memory and CPU are this target's, its children included (a local
        server's, known after `check`); None: this process. The runner hands it to the process
        and NVML samplers (`SensorEnv.pid`)."""
        return None

    def check(self) -> None:  # noqa: B027 - optional hook
        """Fail fast, before a run is recorded: an API key that is missing, a host that does
        not answer. Raise an `EdgeprofError` whose message names the fix."""

    @abstractmethod
    def load(self) -> ModelInfo:
        """Load the model once and describe it. The runner times and meters this call in its
        own window, so do every expensive one-off step here, not in `generate`."""

    @abstractmethod
    def generate(self, request: Request) -> Generator[TokenEvent, None, Generation]:
        """Answer one request: yield a `TokenEvent` as each token (or chunk) arrives, stamped
        with `time.perf_counter_ns()`, and *return* the `Generation` with exact token counts.
        A failure of this request (a broken stream) is returned as `Generation.error`; raise
        only for failures that end the run. Greedy decoding, `request.max_tokens` at most."""

    # An on-device backend that decodes several requests in one batch sets this and implements
    # `check_concurrency` and `serve`; the others answer `--concurrency` above 1 with an error.
    batches: ClassVar[bool] = False

    def check_concurrency(self, requests: Sequence[Request], concurrency: int) -> dict[str, Any]:
        """Before the run: whether `concurrency` sequences of these requests fit (raise a
        `UsageError` naming the fix if not); returns what to record (the KV cache's size)."""
        raise NotImplementedError

    def serve(self, requests: Sequence[Request], concurrency: int) -> Iterator[Any]:
        """Answer the requests `concurrency` at a time in one batch; yield `(request,
        edgeprof.backends.batching.BatchResult)` as each finishes."""
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        """Settings recorded with the run (never secrets)."""
        return {"threads": self.options.threads, "ctx": self.options.ctx, "seed": self.options.seed}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the model and any connection; called once, also after an interrupt."""
