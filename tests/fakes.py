"""A deterministic backend for fast runner and CLI tests: no model, exact token counts, and
timing set by its settings, so TTFT and decode tok/s have known expected values.

It registers as `fake` through `register_backend`, the same public call a plugin makes:

    RunConfig(backend="fake", settings={"tokens_per_s": 500.0, "ttft_s": 0.01})
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, ClassVar

from edgeprof.backends import (
    Backend,
    BackendOptions,
    Generation,
    ModelInfo,
    Request,
    TargetKind,
    TokenEvent,
    register_backend,
)
from edgeprof.errors import UsageError


@dataclass(frozen=True)
class FakeSettings:
    tokens_per_s: float = 1000.0  # decode rate: token i comes i / tokens_per_s after the first
    ttft_s: float = 0.005  # wait before the first token
    output_tokens: int | None = None  # tokens per request; None: request.max_tokens
    load_s: float = 0.0  # time `load` takes
    # 1-based number of the `generate` call that fails: "raise" ends the run (a crash), "return"
    # hands back a Generation with an error (a broken request; the run goes on).
    fail_at_request: int | None = None
    fail_mode: str = "raise"
    interrupt_at_request: int | None = None  # this call raises KeyboardInterrupt (Ctrl-C)

    def __post_init__(self) -> None:
        if self.tokens_per_s <= 0:
            raise UsageError("`tokens_per_s` must be positive")
        if self.ttft_s < 0 or self.load_s < 0:
            raise UsageError("`ttft_s` and `load_s` cannot be negative")
        if self.output_tokens is not None and self.output_tokens < 0:
            raise UsageError("`output_tokens` cannot be negative")
        if self.fail_mode not in ("raise", "return"):
            raise UsageError("`fail_mode` must be raise or return")


def count_words(request: Request) -> int:
    """The fake's tokenizer: one input token per whitespace-separated word of every message."""
    return sum(len(m["content"].split()) for m in request.messages)


def token_text(i: int) -> str:
    return f" t{i}"


def sleep_until(t_ns: int) -> None:
    """Sleep until perf_counter_ns() >= t_ns; never returns early, so the configured timing is
    a bound the measured figures can only exceed (TTFT) or fall short of (tok/s)."""
    while (left := t_ns - time.perf_counter_ns()) > 0:
        time.sleep(left / 1e9)


class FakeBackend(Backend):
    name: ClassVar[str] = "fake"
    kind: TargetKind = "device"
    Settings: ClassVar[type[Any]] = FakeSettings
    last: ClassVar[FakeBackend | None] = None  # the latest one built, for tests to inspect

    def __init__(self, options: BackendOptions, settings: Any = None) -> None:
        super().__init__(options, settings)
        self.settings: FakeSettings
        self._lock = threading.Lock()
        self.calls = 0  # generate() calls so far, warm-up included
        self.in_flight = 0
        self.max_in_flight = 0  # the most requests generating at once (concurrency tests)
        self.closed = False
        FakeBackend.last = self

    def load(self) -> ModelInfo:
        sleep_until(time.perf_counter_ns() + int(self.settings.load_s * 1e9))
        return ModelInfo(
            target=self.options.model or "fake-model",
            sha256="0" * 64,  # no file to hash
            quant="none",
            size_bytes=1_000_000,
            extra={"tokens_per_s": self.settings.tokens_per_s, "ttft_s": self.settings.ttft_s},
        )

    def generate(self, request: Request) -> Generator[TokenEvent, None, Generation]:
        s = self.settings
        with self._lock:
            self.calls += 1
            call = self.calls
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if call == s.interrupt_at_request:
                raise KeyboardInterrupt
            n_in = count_words(request)
            if call == s.fail_at_request and s.fail_mode == "raise":
                raise RuntimeError(f"fake backend crashed at request {call}")
            if call == s.fail_at_request:
                return Generation(n_in, 0, finish_reason="error", error=f"fake error at {call}")
            wanted = request.max_tokens if s.output_tokens is None else s.output_tokens
            n_out = min(wanted, request.max_tokens)
            start = time.perf_counter_ns()
            sleep_until(start + int(s.ttft_s * 1e9))
            first = 0
            for i in range(n_out):
                if i:  # scheduled from the first token, so one late wake-up does not add up
                    sleep_until(first + int(i * 1e9 / s.tokens_per_s))
                now = time.perf_counter_ns()
                first = first or now
                yield TokenEvent(now, token_text(i))
            return Generation(
                input_tokens=n_in,
                output_tokens=n_out,
                text="".join(token_text(i) for i in range(n_out)),
                finish_reason="length" if n_out == request.max_tokens else "stop",
            )
        finally:
            with self._lock:
                self.in_flight -= 1

    def params(self) -> dict[str, Any]:
        return {**super().params(), "tokens_per_s": self.settings.tokens_per_s}

    def close(self) -> None:
        self.closed = True


class FakeRemoteBackend(FakeBackend):
    """The same timing, as a remote endpoint: requests in parallel threads (`--concurrency`)."""

    name: ClassVar[str] = "fake-remote"
    kind: TargetKind = "remote"


register_backend("fake", FakeBackend)
register_backend("fake-remote", FakeRemoteBackend)
