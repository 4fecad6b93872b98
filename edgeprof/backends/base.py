"""The backend contract: one class per kind of target (llama.cpp, ONNX Runtime, a cloud API).

A backend is built from validated `BackendOptions`, loads its model once (`load`, timed and
metered by the runner outside every request window), then answers requests with `generate`,
a generator that yields one `TokenEvent` per token (or per chunk, with `n_tokens`) and
*returns* the final `Generation` (exact token counts, finish reason, error).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

TokenCountMethod = Literal["tokenizer", "api", "estimated"]


@dataclass(frozen=True)
class Request:
    prompt_id: str
    messages: tuple[Mapping[str, str], ...]  # chat messages: {"role": ..., "content": ...}
    max_tokens: int
    seed: int = 0
    temperature: float = 0.0  # greedy by default, the same on every target


@dataclass(frozen=True)
class TokenEvent:
    t_ns: int  # time.perf_counter_ns() when the token (or chunk) became available
    text: str
    n_tokens: int = 1  # a cloud chunk may carry several tokens; their gap is split between them


@dataclass
class Generation:
    input_tokens: int
    output_tokens: int
    text: str = ""
    finish_reason: str | None = None  # "stop" | "length" | "error" | ...
    error: str | None = None
    token_count_method: TokenCountMethod = "tokenizer"
    cost_usd: float | None = None


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
    extra: Mapping[str, Any] = field(default_factory=dict)  # backend-specific, validated there

    def check_local(self) -> None:
        """The checks every on-device backend makes of the shared options."""
        from edgeprof.errors import UsageError

        if self.threads is not None and self.threads < 1:
            raise UsageError("--threads must be at least 1")
        if self.ctx < 16:
            raise UsageError("--ctx must be at least 16 tokens")


class Backend(ABC):
    name: ClassVar[str]
    # False for cloud APIs: the device's own power then says nothing about the request's energy.
    runs_locally: ClassVar[bool] = True

    def __init__(self, options: BackendOptions) -> None:
        self.options = options

    def check(self) -> None:  # noqa: B027 - optional hook
        """Fail fast (API key, reachability) before a run is recorded."""

    @abstractmethod
    def load(self) -> ModelInfo: ...

    @abstractmethod
    def generate(self, request: Request) -> Generator[TokenEvent, None, Generation]: ...

    def params(self) -> dict[str, Any]:
        """Settings recorded with the run (never secrets)."""
        return {"threads": self.options.threads, "ctx": self.options.ctx, "seed": self.options.seed}

    def close(self) -> None:  # noqa: B027 - optional hook
        pass
