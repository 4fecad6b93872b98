"""Pure latency and throughput metrics, as the field defines them (see docs/metrics in README).

Times are perf_counter nanoseconds. `events` are (t_ns, n_tokens) pairs: one per token event,
where a cloud chunk may carry several tokens; such a chunk's gap is split evenly between them.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class RequestMetrics:
    ttft_s: float | None
    prefill_tps: float | None
    decode_tps: float | None
    tpot_s: float | None
    e2e_s: float
    itl_p50_s: float | None
    itl_p90_s: float | None
    itl_p99_s: float | None


def token_times_ns(events: Sequence[tuple[int, int]]) -> list[float]:
    """One timestamp per token: a k-token event at t, after a previous event at t₀, places its
    tokens evenly at t₀ + (t − t₀)·i/k, i = 1..k (the last token at t)."""
    times: list[float] = []
    prev: float | None = None
    for t_ns, n in events:
        if n <= 0:
            continue
        if prev is None or n == 1:
            # The first event's earlier tokens have no previous event: they all arrive at t.
            times.extend([float(t_ns)] * n if prev is None else [float(t_ns)])
        else:
            step = (t_ns - prev) / n
            times.extend(prev + step * i for i in range(1, n + 1))
        prev = float(t_ns)
    return times


def inter_token_latencies_s(events: Sequence[tuple[int, int]]) -> list[float]:
    times = token_times_ns(events)
    return [(b - a) / 1e9 for a, b in itertools.pairwise(times)]


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolation percentile (numpy's default), q in [0, 100]."""
    if not values:
        return None
    xs = sorted(values)
    if len(xs) == 1:
        return xs[0]
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def request_metrics(
    t_start_ns: int,
    events: Sequence[tuple[int, int]],
    t_end_ns: int,
    input_tokens: int,
    output_tokens: int,
) -> RequestMetrics:
    """TTFT = first token − start; prefill tok/s = input / TTFT;
    decode tok/s = (output − 1) / (t_last − t_first); e2e = last event (or end) − start."""
    e2e_s = ((events[-1][0] if events else t_end_ns) - t_start_ns) / 1e9
    if not events:
        return RequestMetrics(None, None, None, None, e2e_s, None, None, None)
    t_first, t_last = events[0][0], events[-1][0]
    ttft_s = (t_first - t_start_ns) / 1e9
    prefill_tps = input_tokens / ttft_s if ttft_s > 0 and input_tokens > 0 else None
    decode_window_s = (t_last - t_first) / 1e9
    # The first event's tokens arrived with the prefill; decode covers the rest.
    first_event_tokens = max(1, events[0][1])
    decode_tokens = output_tokens - first_event_tokens
    decode_tps = (
        decode_tokens / decode_window_s if decode_tokens > 0 and decode_window_s > 0 else None
    )
    itl = inter_token_latencies_s(events)
    return RequestMetrics(
        ttft_s=ttft_s,
        prefill_tps=prefill_tps,
        decode_tps=decode_tps,
        tpot_s=1.0 / decode_tps if decode_tps else None,
        e2e_s=e2e_s,
        itl_p50_s=percentile(itl, 50),
        itl_p90_s=percentile(itl, 90),
        itl_p99_s=percentile(itl, 99),
    )


@dataclass(frozen=True)
class Stat:
    mean: float | None
    sd: float | None  # sample standard deviation (N − 1), as llama-bench reports
    n: int


def mean_sd(values: Sequence[float | None]) -> Stat:
    xs = [v for v in values if v is not None]
    if not xs:
        return Stat(None, None, 0)
    return Stat(statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else None, len(xs))


def j_per_token(energy_j: float | None, tokens: int) -> float | None:
    return energy_j / tokens if energy_j is not None and tokens > 0 else None


# Student's t, two-sided 95 %, for 1..30 degrees of freedom (any statistics table); above 30
# the Cornish-Fisher expansion below is within 1e-4 of the exact quantile.
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
        2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
        2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)  # fmt: skip
_Z975 = 1.959964


def t95(df: int) -> float:
    """The two-sided 95 % quantile of Student's t with `df` degrees of freedom."""
    if df < 1:
        raise ValueError("a t quantile needs at least one degree of freedom")
    if df <= len(_T95):
        return _T95[df - 1]
    z = _Z975
    return (
        z
        + (z**3 + z) / (4 * df)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3)
    )


@dataclass(frozen=True)
class Interval:
    """A 95 % confidence interval of a mean over `n` independent values (repetitions)."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    @property
    def relative(self) -> float:
        """Half-width as a share of the mean: `--target-ci 3%` stops at 0.03."""
        return self.half_width / abs(self.mean) if self.mean else math.inf

    def overlaps(self, other: Interval) -> bool:
        return self.low <= other.high and other.low <= self.high

    def scaled(self, factor: float) -> Interval:
        """The interval of `factor × mean` (a positive factor keeps low below high)."""
        lo, hi = sorted((self.low * factor, self.high * factor))
        return Interval(self.mean * factor, lo, hi, self.n)


def confidence_interval(values: Sequence[float | None]) -> Interval | None:
    """The t interval of the mean; None below two values, where no interval exists."""
    xs = [v for v in values if v is not None]
    if len(xs) < 2:
        return None
    mean = statistics.fmean(xs)
    half = t95(len(xs) - 1) * statistics.stdev(xs) / math.sqrt(len(xs))
    return Interval(mean, mean - half, mean + half, len(xs))


def first_differs(values: Sequence[float]) -> float | None:
    """When the first value lies outside the 95 % interval of the others (a warm-up too
    short), its relative difference from their mean; otherwise None."""
    rest = confidence_interval(values[1:])
    if rest is None or rest.low <= values[0] <= rest.high:
        return None
    return (values[0] - rest.mean) / rest.mean if rest.mean else None
