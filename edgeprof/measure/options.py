"""How a target is measured: the options `run`, `decide` and `sweep` share, in one place.

`RunConfig`, `DecideConfig` and `SweepConfig` each extend `MeasureOptions`, so a field is
declared (and documented) once, and `decide` and `sweep` hand their options to the runs they
start with `measure_options()` instead of copying them field by field.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


@dataclass(kw_only=True)
class MeasureOptions:
    prompts: str | None = None  # a bundled suite name or a .jsonl path
    repetitions: int = 3  # passes over the suite
    warmup: int = 1  # warm-up requests before the measured ones: recorded, not counted
    max_tokens: int = 128
    threads: int | None = None  # None: every logical CPU
    ctx: int = 4096  # per request: a batch of N gets N × ctx
    idle_seconds: float = 3.0  # idle power measured before the load, for energy_net_j
    tdp_w: float | None = None  # the estimator's TDP where no power sensor reads
    sensors: list[str] | None = None  # power sensors to use (None: every one that reads)
    # the prompt format of device targets (edgeprof.models.prompt_format): a llama.cpp built-in
    # name or a Jinja file; `raw`: none, for base models
    chat_template: str | None = None
    raw: bool = False

    def prompt_settings(self) -> dict[str, Any]:
        """The device backends' prompt settings, as `run --chat-template/--raw` gives them."""
        return {"chat_template": self.chat_template, "raw": self.raw}

    # Device backends in the profiler's own process, not their worker (measure.isolation): for
    # debugging; a crash of the model then ends the profiler too. EDGEPROF_IN_PROCESS=1 also.
    in_process: bool = False

    def measure_options(self) -> dict[str, Any]:
        """These options alone, as keywords for another config (a subclass's own fields left
        out): `RunConfig(backend=..., **decide_config.measure_options())`."""
        return {f.name: getattr(self, f.name) for f in fields(MeasureOptions)}
