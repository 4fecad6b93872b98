"""What `decide` takes and reports as it goes: its configuration, the step events of its
progress display, and each profiled target. A leaf module: the orchestrator, the target
profiling and the verdict all import it, and it imports none of them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from edgeprof.measure.options import MeasureOptions
from edgeprof.quality.floor import QualityFloor

# Low-cost and mid-tier catalog models, priced from genai-prices when no --cloud is given.
DEFAULT_CLOUDS = (
    "openai:gpt-5-nano",
    "google:gemini-2.5-flash-lite",
    "openai:gpt-5-mini",
    "anthropic:claude-haiku-4-5",
)
# Roughly the US residential average in 2025 (EIA Electric Power Monthly, ~17 ¢/kWh).
DEFAULT_ELECTRICITY_USD_PER_KWH = 0.17
ELECTRICITY_SOURCE = "default: about the 2025 US residential average (EIA); set --electricity"
DEFAULT_LIFETIME_YEARS = 3.0
DEFAULT_UTILIZATION = 1.0

StepState = Literal["start", "progress", "done", "reused", "skipped"]


@dataclass(frozen=True)
class StepEvent:
    """What `decide` is doing, for a progress display."""

    step: str  # "probe", "llamacpp", "convert", "onnx", "cloud:<name>", "compare"
    state: StepState
    done: int = 0
    total: int = 0
    detail: str = ""
    run_id: str | None = None


StepFn = Callable[[StepEvent], None]


@dataclass(kw_only=True)
class DecideConfig(MeasureOptions):
    """Everything `decide` takes: how each target is measured (`MeasureOptions`) and what the
    economics assume. None means "not given": a default or a preset fills it, and the figure's
    source says which."""

    requests_per_day: float
    model: str | None = None
    deployment: str = "dedicated"
    device: str | None = None  # a preset id (edgeprof devices)
    device_price_usd: float | None = None
    lifetime_years: float | None = None
    electricity_usd_per_kwh: float | None = None
    utilization: float | None = None
    input_tokens: float | None = None  # per request; None: the mean the device runs measured
    output_tokens: float | None = None
    owned_devices: int = 1
    battery_wh: float | None = None
    clouds: Sequence[str] = ()
    price_in_usd_per_m: float | None = None
    price_out_usd_per_m: float | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    max_ttft_s: float | None = None
    floor: QualityFloor = field(default_factory=QualityFloor)
    # task quality: leave out targets (device and cloud) passing fewer of the suite's checks
    min_pass_rate: float | None = None
    # also replay device-first, cloud-when-unsure cascades (decision/hybrid.py) over the
    # graded runs, with thresholds held out over this many folds
    hybrid: bool = False
    hybrid_folds: int = 5
    shared_prefix_tokens: float = 0.0  # cached on both sides (see compare())
    cache_device: bool = True
    cache_cloud: bool = True
    onnx: bool = True
    fresh: bool = False
    db: Path | None = None
    # llama.cpp profiled at each level (requests decoded together): a throughput curve, from
    # which the comparator takes the capacity that meets max_ttft_s
    concurrency: tuple[int, ...] = (1,)
    # Local servers profiled as device targets (`edgeprof.decision.server_targets`):
    # BACKEND:MODEL[@URL]. Without `model` they stand instead of llama.cpp and ONNX Runtime.
    device_targets: Sequence[str] = ()
    on_device: bool = False  # the device targets run here, whatever address reaches them


@dataclass(frozen=True)
class TargetRun:
    """One profiled target and the run that holds its figures."""

    target: str  # "llama.cpp", "ONNX Runtime int4", "cloud openai:gpt-4o-mini"
    backend: str
    run_id: str
    reused: bool
    description: str
