"""The power vocabulary shared by samplers, the recorder, energy attribution and reports.

Metric names carry their unit. A domain says what part of the machine a power figure covers,
and so what it may be added to: `energy.select_domains` sums only domains that do not overlap,
using the groupings below. This module imports nothing, so plots and reports can use it without
loading any sampler.
"""

from __future__ import annotations

from typing import Literal, get_args

PowerMetric = Literal["power_w", "energy_j"]
# energy_j is a cumulative counter in joules, wrap- and reset-corrected by the sampler.
POWER_METRICS: tuple[PowerMetric, ...] = get_args(PowerMetric)

Domain = Literal[
    # whole device: each already includes every other domain
    "board",
    "battery",
    "wall",
    # whole SoC: CPU package and DRAM included
    "psys",
    "soc",
    # additive parts
    "package",
    "dram",
    "rail",
    "gpu",
    # inside the package (never added: package already includes them) or unplaceable
    "core",
    "uncore",
    "other",
    # not power: resource samplers
    "process",
    "system",
    "cpu",
    "thermal",  # temperatures and throttling flags
    "clock",  # CPU and GPU clock frequencies
]
DOMAINS: tuple[Domain, ...] = get_args(Domain)

# What the thermal, clock and throttling samplers read: context for a run's speed (a hot or
# throttled board decodes slower), never power, so energy attribution never sees them.
# throttled: 1 while the board reports any throttling condition now, else 0; throttle_mask:
# the board's raw bit field (a Raspberry Pi's get_throttled), kept so nothing is lost.
ResourceMetric = Literal["temp_c", "freq_hz", "throttled", "throttle_mask"]
RESOURCE_METRICS: tuple[ResourceMetric, ...] = get_args(ResourceMetric)

WHOLE_DEVICE: tuple[Domain, ...] = ("board", "battery", "wall")
# Each stands alone (it includes the CPU package and DRAM); a discrete GPU adds to it.
WHOLE_SOC: tuple[Domain, ...] = ("psys", "soc")
# Groups summed over their sensors when no whole-device or SoC figure exists, first match wins:
# Σ package + Σ dram, else Σ rails of one rail monitor (a partial sum).
ADDITIVE: tuple[tuple[Domain, ...], ...] = (("package", "dram"), ("rail",))
# Added to a SoC, package or rail sum, and standing alone when nothing else is measured.
DISCRETE_GPU: Domain = "gpu"


__all__ = [
    "ADDITIVE",
    "DISCRETE_GPU",
    "DOMAINS",
    "POWER_METRICS",
    "RESOURCE_METRICS",
    "WHOLE_DEVICE",
    "WHOLE_SOC",
    "Domain",
    "PowerMetric",
    "ResourceMetric",
]
