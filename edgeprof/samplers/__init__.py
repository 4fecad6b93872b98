"""Sampler registry: every known sensor source, discovered and probed through one list."""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from edgeprof.errors import UsageError
from edgeprof.samplers.base import ProbeResult, Reading, Sampler, SensorEnv

# Power sources in the order probe lists them; imported lazily (pynvml and friends are heavy).
POWER_SOURCES: dict[str, str] = {
    "rapl": "edgeprof.samplers.rapl:RaplSampler",
    "hwmon": "edgeprof.samplers.hwmon:HwmonSampler",
    "battery": "edgeprof.samplers.battery:BatterySampler",
    "nvml": "edgeprof.samplers.nvml:NvmlSampler",
    "jetson": "edgeprof.samplers.jetson:JetsonRailSampler",
    "rpi": "edgeprof.samplers.rpi:RpiPmicSampler",
    "powermetrics": "edgeprof.samplers.powermetrics:PowermetricsSampler",
    "estimate": "edgeprof.samplers.estimate:EstimatedCpuSampler",
}
RESOURCE_SOURCES: dict[str, str] = {
    "process": "edgeprof.samplers.process:ProcessSampler",
}


def sampler_class(source: str) -> type[Sampler]:
    spec = POWER_SOURCES.get(source) or RESOURCE_SOURCES.get(source)
    if spec is None:
        known = ", ".join([*POWER_SOURCES, *RESOURCE_SOURCES])
        raise UsageError(f"unknown sensor {source!r}; choose from: {known}")
    module_name, _, class_name = spec.partition(":")
    cls: type[Sampler] = getattr(importlib.import_module(module_name), class_name)
    return cls


def probe_all(env: SensorEnv) -> list[ProbeResult]:
    results: list[ProbeResult] = []
    for source in POWER_SOURCES:
        try:
            results.extend(sampler_class(source).probe(env))
        except Exception as e:  # a broken reader must not hide the others
            results.append(ProbeResult(source, source, False, reason=f"probe failed: {e}"))
    return results


def discover(env: SensorEnv, sources: Sequence[str] | None = None) -> list[Sampler]:
    """Samplers for this run: resource samplers always; the named power sources, or every
    available measured one, falling back to the estimator only when nothing is measured."""
    samplers: list[Sampler] = []
    for source in RESOURCE_SOURCES:
        samplers.extend(sampler_class(source).discover(env))
    wanted = list(sources) if sources else [s for s in POWER_SOURCES if s != "estimate"]
    power: list[Sampler] = []
    for source in wanted:
        cls = sampler_class(source)
        found = cls.discover(env)
        if sources and not found:
            reasons = "; ".join(p.reason for p in cls.probe(env) if not p.available)
            raise UsageError(
                f"sensor {source!r} is not available here ({reasons}); see `edgeprof probe`"
            )
        power.extend(found)
    if not power and not sources:
        power = sampler_class("estimate").discover(env)
    return samplers + power


__all__ = ["ProbeResult", "Reading", "Sampler", "SensorEnv", "discover", "probe_all"]
