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

Series = Sequence[tuple[int, float]]

# Whole-device domains: each one already includes every other domain on the device.
WHOLE_DEVICE = ("board", "battery", "wall")


@dataclass(frozen=True)
class SensorSeries:
    sensor: str
    domain: str
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
    return sum(
        (t1 - t0) / 1e9 * (p0 + p1) / 2 for (t0, p0), (t1, p1) in zip(points, points[1:], strict=False)
    )


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


def select_domains(series: Sequence[SensorSeries]) -> list[SensorSeries]:
    """Pick series that add up to the device's draw without counting anything twice.

    Measured beats estimated. A whole-device domain (board, battery, wall) stands alone; else
    RAPL psys stands alone (it includes package and DRAM); else Σ package + Σ dram; discrete
    GPUs (domain gpu) are added to psys or package. Per sensor, a cumulative counter beats power.
    """
    by_sensor: dict[str, SensorSeries] = {}
    for s in series:
        if s.metric not in ("power_w", "energy_j"):
            continue
        prev = by_sensor.get(s.sensor)
        if prev is None or (s.metric == "energy_j" and prev.metric != "energy_j"):
            by_sensor[s.sensor] = s
    chosen = list(by_sensor.values())
    measured = [s for s in chosen if s.method == "measured"]
    pool = measured or chosen
    for whole in WHOLE_DEVICE:
        picked = [s for s in pool if s.domain == whole]
        if picked:
            return picked[:1]
    gpus = [s for s in pool if s.domain == "gpu"]
    psys = [s for s in pool if s.domain == "psys"]
    if psys:
        return psys[:1] + gpus
    cpu = [s for s in pool if s.domain in ("package", "dram")]
    if cpu:
        return cpu + gpus
    return pool


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


def _peak_power_w(chosen: Sequence[SensorSeries], t_start_ns: int, t_end_ns: int) -> float | None:
    """Peak of the summed power: exact for a single power series, else per-interval sums."""
    powers = [s for s in chosen if s.metric == "power_w"]
    if len(powers) != len(chosen) or not powers:
        return None
    peaks = [max((v for _, v in clip(s.points, t_start_ns, t_end_ns)), default=0.0) for s in powers]
    return sum(peaks)


def net_energy_j(energy_j: float | None, idle_power_w: float | None, duration_s: float) -> float | None:
    """Energy above the idle baseline over the same duration (never below zero)."""
    if energy_j is None or idle_power_w is None:
        return None
    return max(0.0, energy_j - idle_power_w * duration_s)
