"""Sensor sources: every one registered here, through the same call a plugin makes (see
`edgeprof.plugins`), then discovered and probed from that one list.

Registration order is the probe order and the energy precedence (the earlier source wins a
domain both measure). Classes are named lazily: pynvml and friends load only when used.
"""

from __future__ import annotations

from collections.abc import Sequence

from edgeprof.errors import UsageError
from edgeprof.samplers.base import ProbeResult, Reading, Sampler, SensorEnv
from edgeprof.samplers.registry import (
    FALLBACK_SOURCE,
    Role,
    mark_builtins,
    register_sampler,
    sampler_class,
    sampler_sources,
    unregister_sampler,
)

register_sampler("rapl", "edgeprof.samplers.rapl:RaplSampler")
register_sampler("hwmon", "edgeprof.samplers.hwmon:HwmonSampler")
register_sampler("battery", "edgeprof.samplers.battery:BatterySampler")
register_sampler("nvml", "edgeprof.samplers.nvml:NvmlSampler")
register_sampler("jetson", "edgeprof.samplers.jetson:JetsonRailSampler")
register_sampler("rpi", "edgeprof.samplers.rpi:RpiPmicSampler")
register_sampler("powermetrics", "edgeprof.samplers.powermetrics:PowermetricsSampler")
register_sampler(FALLBACK_SOURCE, "edgeprof.samplers.estimate:EstimatedCpuSampler")
register_sampler("process", "edgeprof.samplers.process:ProcessSampler", role="resource")
# Context for a run's speed (temperatures, clocks, throttling): never power, never in energy.
register_sampler("thermal", "edgeprof.samplers.thermal:ThermalSampler", role="resource")
register_sampler("cpufreq", "edgeprof.samplers.cpufreq:CpufreqSampler", role="resource")
register_sampler("devfreq", "edgeprof.samplers.cpufreq:DevfreqSampler", role="resource")
register_sampler("throttle", "edgeprof.samplers.throttle:RpiThrottleSampler", role="resource")
register_sampler("cpu_throttle", "edgeprof.samplers.throttle:CpuThrottleSampler", role="resource")
mark_builtins()


def probe_all(env: SensorEnv, role: Role = "power") -> list[ProbeResult]:
    """Every power source's probe results (with `role="resource"`: the temperature, clock,
    throttling and process sources'), in registration order."""
    results: list[ProbeResult] = []
    for source in sampler_sources(role):
        try:
            results.extend(sampler_class(source).probe(env))
        except Exception as e:  # a broken reader must not hide the others
            results.append(ProbeResult(source, source, False, reason=f"probe failed: {e}"))
    return results


def discover(env: SensorEnv, sources: Sequence[str] | None = None) -> list[Sampler]:
    """Samplers for this run: resource samplers always; the named power sources, or every
    available measured one, falling back to the estimator only when nothing is measured."""
    samplers: list[Sampler] = []
    for source in sampler_sources("resource"):
        samplers.extend(sampler_class(source).discover(env))
    wanted = (
        list(sources) if sources else [s for s in sampler_sources("power") if s != FALLBACK_SOURCE]
    )
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
        power = sampler_class(FALLBACK_SOURCE).discover(env)
    return samplers + power


__all__ = [
    "ProbeResult",
    "Reading",
    "Sampler",
    "SensorEnv",
    "discover",
    "probe_all",
    "register_sampler",
    "sampler_class",
    "sampler_sources",
    "unregister_sampler",
]
