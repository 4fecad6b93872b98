"""Energy attribution: pure functions from sampled power/energy series to joules in a window.

A series is a list of (t_ns, value) in time order. Cumulative counters (`energy_j`) are read at
the window edges by linear interpolation; instantaneous power (`power_w`) is integrated with the
trapezoid rule, interpolated at the edges. Domains are then chosen so nothing is counted twice
(see `select_domains`).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from edgeprof.power import ADDITIVE, DISCRETE_GPU, POWER_METRICS, WHOLE_DEVICE, WHOLE_SOC
from edgeprof.samplers import sampler_sources

Series = Sequence[tuple[int, float]]


@dataclass(frozen=True)
class SensorSeries:
    sensor: str
    domain: str  # an edgeprof.power.Domain; as read back from a database, any string
    metric: str  # "power_w" or "energy_j"
    method: str  # "measured" | "estimated"
    points: Series


@dataclass(frozen=True)
class WindowEnergy:
    energy_j: float | None
    method: str | None  # "measured" | "estimated" | None when no power source covered it
    domains: tuple[str, ...] = ()
    sensors: tuple[str, ...] = ()
    avg_power_w: float | None = None
    peak_power_w: float | None = None
    per_sensor_j: Mapping[str, float] = field(default_factory=dict)


def interpolate(points: Series, t_ns: int) -> float | None:
    """Value at t_ns by linear interpolation; None outside the sampled range."""
    if not points or t_ns < points[0][0] or t_ns > points[-1][0]:
        return None
    i = bisect_left([p[0] for p in points], t_ns)
    t1, v1 = points[i]
    if t1 == t_ns or i == 0:
        return v1
    t0, v0 = points[i - 1]
    return v0 + (v1 - v0) * (t_ns - t0) / (t1 - t0)


def clip(points: Series, t_start_ns: int, t_end_ns: int) -> list[tuple[int, float]]:
    """The points inside [start, end], with interpolated points added at both edges."""
    inside = [(t, v) for t, v in points if t_start_ns < t < t_end_ns]
    out: list[tuple[int, float]] = []
    v_start = interpolate(points, t_start_ns)
    v_end = interpolate(points, t_end_ns)
    if v_start is not None:
        out.append((t_start_ns, v_start))
    out.extend(inside)
    if v_end is not None and t_end_ns > t_start_ns:
        out.append((t_end_ns, v_end))
    return out


def trapezoid_j(points: Series) -> float:
    """∫ P dt in joules for (t_ns, watts) points."""
    return sum((t1 - t0) / 1e9 * (p0 + p1) / 2 for (t0, p0), (t1, p1) in pairwise(points))


def series_energy_j(s: SensorSeries, t_start_ns: int, t_end_ns: int) -> float | None:
    """Joules in [start, end], or None when the series does not cover the window."""
    if s.metric == "energy_j":
        e0 = interpolate(s.points, t_start_ns)
        e1 = interpolate(s.points, t_end_ns)
        return None if e0 is None or e1 is None else e1 - e0
    pts = clip(s.points, t_start_ns, t_end_ns)
    if not pts or pts[0][0] != t_start_ns or pts[-1][0] != t_end_ns:
        return None
    if len(pts) == 1:
        return 0.0
    return trapezoid_j(pts)


def source_of(sensor: str) -> str:
    return sensor.split(":", 1)[0]


def source_precedence() -> dict[str, int]:
    """Source -> rank: registration order, so when two sources measure the same domain the
    earlier one is used. Sources not registered here (a plugin's, in a database from another
    machine) rank after every registered one."""
    return {src: i for i, src in enumerate(sampler_sources("power"))}


def _ranked(series: Sequence[SensorSeries]) -> list[SensorSeries]:
    order = source_precedence()
    return sorted(series, key=lambda s: (order.get(source_of(s.sensor), len(order)), s.sensor))


def select_domains(series: Sequence[SensorSeries]) -> list[SensorSeries]:
    """Pick series that add up to the device's draw without counting anything twice.

    Per sensor a cumulative counter beats power; measured beats estimated. Then, first match:
    a whole-device domain (board, battery, wall) alone; RAPL psys alone, or an SoC total (Apple
    powermetrics, the amdgpu PPT of an AMD APU) alone; Σ package + Σ dram, each domain from one
    source (RAPL before hwmon amd_energy); Σ rails of one rail monitor (a partial sum, domain
    `rail`). Discrete GPUs (domain gpu) are added to psys, soc, package or rails, and stand
    alone when nothing else is measured. core, uncore and `other` are never added: package
    already includes them.
    """
    by_sensor: dict[str, SensorSeries] = {}
    for s in series:
        if s.metric not in POWER_METRICS:
            continue
        prev = by_sensor.get(s.sensor)
        if prev is None or (s.metric == "energy_j" and prev.metric != "energy_j"):
            by_sensor[s.sensor] = s
    chosen = _ranked(list(by_sensor.values()))
    measured = [s for s in chosen if s.method == "measured"]
    pool = measured or chosen
    for whole in WHOLE_DEVICE:
        picked = [s for s in pool if s.domain == whole]
        if picked:
            return picked[:1]
    gpus = [s for s in pool if s.domain == DISCRETE_GPU]
    for soc in WHOLE_SOC:
        picked = [s for s in pool if s.domain == soc]
        if picked:
            return picked[:1] + gpus
    for additive in ADDITIVE:
        parts = [p for domain in additive for p in _one_source(pool, domain)]
        if parts:
            return parts + gpus
    return gpus


def _one_source(pool: Sequence[SensorSeries], domain: str) -> list[SensorSeries]:
    """Every sensor of `domain` from the first source that measures it (all sockets of RAPL,
    say), never the same domain from two sources (RAPL and hwmon amd_energy)."""
    parts = [s for s in pool if s.domain == domain]
    if not parts:
        return []
    src = source_of(parts[0].sensor)
    return [s for s in parts if source_of(s.sensor) == src]


def window_energy(series: Sequence[SensorSeries], t_start_ns: int, t_end_ns: int) -> WindowEnergy:
    chosen = select_domains(series)
    per_sensor: dict[str, float] = {}
    for s in chosen:
        e = series_energy_j(s, t_start_ns, t_end_ns)
        if e is None:
            return WindowEnergy(None, None)
        per_sensor[s.sensor] = e
    if not per_sensor:
        return WindowEnergy(None, None)
    total = sum(per_sensor.values())
    duration_s = (t_end_ns - t_start_ns) / 1e9
    peak = _peak_power_w(chosen, t_start_ns, t_end_ns)
    method = "measured" if all(s.method == "measured" for s in chosen) else "estimated"
    return WindowEnergy(
        energy_j=total,
        method=method,
        domains=tuple(sorted({s.domain for s in chosen})),
        sensors=tuple(s.sensor for s in chosen),
        avg_power_w=total / duration_s if duration_s > 0 else None,
        peak_power_w=peak,
        per_sensor_j=per_sensor,
    )


def counter_power(points: Series) -> list[tuple[int, float]]:
    """Average watts between consecutive counter readings, placed at each interval's middle."""
    return [
        ((t0 + t1) // 2, (e1 - e0) / ((t1 - t0) / 1e9))
        for (t0, e0), (t1, e1) in pairwise(points)
        if t1 > t0
    ]


def power_points(s: SensorSeries) -> list[tuple[int, float]]:
    """The series as (t_ns, watts), whether it holds power or a cumulative counter."""
    return list(s.points) if s.metric == "power_w" else counter_power(s.points)


def _peak_power_w(chosen: Sequence[SensorSeries], t_start_ns: int, t_end_ns: int) -> float | None:
    """Peak of the summed power over the window, evaluated at every sample time in it (and at
    its edges); counters contribute their interval averages."""
    powers = [power_points(s) for s in chosen]
    grid = {t_start_ns, t_end_ns}
    for pts in powers:
        grid.update(t for t, _ in pts if t_start_ns <= t <= t_end_ns)
    best: float | None = None
    for t in sorted(grid):
        values = [interpolate(pts, t) for pts in powers]
        if any(v is None for v in values):
            continue
        total = sum(v for v in values if v is not None)
        best = total if best is None else max(best, total)
    return best


def build_series(
    sensors: Sequence[Mapping[str, Any]], samples: Sequence[Mapping[str, Any]]
) -> list[SensorSeries]:
    """SensorSeries from a run's `sensors` rows and `samples` rows (power_w / energy_j only)."""
    meta = {(str(r["sensor"]), str(r["metric"])): r for r in sensors}
    points: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for r in samples:
        key = (str(r["sensor"]), str(r["metric"]))
        if key[1] in POWER_METRICS:
            points.setdefault(key, []).append((int(r["t_ns"]), float(r["value"])))
    out = []
    for (sensor, metric), pts in points.items():
        m: Mapping[str, Any] = meta.get((sensor, metric), {})
        out.append(
            SensorSeries(
                sensor=sensor,
                domain=str(m.get("domain") or ""),
                metric=metric,
                method=str(m.get("method") or "measured"),
                points=sorted(pts),
            )
        )
    return out


def shared_energy_j(
    series: Sequence[SensorSeries], shares: Sequence[tuple[int, int, int]]
) -> tuple[float | None, float]:
    """(joules, seconds) that fall to one of several requests decoded together: each piece
    (t0_ns, t1_ns, n) of its window is shared equally by the n requests in the batch then.
    The shares of every request in a run add up to the device's energy over the busy time;
    the seconds are the request's share of the busy time (for the idle baseline)."""
    total_j, share_s = 0.0, 0.0
    for t0, t1, n in shares:
        piece = window_energy(series, t0, t1).energy_j
        if piece is None:
            return None, sum((b - a) / 1e9 / k for a, b, k in shares)
        total_j += piece / n
        share_s += (t1 - t0) / 1e9 / n
    return total_j, share_s


def net_energy_j(
    energy_j: float | None, idle_power_w: float | None, duration_s: float
) -> float | None:
    """Energy above the idle baseline over the same duration (never below zero)."""
    if energy_j is None or idle_power_w is None:
        return None
    return max(0.0, energy_j - idle_power_w * duration_s)
