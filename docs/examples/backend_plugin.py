"""edgeprof backend plugin: "echo", a stand-in model that answers with the prompt's own words.

A real backend wraps an inference engine; this one shows the whole contract with nothing to
install. It runs on this machine (`kind = "device"`), so edgeprof attributes the device's power
to its requests, and it takes one setting of its own, `words_per_s`, checked by edgeprof from
the `Settings` dataclass. This one file is the whole backend: the class and its one
registration line.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, ClassVar

from edgeprof.backends import (
    Backend,
    Generation,
    ModelInfo,
    Request,
    TargetKind,
    TokenEvent,
    register_backend,
)
from edgeprof.errors import UsageError


@dataclass(frozen=True)
class EchoSettings:
    words_per_s: float = 2000.0  # how fast the "model" speaks

    def __post_init__(self) -> None:
        if not self.words_per_s > 0:
            raise UsageError(f"echo: `words_per_s` must be > 0, got {self.words_per_s}")


class EchoBackend(Backend):
    name: ClassVar[str] = "echo"
    kind: TargetKind = "device"  # "remote" for an API served elsewhere
    Settings: ClassVar[type[EchoSettings]] = EchoSettings
    settings: EchoSettings  # what edgeprof built from the user's settings, checked

    def load(self) -> ModelInfo:
        # One-off work belongs here: the runner times and meters it outside every request.
        return ModelInfo(
            target="echo", quant="none", extra={"words_per_s": self.settings.words_per_s}
        )

    def generate(self, request: Request) -> Generator[TokenEvent, None, Generation]:
        prompt = " ".join(m["content"] for m in request.messages)
        words = prompt.split()[: request.max_tokens]
        gap_s = 1.0 / self.settings.words_per_s
        for word in words:
            time.sleep(gap_s)  # "decoding" one token
            yield TokenEvent(t_ns=time.perf_counter_ns(), text=word + " ")
        finish = "length" if len(words) == request.max_tokens else "stop"
        return Generation(
            input_tokens=len(prompt.split()),  # exact: this model's tokenizer is str.split
            output_tokens=len(words),
            text=" ".join(words),
            finish_reason=finish,
        )

    def params(self) -> dict[str, Any]:
        return {**super().params(), "words_per_s": self.settings.words_per_s}


register_backend("echo", EchoBackend)

__all__ = ["EchoBackend", "EchoSettings"]
