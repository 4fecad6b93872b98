"""Sustained performance: a long run (a soak) cut into time windows, first minute against last,
throttle events, and the sustained figures the comparator should use instead of a burst's.

Definitions (all pure functions over `requests` and `samples` rows; `load_soak` reads them):

- **The soak** spans the measured requests: from the first non-warm-up request's start to the
  last one's end. Times shown are seconds since that start (`origin_ns`, relative to the
  run's t0 like every stored time), so "the first minute" is the first minute of load, not
  of the idle baseline or the model load before it.
- **Windows** of `window_s` (60 s) from there; the remainder at the end is one more window
  marked `partial`, shown with its real length but never compared (a 5 s tail measures the
  runner stopping as much as the device). A run with fewer than 2 full windows is not a
  soak: there is no "last minute" distinct from the first.
- **Output tok/s** of a window is aggregate throughput: output tokens produced in the window
  / the window's wall time. A request's tokens are spread evenly over its [start, end] and
  counted in proportion to its overlap (the run timeline's tok/s curve uses the same rule),
  so a request straddling a boundary is split, not credited whole to one side. Wall time,
  not busy time, is the denominator: gaps between requests are part of what a device
  sustains; `busy_share` says how much of the window had a request in flight.
- **Decode tok/s** of a window is the median over the requests that *finished* in it (each
  request's own speed, as the summary defines it); the median, so one slow request at a
  throttle edge does not move it.
- **Power** is the energy of the run's non-overlapping power domains over the window / its
  length (`energy.window_energy`), labelled measured or estimated; idle gaps included.
- **Temperature** (`temp_c`) is the mean and maximum of each sensor's samples in the window.
- **Clock** (`freq_hz`, CPU clocks from `cpufreq:` sensors where there are any, else every
  clock): `clock_hz` is the fastest sensor's mean over the window, `freq_hz_min` the lowest
  sample. The fastest is the headline because idle cores and the little cluster of a
  big.LITTLE SoC clock low whatever the temperature, while a thermal cap lowers the ceiling.
- **Throttle events** are transitions of a `throttled` sample from 0 to non-zero (or a first
  sample already non-zero, `from_start`), with the time it cleared; the `throttle_mask`
  samples of the same sensor during the event are OR-ed and decoded where the source's bits
  are known (`MASK_DECODERS`: the Raspberry Pi firmware's `get_throttled`).
- **Sustained figures** come from the later half of the full windows (the last
  max(1, ⌊n/2⌋)): a passively cooled board takes minutes to heat-soak, so "after the first
  minute" would still average in the cool minutes, while the last minute alone is one noisy
  minute. `drift_pct` (first to last window of that span) says whether it had settled.
"""

from __future__ import annotations

import statistics
from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from edgeprof.analysis.energy import SensorSeries, build_series, window_energy
from edgeprof.analysis.metrics import Interval, confidence_interval, percentile
from edgeprof.analysis.summary import repetition_figures
from edgeprof.power import POWER_METRICS
from edgeprof.samplers.throttle import KNOWN_MASK, now_reasons
from edgeprof.store.db import Store

WINDOW_S = 60.0
MIN_FULL_WINDOWS = 2
STEADY_PCT = 5.0  # sustained windows closer than this (first to last) count as settled
THERMAL_METRICS: tuple[str, ...] = ("temp_c", "freq_hz", "throttled", "throttle_mask")

Row = Mapping[str, Any]


def decode_rpi_mask(mask: int) -> tuple[str, ...]:
    """An event is named by the "now" bits only: the "since boot" ones stay set for the rest of
    the session and say nothing about this event."""
    unknown = mask & ~KNOWN_MASK
    return now_reasons(mask) + ((f"bits {unknown:#x}",) if unknown else ())


# A sensor name, or its source (the part before ":"), -> how its throttle_mask reads.
MASK_DECODERS: dict[str, Callable[[int], tuple[str, ...]]] = {
    "throttle:rpi": decode_rpi_mask,  # edgeprof.samplers.throttle
    "rpi": decode_rpi_mask,
}


def decode_mask(sensor: str, mask: int | None) -> tuple[str, ...]:
    """What the mask's bits mean, or the raw mask when the sensor's bits are not known."""
    if mask is None:
        return ()
    decoder = MASK_DECODERS.get(sensor) or MASK_DECODERS.get(sensor.split(":", 1)[0])
    return decoder(mask) if decoder else (f"mask {mask:#x}",)


@dataclass(frozen=True)
class ThrottleEvent:
    sensor: str
    t_s: float  # since the soak's start (negative: before the first measured request)
    end_s: float | None  # when it cleared; None: still throttled at the last sample
    from_start: bool  # throttled at the sensor's first sample: the 0 -> 1 edge was not seen
    mask: int | None
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Window:
    index: int
    t0_s: float  # since the soak's start
    t1_s: float
    partial: bool
    output_tokens: float  # prorated by overlap
    output_tps: float  # aggregate: output_tokens / window wall time
    busy_share: float  # share of the window with a request in flight
    n_requests: int  # measured, error-free requests that finished in it
    decode_tps_median: float | None
    power_w: float | None
    power_method: str | None  # "measured" | "estimated" | None: no power sensor covered it
    temp_c_mean: Mapping[str, float] = field(default_factory=dict)  # per sensor
    temp_c_max: Mapping[str, float] = field(default_factory=dict)
    freq_hz_mean: Mapping[str, float] = field(default_factory=dict)  # per clock sensor
    freq_hz_min: float | None = None  # the lowest sample of any of those clocks
    throttle_events: int = 0

    @property
    def duration_s(self) -> float:
        return self.t1_s - self.t0_s

    @property
    def clock_hz(self) -> float | None:
        """The fastest clock's mean over the window (see the module docstring)."""
        return max(self.freq_hz_mean.values(), default=None)


@dataclass(frozen=True)
class FirstLast:
    """The first full window against the last full one; changes in % of the first, except
    temperature, whose change is in °C (a % of a Celsius reading means nothing)."""

    first: Window
    last: Window
    output_tps_change_pct: float | None
    decode_tps_change_pct: float | None
    power_w_change_pct: float | None
    clock_hz_change_pct: float | None
    temp_c_change: Mapping[str, float]  # per sensor: last mean − first mean


@dataclass(frozen=True)
class SustainedFigures:
    """What the run sustains, from the later half of its full windows; the fields the
    comparator reads from a RunSummary carry the same names and definitions."""

    run_id: str
    t0_s: float  # the span used, since the soak's start
    t1_s: float
    n_windows: int
    n_requests: int
    output_tps: float  # aggregate over the span's wall time
    decode_tps_mean: float | None  # per request, over requests finishing in the span
    decode_tps_median: float | None
    prefill_tps_mean: float | None
    ttft_p50_s: float | None
    avg_power_w: float | None  # request energy / busy time, as RunSummary.avg_power_w
    j_per_output_token: float | None  # request energy / output tokens
    energy_method: str | None
    span_power_w: float | None  # the device's draw over the span, gaps included
    burst_output_tps: float  # the first full window, for contrast
    output_tps_change_pct: float | None  # sustained against the burst
    drift_pct: float | None  # first to last window of the span; None with one window
    # 95 % intervals over the passes over the suite that fell wholly in the span
    decode_tps_ci: Interval | None = None
    prefill_tps_ci: Interval | None = None
    definition: str = "the later half of the full windows"

    @property
    def steady(self) -> bool | None:
        return None if self.drift_pct is None else abs(self.drift_pct) <= STEADY_PCT


@dataclass(frozen=True)
class Soak:
    run_id: str
    window_s: float
    origin_ns: int  # the soak's start, relative to the run's t0
    windows: tuple[Window, ...]
    events: tuple[ThrottleEvent, ...]
    has_throttle_sensor: bool
    request_points: tuple[tuple[float, float], ...]  # (end s, decode tok/s) per request
    temp_points: Mapping[str, tuple[tuple[float, float], ...]]  # sensor -> (s, °C)
    first_last: FirstLast | None
    sustained: SustainedFigures | None

    @property
    def full_windows(self) -> tuple[Window, ...]:
        return tuple(w for w in self.windows if not w.partial)

    @property
    def is_soak(self) -> bool:
        return len(self.full_windows) >= MIN_FULL_WINDOWS

    @property
    def power_method(self) -> str | None:
        methods = {w.power_method for w in self.windows if w.power_method}
        return "estimated" if "estimated" in methods else next(iter(methods), None)


# -- pure pieces ---------------------------------------------------------------------------


def measured_requests(requests: Sequence[Row]) -> list[Row]:
    """Non-warm-up, error-free requests with both times, in order of start."""
    ok = [
        r
        for r in requests
        if not r.get("warmup")
        and not r.get("error")
        and r.get("t_start_ns") is not None
        and r.get("t_end_ns") is not None
    ]
    return sorted(ok, key=lambda r: int(r["t_start_ns"]))


def soak_span_ns(requests: Sequence[Row]) -> tuple[int, int] | None:
    ok = measured_requests(requests)
    if not ok:
        return None
    return min(int(r["t_start_ns"]) for r in ok), max(int(r["t_end_ns"]) for r in ok)


def window_bounds(start_ns: int, end_ns: int, window_s: float) -> list[tuple[int, int, bool]]:
    """(t0_ns, t1_ns, partial) windows covering [start, end]; the tail is one partial."""
    step = round(window_s * 1e9)
    n_full = (end_ns - start_ns) // step
    bounds = [(start_ns + k * step, start_ns + (k + 1) * step, False) for k in range(n_full)]
    tail = start_ns + n_full * step
    if end_ns > tail:
        bounds.append((tail, end_ns, True))
    return bounds


def overlap_ns(a0: int, a1: int, b0: int, b1: int) -> int:
    return max(0, min(a1, b1) - max(a0, b0))


def prorated_tokens(requests: Sequence[Row], t0_ns: int, t1_ns: int) -> float:
    """Output tokens in [t0, t1), each request's spread evenly over its own window."""
    total = 0.0
    for r in requests:
        s, e, n = int(r["t_start_ns"]), int(r["t_end_ns"]), float(r.get("output_tokens") or 0)
        if e <= s:
            total += n if t0_ns <= e < t1_ns else 0.0
        else:
            total += n * overlap_ns(s, e, t0_ns, t1_ns) / (e - s)
    return total


def busy_ns(requests: Sequence[Row], t0_ns: int, t1_ns: int) -> int:
    """Time in [t0, t1) with at least one request in flight (overlaps counted once)."""
    spans = sorted(
        (max(int(r["t_start_ns"]), t0_ns), min(int(r["t_end_ns"]), t1_ns)) for r in requests
    )
    total, reach = 0, t0_ns
    for s, e in spans:
        if e > reach:
            total += e - max(s, reach)
            reach = e
    return total


def finished_in(requests: Sequence[Row], t0_ns: int, t1_ns: int) -> list[Row]:
    return [r for r in requests if t0_ns <= int(r["t_end_ns"]) < t1_ns]


@dataclass(frozen=True)
class Timed:
    """One metric's samples in time order, sliced by window with a bisection (an hour's soak
    at 10 Hz has tens of thousands of them per sensor)."""

    times: list[int]
    rows: list[tuple[int, str, float]]  # (t_ns, sensor, value)

    @classmethod
    def of(cls, samples: Sequence[Row], metric: str) -> Timed:
        rows = sorted(
            (int(r["t_ns"]), str(r["sensor"]), float(r["value"]))
            for r in samples
            if r["metric"] == metric
        )
        return cls([t for t, _, _ in rows], rows)

    def by_sensor(self, t0_ns: int, t1_ns: int) -> dict[str, list[float]]:
        """Each sensor's values with t in [t0, t1)."""
        lo, hi = bisect_left(self.times, t0_ns), bisect_left(self.times, t1_ns)
        out: dict[str, list[float]] = {}
        for _, sensor, value in self.rows[lo:hi]:
            out.setdefault(sensor, []).append(value)
        return out


def cpu_clocks(by_sensor: dict[str, list[float]]) -> dict[str, list[float]]:
    """The CPU clocks (cpufreq) where any were sampled, else every clock (a GPU's devfreq)."""
    cpu = {s: v for s, v in by_sensor.items() if s.startswith("cpufreq:")}
    return cpu or by_sensor


def change_pct(first: float | None, last: float | None) -> float | None:
    if first is None or last is None or first == 0:
        return None
    return (last - first) / first * 100.0


def throttle_events(samples: Sequence[Row], origin_ns: int = 0) -> list[ThrottleEvent]:
    """Every 0 -> non-zero transition of each sensor's `throttled` samples, in time order."""
    series: dict[str, list[tuple[int, float]]] = {}
    masks: dict[str, list[tuple[int, int]]] = {}
    for r in samples:
        if r["metric"] == "throttled":
            series.setdefault(str(r["sensor"]), []).append((int(r["t_ns"]), float(r["value"])))
        elif r["metric"] == "throttle_mask":
            masks.setdefault(str(r["sensor"]), []).append((int(r["t_ns"]), int(r["value"])))
    events: list[ThrottleEvent] = []
    for sensor, points in series.items():
        for start, end, from_start in _throttled_spans(sorted(points)):
            mask = _mask_during(masks.get(sensor, []), start, end)
            events.append(
                ThrottleEvent(
                    sensor=sensor,
                    t_s=(start - origin_ns) / 1e9,
                    end_s=None if end is None else (end - origin_ns) / 1e9,
                    from_start=from_start,
                    mask=mask,
                    reasons=decode_mask(sensor, mask),
                )
            )
    return sorted(events, key=lambda e: (e.t_s, e.sensor))


def _throttled_spans(points: Sequence[tuple[int, float]]) -> list[tuple[int, int | None, bool]]:
    """(start, end or None, from_start) of each run of non-zero values."""
    spans: list[tuple[int, int | None, bool]] = []
    start: int | None = None
    for i, (t, v) in enumerate(points):
        if v and start is None:
            start = t
            first = i == 0
        elif not v and start is not None:
            spans.append((start, t, first))
            start = None
    if start is not None:
        spans.append((start, None, first))
    return spans


def _mask_during(masks: Sequence[tuple[int, int]], start: int, end: int | None) -> int | None:
    inside = [m for t, m in masks if t >= start and (end is None or t <= end)]
    if not inside:
        return None
    out = 0
    for m in inside:
        out |= m
    return out


# -- windows -------------------------------------------------------------------------------


def make_window(
    index: int,
    bounds: tuple[int, int, bool],
    origin_ns: int,
    requests: Sequence[Row],
    series: Sequence[SensorSeries],
    thermal: Mapping[str, Timed],
    events: Sequence[ThrottleEvent],
) -> Window:
    t0, t1, partial = bounds
    wall_s = (t1 - t0) / 1e9
    tokens = prorated_tokens(requests, t0, t1)
    done = finished_in(requests, t0, t1)
    decode = [float(r["decode_tps"]) for r in done if r.get("decode_tps") is not None]
    energy = window_energy(series, t0, t1) if series else None
    temps = thermal["temp_c"].by_sensor(t0, t1)
    clocks = cpu_clocks(thermal["freq_hz"].by_sensor(t0, t1))
    start_s, end_s = (t0 - origin_ns) / 1e9, (t1 - origin_ns) / 1e9
    return Window(
        index=index,
        t0_s=start_s,
        t1_s=end_s,
        partial=partial,
        output_tokens=tokens,
        output_tps=tokens / wall_s,
        busy_share=busy_ns(requests, t0, t1) / (t1 - t0),
        n_requests=len(done),
        decode_tps_median=statistics.median(decode) if decode else None,
        power_w=energy.avg_power_w if energy else None,
        power_method=energy.method if energy else None,
        temp_c_mean={s: statistics.fmean(v) for s, v in temps.items()},
        temp_c_max={s: max(v) for s, v in temps.items()},
        freq_hz_mean={s: statistics.fmean(v) for s, v in clocks.items()},
        freq_hz_min=min((f for v in clocks.values() for f in v), default=None),
        throttle_events=sum(1 for e in events if start_s <= e.t_s < end_s),
    )


def first_vs_last(windows: Sequence[Window]) -> FirstLast | None:
    full = [w for w in windows if not w.partial]
    if len(full) < MIN_FULL_WINDOWS:
        return None
    first, last = full[0], full[-1]
    return FirstLast(
        first=first,
        last=last,
        output_tps_change_pct=change_pct(first.output_tps, last.output_tps),
        decode_tps_change_pct=change_pct(first.decode_tps_median, last.decode_tps_median),
        power_w_change_pct=change_pct(first.power_w, last.power_w),
        clock_hz_change_pct=change_pct(first.clock_hz, last.clock_hz),
        temp_c_change={
            s: last.temp_c_mean[s] - first.temp_c_mean[s]
            for s in first.temp_c_mean
            if s in last.temp_c_mean
        },
    )


def sustained_span(windows: Sequence[Window]) -> list[Window]:
    """The later half of the full windows (at least one), or [] when the run is no soak."""
    full = [w for w in windows if not w.partial]
    if len(full) < MIN_FULL_WINDOWS:
        return []
    return full[len(full) - max(1, len(full) // 2) :]


def sustained_from(
    run_id: str,
    windows: Sequence[Window],
    requests: Sequence[Row],
    series: Sequence[SensorSeries],
    origin_ns: int,
) -> SustainedFigures | None:
    span = sustained_span(windows)
    if not span:
        return None
    t0_ns = origin_ns + round(span[0].t0_s * 1e9)
    t1_ns = origin_ns + round(span[-1].t1_s * 1e9)
    done = finished_in(requests, t0_ns, t1_ns)
    decode = [float(r["decode_tps"]) for r in done if r.get("decode_tps") is not None]
    prefill = [float(r["prefill_tps"]) for r in done if r.get("prefill_tps") is not None]
    ttft = [float(r["ttft_s"]) for r in done if r.get("ttft_s") is not None]
    output_tps = sum(w.output_tokens for w in span) / sum(w.duration_s for w in span)
    passes = repetition_figures(done)
    j_out, power_w, method = request_energy(done)
    span_energy = window_energy(series, t0_ns, t1_ns) if series else None
    burst = next(w for w in windows if not w.partial).output_tps
    return SustainedFigures(
        run_id=run_id,
        t0_s=span[0].t0_s,
        t1_s=span[-1].t1_s,
        n_windows=len(span),
        n_requests=len(done),
        output_tps=output_tps,
        decode_tps_mean=statistics.fmean(decode) if decode else None,
        decode_tps_median=statistics.median(decode) if decode else None,
        prefill_tps_mean=statistics.fmean(prefill) if prefill else None,
        ttft_p50_s=percentile(ttft, 50),
        avg_power_w=power_w,
        j_per_output_token=j_out,
        energy_method=method,
        span_power_w=span_energy.avg_power_w if span_energy else None,
        burst_output_tps=burst,
        output_tps_change_pct=change_pct(burst, output_tps),
        drift_pct=change_pct(span[0].output_tps, span[-1].output_tps) if len(span) > 1 else None,
        decode_tps_ci=confidence_interval(passes["decode_tps"]),
        prefill_tps_ci=confidence_interval(passes["prefill_tps"]),
    )


def request_energy(done: Sequence[Row]) -> tuple[float | None, float | None, str | None]:
    """(J per output token, W while busy, method) from the requests' attributed energy, the
    way RunSummary computes them, so the comparator can swap one set for the other."""
    with_energy = [r for r in done if r.get("energy_j") is not None]
    if not with_energy:
        return None, None, None
    energy_j = sum(float(r["energy_j"]) for r in with_energy)
    tokens = sum(int(r.get("output_tokens") or 0) for r in with_energy)
    busy = busy_ns(with_energy, -(2**62), 2**62) / 1e9
    methods = sorted({str(r["energy_method"]) for r in with_energy if r.get("energy_method")})
    return (
        energy_j / tokens if tokens else None,
        energy_j / busy if busy > 0 else None,
        "+".join(methods) or None,
    )


def soak_from_rows(
    run_id: str,
    requests: Sequence[Row],
    sensors: Sequence[Row],
    samples: Sequence[Row],
    window_s: float = WINDOW_S,
) -> Soak | None:
    """The soak analysis of one run's rows; None when it has no measured request."""
    span = soak_span_ns(requests)
    if span is None:
        return None
    origin, end = span
    ok = measured_requests(requests)
    series = build_series(sensors, [s for s in samples if s["metric"] in POWER_METRICS])
    events = throttle_events(samples, origin)
    thermal = {m: Timed.of(samples, m) for m in ("temp_c", "freq_hz")}
    windows = tuple(
        make_window(i, b, origin, ok, series, thermal, events)
        for i, b in enumerate(window_bounds(origin, end, window_s))
    )
    temps = {
        sensor: tuple(((int(r["t_ns"]) - origin) / 1e9, float(r["value"])) for r in rows)
        for sensor, rows in _rows_by_sensor(samples, "temp_c").items()
    }
    return Soak(
        run_id=run_id,
        window_s=window_s,
        origin_ns=origin,
        windows=windows,
        events=tuple(events),
        has_throttle_sensor=any(s["metric"] == "throttled" for s in samples),
        request_points=tuple(
            ((int(r["t_end_ns"]) - origin) / 1e9, float(r["decode_tps"]))
            for r in ok
            if r.get("decode_tps") is not None
        ),
        temp_points=temps,
        first_last=first_vs_last(windows),
        sustained=sustained_from(run_id, windows, ok, series, origin),
    )


def _rows_by_sensor(samples: Sequence[Row], metric: str) -> dict[str, list[Row]]:
    out: dict[str, list[Row]] = {}
    for r in samples:
        if r["metric"] == metric:
            out.setdefault(str(r["sensor"]), []).append(r)
    return out


# -- the store edge ------------------------------------------------------------------------


def load_soak(store: Store, run_id: str, window_s: float = WINDOW_S) -> Soak | None:
    """The run's soak analysis from the database (None: no measured request)."""
    requests = store.requests(run_id)
    samples = list(store.samples(run_id, metrics=(*POWER_METRICS, *THERMAL_METRICS)))
    return soak_from_rows(run_id, requests, store.sensors(run_id), samples, window_s)


def is_soak_run(store: Store, run_id: str, window_s: float = WINDOW_S) -> bool:
    """Whether the run spans at least two full windows, from its requests alone (cheap: no
    samples are read), so `report` and the comparator can skip short runs quickly."""
    span = soak_span_ns(store.requests(run_id))
    return span is not None and span[1] - span[0] >= MIN_FULL_WINDOWS * round(window_s * 1e9)


def sustained_figures(
    store: Store, run_id: str, window_s: float = WINDOW_S
) -> SustainedFigures | None:
    """What the comparator should use for a soak run; None when the run is not a soak."""
    if not is_soak_run(store, run_id, window_s):
        return None
    soak = load_soak(store, run_id, window_s)
    return soak.sustained if soak else None
