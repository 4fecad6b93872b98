"""A backend that answers from a table: fixed answers for grading tests, no model.

Registered as `canned` (device) and `canned-remote` (remote) the way a plugin registers.
Settings: `answers`, a JSON file mapping a request's last message to its answer (unknown
prompts get "I don't know."); `reply`, one answer for every request (a judge that always says
the same thing), or the environment variable CANNED_REPLY, or CANNED_REPLIES (JSON: model
name -> reply) for judges that `grade --judge` builds.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from edgeprof.backends import register_backend
from edgeprof.backends.base import (
    Backend,
    Generation,
    ModelInfo,
    Request,
    TargetKind,
    TokenEvent,
)


@dataclass(frozen=True)
class CannedSettings:
    answers: str | None = None
    reply: str | None = None


class CannedBackend(Backend):
    name: ClassVar[str] = "canned"
    kind: TargetKind = "device"
    Settings: ClassVar[type[Any]] = CannedSettings
    seen: ClassVar[list[Request]] = []  # every request, for tests to inspect

    def load(self) -> ModelInfo:
        s: CannedSettings = self.settings
        self.table = json.loads(Path(s.answers).read_text("utf-8")) if s.answers else {}
        return ModelInfo(target=self.options.model or "canned", sha256="c" * 64, quant="none")

    def generate(self, request: Request) -> Generator[TokenEvent, None, Generation]:
        CannedBackend.seen.append(request)
        s: CannedSettings = self.settings
        last = request.messages[-1]["content"]
        by_model = json.loads(os.environ.get("CANNED_REPLIES") or "{}")
        reply = s.reply if s.reply is not None else os.environ.get("CANNED_REPLY")
        reply = by_model.get(self.options.model, reply)
        text = reply if reply is not None else self.table.get(last, "I don't know.")
        words = text.split(" ")
        for i, w in enumerate(words):
            yield TokenEvent(time.perf_counter_ns(), w if i == 0 else " " + w)
        n_in = sum(len(m["content"].split()) for m in request.messages)
        return Generation(n_in, len(words), text, finish_reason="stop", cost_usd=None)


@dataclass(frozen=True)
class CannedRemoteSettings(CannedSettings):
    price_in_usd_per_m: float | None = None  # recorded with the run, as a cloud run's prices
    price_out_usd_per_m: float | None = None


class CannedRemoteBackend(CannedBackend):
    kind: TargetKind = "remote"
    Settings: ClassVar[type[Any]] = CannedRemoteSettings

    def params(self) -> dict[str, Any]:
        s: CannedRemoteSettings = self.settings
        prices = {"price_in_usd_per_m": s.price_in_usd_per_m,
                  "price_out_usd_per_m": s.price_out_usd_per_m}  # fmt: skip
        return {**super().params(), **{k: v for k, v in prices.items() if v is not None}}


register_backend("canned", CannedBackend)
register_backend("canned-remote", CannedRemoteBackend)
