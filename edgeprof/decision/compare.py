"""The comparator: on-device runs from a profile database against cloud targets, priced.

Inputs come from three places, and each figure says which (`Figure.provenance`):
    measured   read from this profile: tok/s, J/token where a power sensor measured it,
               the cost a cloud run recorded, mean token counts when none are given
    estimated  derived by a model: J/token from the TDP estimate sampler, and the energy of an
               input token (see `_device_target`)
    assumed    given by the user or taken from a price list: device price, lifetime,
               electricity, utilization, volume, cloud list prices (discounts not known)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from edgeprof.analysis.metrics import Interval
from edgeprof.analysis.summary import RunSummary
from edgeprof.decision import economics as ec
from edgeprof.decision.economics import (
    BreakEven,
    CloudPrice,
    DeviceCosts,
    DevicePerformance,
    Workload,
)
from edgeprof.errors import PricingError, ProfileDBError, UsageError
from edgeprof.quality.floor import QualityFloor, TargetQuality
from edgeprof.store.db import Store
from edgeprof.store.rows import RunRow

Provenance = Literal["measured", "estimated", "assumed"]
# The p95 time to first token a device may take when `compare` picks its concurrency from a
# throughput curve and no --max-ttft-s is given: an interactive feature's patience.
CURVE_MAX_TTFT_S = 2.0


@dataclass(frozen=True)
class Figure:
    name: str
    value: float | str | None
    unit: str
    provenance: Provenance
    source: str


@dataclass(frozen=True)
class Latency:
    """What a user waits for, as a run measured it (None: not measured)."""

    ttft_p50_s: float | None
    ttft_p99_s: float | None
    e2e_p50_s: float | None
    decode_tps: float | None
    peak_rss_bytes: int | None = None  # on-device: the memory the feature takes
    ttft_p95_s: float | None = None
    e2e_p99_s: float | None = None

    @classmethod
    def of(cls, summary: RunSummary) -> Latency:
        return cls(
            summary.ttft_p50_s,
            summary.ttft_p99_s,
            summary.e2e_p50_s,
            summary.decode_tps_mean,
            summary.peak_rss_bytes,
            summary.ttft_p95_s,
            summary.e2e_p99_s,
        )


@dataclass(frozen=True)
class DeviceTarget:
    name: str
    run_id: str
    backend: str
    model: str
    device_label: str | None
    performance: DevicePerformance
    mean_input_tokens: float | None
    mean_output_tokens: float | None
    inputs: tuple[Figure, ...]
    latency: Latency | None = None
    energy_method: str | None = None  # "measured", "estimated", or both joined with "+"
    device_id: str | None = None
    quality: TargetQuality | None = None  # from `edgeprof quality`; None: not measured
    # runs of the same target at other concurrencies share this key (a throughput curve)
    curve_key: tuple[Any, ...] | None = None
    # the performance at the slow and the fast end of the runs' 95 % intervals of prefill and
    # decode tok/s (energy per token follows the speed at the measured power); None with a
    # single repetition, where no interval exists
    bounds: tuple[DevicePerformance, DevicePerformance] | None = None
    repetitions: int = 0
    # a soak's target: where its (sustained) figures come from; None for a short run
    sustained: str | None = None


@dataclass(frozen=True)
class CloudTarget:
    name: str
    kind: Literal["model", "explicit", "run"]
    price: CloudPrice
    run_id: str | None
    inputs: tuple[Figure, ...]
    latency: Latency | None = None  # measured only when the endpoint was profiled live


@dataclass(frozen=True)
class Pair:
    device: str  # DeviceTarget.name
    cloud: str  # CloudTarget.name
    result: BreakEven
    sensitivity: tuple[ec.SensitivityRow, ...]
    # with a shared prefix: what caching it saves each side a day (0 without one)
    device_caching_saves_usd_per_day: float = 0.0
    cloud_caching_saves_usd_per_day: float = 0.0
    # the device's $/day at the two ends of its speeds' 95 % intervals (low, high)
    device_cost_per_day_ci_usd: tuple[float, float] | None = None


@dataclass(frozen=True)
class Comparison:
    db_path: str
    workload: Workload
    costs: DeviceCosts
    assumptions: tuple[Figure, ...]
    devices: tuple[DeviceTarget, ...]
    clouds: tuple[CloudTarget, ...]
    pairs: tuple[Pair, ...]
    notes: tuple[str, ...] = field(default=())
    floor: QualityFloor = field(default_factory=QualityFloor)
    # device targets left out by the quality floor: (name, reason)
    below_floor: tuple[tuple[str, str], ...] = field(default=())

    def pair(self, device: str, cloud: str) -> Pair:
        return next(p for p in self.pairs if p.device == device and p.cloud == cloud)


# -- reading the profile -------------------------------------------------------------------


def _device_target(summary: RunSummary) -> DeviceTarget | str:
    """A device target, or the reason this run cannot be one.

    Energy per token comes from the run's average power while serving (request energy over
    request time) and its measured speeds: J/input token = P / prefill tok/s, J/output token
    = P / decode tok/s. Energy per request is then P × busy seconds, consistent with the
    capacity model, and a workload with other in/out counts than the profile's is charged
    for the time it really keeps the device busy. Prefill is compute-bound and often draws
    more than the average, so input tokens may be under-charged a little: an estimate.

    A run at concurrency N measured each request's speeds under that load while N shared the
    device: each is charged P / N, and the device serves N at once.
    """
    run_id = summary.run_id
    name = f"{summary.backend}:{Path(summary.target or '?').name} [{run_id[:8]}]"
    prefill, decode = summary.prefill_tps_mean, summary.decode_tps_mean
    j_out, power_w = summary.j_per_output_token, summary.avg_power_w
    if not prefill or not decode:
        return f"run {run_id[:8]} has no prefill/decode speeds (status {summary.status})"
    if j_out is None:
        return (
            f"run {run_id[:8]} has no energy figures; re-profile with a power sensor "
            "(edgeprof probe) or `tdp_w`"
        )
    method = summary.energy_method or "estimated"
    energy_prov: Provenance = "measured" if method == "measured" else "estimated"
    mean_in, mean_out = summary.mean_input_tokens, summary.mean_output_tokens
    pre_src, dec_src = (
        _ci_source(run_id, ci) for ci in (summary.prefill_tps_ci, summary.decode_tps_ci)
    )
    inputs = [
        Figure("prefill_tps", prefill, "tokens/s", "measured", pre_src),
        Figure("decode_tps", decode, "tokens/s", "measured", dec_src),
    ]
    n = max(1, int(summary.concurrency or 1))
    if n > 1:
        inputs.append(Figure("concurrency", n, "requests at once", "measured",
                             f"run {run_id}: speeds per request under that load"))  # fmt: skip
        power_w = power_w / n if power_w else power_w
    if power_w:
        j_in, j_out_decode = power_w / prefill, power_w / decode
        inputs += [
            Figure(
                "avg_power_w",
                power_w,
                "W",
                energy_prov,
                f"request energy / request time ({method})",
            ),
            Figure(
                "j_per_input_token",
                j_in,
                "J/token",
                "estimated",
                "average power / prefill tok/s (prefill power taken as the average)",
            ),
            Figure(
                "j_per_output_token",
                j_out_decode,
                "J/token",
                energy_prov,
                "average power / decode tok/s",
            ),
        ]
    else:
        j_in, j_out_decode = 0.0, j_out
        inputs += [
            Figure(
                "j_per_input_token",
                0.0,
                "J/token",
                "assumed",
                "no request timing: the whole request's energy is charged to output",
            ),
            Figure(
                "j_per_output_token",
                j_out,
                "J/token",
                energy_prov,
                f"whole-request energy / output tokens ({method})",
            ),
        ]
    idle_w = summary.idle_power_w
    if idle_w is not None:
        inputs.append(
            Figure(
                "idle_power_w",
                idle_w,
                "W",
                energy_prov,
                f"idle baseline before the model loaded ({method})",
            )
        )
    else:
        inputs.append(
            Figure(
                "idle_power_w",
                None,
                "W",
                "assumed",
                "not measured (run with --idle-seconds > 0): idle draw is not charged",
            )
        )
    performance = DevicePerformance(
        float(prefill), float(decode), float(j_out_decode), float(j_in), idle_w, n
    )
    return DeviceTarget(
        name=name,
        run_id=run_id,
        backend=summary.backend,
        model=str(summary.target),
        device_label=summary.device_label,
        performance=performance,
        bounds=performance_bounds(performance, summary),
        repetitions=summary.n_repetitions,
        mean_input_tokens=mean_in,
        mean_output_tokens=mean_out,
        inputs=tuple(inputs),
        latency=Latency.of(summary),
        energy_method=method,
        device_id=summary.device_id,
    )


def _ci_source(run_id: str, ci: Interval | None) -> str:
    if ci is None:
        return f"run {run_id} (one repetition: no interval)"
    return f"run {run_id}; 95% interval {ci.low:,.1f}-{ci.high:,.1f} over {ci.n} repetitions"


def performance_bounds(
    p: DevicePerformance, summary: RunSummary
) -> tuple[DevicePerformance, DevicePerformance] | None:
    """The performance at the slow and the fast ends of the run's 95 % intervals of prefill
    and decode tok/s. Power is taken as measured, so energy per token moves with the speed:
    on a CPU the time a token takes, not the draw, is what varies between repetitions."""
    pre, dec = summary.prefill_tps_ci, summary.decode_tps_ci
    if pre is None or dec is None or pre.low <= 0 or dec.low <= 0:
        return None

    def at(prefill_tps: float, decode_tps: float) -> DevicePerformance:
        return replace(
            p,
            prefill_tps=prefill_tps,
            decode_tps=decode_tps,
            j_per_input_token=p.j_per_input_token * p.prefill_tps / prefill_tps,
            j_per_output_token=p.j_per_output_token * p.decode_tps / decode_tps,
        )

    # scaled to the target's own figures (the means the interval is centred on may differ
    # from the per-request means a little when a repetition was cut short)
    slow = at(p.prefill_tps * pre.low / pre.mean, p.decode_tps * dec.low / dec.mean)
    fast = at(p.prefill_tps * pre.high / pre.mean, p.decode_tps * dec.high / dec.mean)
    return slow, fast


def pool_idle_baselines(devices: Sequence[DeviceTarget]) -> list[DeviceTarget]:
    """One idle draw per device: the mean of its runs' baselines. Idle is the device's, not
    a backend's; each run's own few seconds of it differ by noise, which must not decide
    between two backends on the same device."""
    by_device: dict[str | None, list[float]] = {}
    for d in devices:
        if d.performance.idle_power_w is not None:
            by_device.setdefault(d.device_id, []).append(d.performance.idle_power_w)
    pooled = []
    for d in devices:
        values = by_device.get(d.device_id, [])
        if len(values) < 2 or d.performance.idle_power_w is None:
            pooled.append(d)
            continue
        mean_w = sum(values) / len(values)
        old = next(f for f in d.inputs if f.name == "idle_power_w")
        figure = replace(
            old,
            value=mean_w,
            source=f"mean of the idle baselines of {len(values)} runs on this device "
            f"({', '.join(f'{v:.3g}' for v in values)} W; {old.source})",
        )
        inputs = tuple(figure if f is old else f for f in d.inputs)
        perf = replace(d.performance, idle_power_w=mean_w)
        bounds = d.bounds and (
            replace(d.bounds[0], idle_power_w=mean_w),
            replace(d.bounds[1], idle_power_w=mean_w),
        )
        pooled.append(replace(d, performance=perf, inputs=inputs, bounds=bounds))
    return pooled


def _cloud_run_target(run: RunRow, summary: RunSummary) -> CloudTarget | str:
    from edgeprof.decision import prices

    run_id, model = str(run["id"]), str(run.get("target") or "")
    name = f"{run.get('backend')}:{model} [{run_id[:8]}]"
    raw = run.get("params")
    params: dict[str, Any] = raw if isinstance(raw, dict) else {}
    p_in, p_out = params.get("price_in_usd_per_m"), params.get("price_out_usd_per_m")
    if p_in is not None and p_out is not None:
        price = CloudPrice(float(p_in), float(p_out))
        return CloudTarget(
            name,
            "run",
            price,
            run_id,
            (
                Figure("price_in_usd_per_m", p_in, "USD/1M tokens", "assumed", "recorded with run"),
                Figure(
                    "price_out_usd_per_m", p_out, "USD/1M tokens", "assumed", "recorded with run"
                ),
            ),
        )
    try:
        base_url = params.get("base_url")
        provider = prices.provider_for_url(base_url) if base_url else str(run.get("backend"))
        mp = prices.lookup_price(model, provider=provider)
        return _priced(name, "run", mp, run_id)
    except PricingError:
        pass
    cost = summary.cost_per_request_usd
    if cost is None:
        return f"cloud run {run_id[:8]} ({model}) has no price and recorded no cost; skipped"
    source = (
        f"mean cost the run recorded, at its own {summary.mean_input_tokens} in / "
        f"{summary.mean_output_tokens} out tokens"
    )
    return CloudTarget(
        name,
        "run",
        CloudPrice(cost_per_request_usd=float(cost)),
        run_id,
        (Figure("cost_per_request_usd", cost, "USD", "measured", source),),
    )


def _priced(
    name: str, kind: Literal["model", "explicit", "run"], mp: Any, run_id: str | None = None
) -> CloudTarget:
    source = mp.source + (f" list price on {mp.snapshot_date}" if mp.snapshot_date else "")
    figs = [
        Figure("price_in_usd_per_m", mp.input_usd_per_m, "USD/1M tokens", "assumed", source),
        Figure("price_out_usd_per_m", mp.output_usd_per_m, "USD/1M tokens", "assumed", source),
    ]
    cached = getattr(mp, "cached_input_usd_per_m", None)
    if cached is not None:
        figs.append(Figure("price_cached_in_usd_per_m", cached, "USD/1M tokens", "assumed", source))
    price = CloudPrice(mp.input_usd_per_m, mp.output_usd_per_m, cached_input_usd_per_m=cached)
    return CloudTarget(name, kind, price, run_id, tuple(figs))


def _summaries(store: Store, run_ids: Sequence[str] | None) -> list[tuple[RunRow, RunSummary]]:
    from edgeprof.analysis.summary import summarize_run

    if run_ids:
        ids = [store.resolve_run_id(r) for r in run_ids]
        runs = store.runs(ids)
    else:
        runs = [r for r in store.runs() if r.get("status") == "complete"]
        if not runs:
            raise ProfileDBError(
                f"{store.path} holds no complete runs; profile one with "
                f"`edgeprof run --db {store.path}`"
            )
    return [(run, summarize_run(store, str(run["id"]))) for run in runs]


# -- the comparison ------------------------------------------------------------------------


def compare(
    store: Store,
    costs: DeviceCosts,
    *,
    requests_per_day: float,
    input_tokens: float | None = None,
    output_tokens: float | None = None,
    run_ids: Sequence[str] | None = None,
    cloud_models: Sequence[str] = (),
    price_in_usd_per_m: float | None = None,
    price_out_usd_per_m: float | None = None,
    floor: QualityFloor | None = None,
    shared_prefix_tokens: float = 0.0,
    cache_device: bool = True,
    cache_cloud: bool = True,
    max_ttft_s: float | None = None,
) -> Comparison:
    """Price every on-device run in `store` against every cloud target at one workload.

    With a quality `floor`, device targets that miss it, or whose quality was never measured,
    are left out (listed in `below_floor`); cloud models are taken to meet it.

    `shared_prefix_tokens` of every request's input are the same (a system prompt): the cloud
    bills them at its cached-input price where it lists one (`cache_cloud`), and the device
    keeps their KV state instead of prefilling them again (`cache_device`); each pair says
    what caching saved each side."""
    floor = floor or QualityFloor()
    if (price_in_usd_per_m is None) != (price_out_usd_per_m is None):
        raise UsageError(
            "give both `price_in_usd_per_m` and `price_out_usd_per_m` (USD per 1M tokens), "
            "or neither"
        )
    devices, clouds, notes = targets_from_runs(store, run_ids)
    devices, curve_notes = pick_from_curves(devices, max_ttft_s)
    notes += curve_notes
    devices = pool_idle_baselines(devices)
    devices, below_floor = _apply_floor(devices, floor)
    clouds += _listed_clouds(cloud_models, price_in_usd_per_m, price_out_usd_per_m)
    if below_floor and not devices:
        reasons = "; ".join(f"{name}: {why}" for name, why in below_floor)
        raise UsageError(
            f"no on-device target meets the quality floor ({floor.describe()}): {reasons}; "
            "loosen the floor, or measure with `edgeprof quality TARGET --reference REF`"
        )
    if not devices:
        why = f" ({'; '.join(notes)})" if notes else ""
        raise ProfileDBError(
            f"no usable on-device run in {store.path}{why}; profile one with "
            "`edgeprof run --backend llamacpp`"
        )
    if not clouds:
        raise UsageError(
            "nothing to compare with: pass `cloud_models` PROVIDER:MODEL (e.g. "
            "openai:gpt-4o-mini) or `price_in_usd_per_m` and `price_out_usd_per_m`"
        )
    assumptions = _cost_assumptions(costs, requests_per_day)
    tokens = _token_counts(devices, input_tokens, output_tokens, assumptions)
    plain = Workload(requests_per_day, tokens[0], tokens[1])
    workload = replace(
        plain,
        cached_input_tokens=shared_prefix_tokens if cache_cloud else 0.0,
        device_cached_input_tokens=shared_prefix_tokens if cache_device else 0.0,
    )
    if shared_prefix_tokens:
        assumptions.append(_prefix_figure(shared_prefix_tokens, cache_device, cache_cloud))
    pairs = []
    for d in devices:
        for c in clouds:
            res = ec.break_even(workload, d.performance, costs, c.price, cloud_name=c.name)
            sens = ec.sensitivity(workload, d.performance, costs, c.price)
            pair = Pair(d.name, c.name, res, tuple(sens),
                        device_cost_per_day_ci_usd=_cost_range(workload, d, costs, c))  # fmt: skip
            if shared_prefix_tokens:
                base = ec.break_even(plain, d.performance, costs, c.price, cloud_name=c.name)
                pair = replace(
                    pair,
                    device_caching_saves_usd_per_day=base.device_cost_per_day_usd
                    - res.device_cost_per_day_usd,
                    cloud_caching_saves_usd_per_day=base.cloud_cost_per_day_usd
                    - res.cloud_cost_per_day_usd,
                )
            pairs.append(pair)
    return Comparison(
        str(store.path),
        workload,
        costs,
        tuple(assumptions),
        tuple(devices),
        tuple(clouds),
        tuple(pairs),
        tuple(notes),
        floor,
        tuple(below_floor),
    )


def _cost_range(
    workload: Workload, d: DeviceTarget, costs: DeviceCosts, cloud: CloudTarget
) -> tuple[float, float] | None:
    if d.bounds is None:
        return None
    ends = [ec.break_even(workload, b, costs, cloud.price) for b in d.bounds]
    days = [e.device_cost_per_day_usd for e in ends]
    return min(days), max(days)


def _prefix_figure(tokens: float, device: bool, cloud: bool) -> Figure:
    sides = [side for side, on in (("device KV cache", device), ("cloud cached-input price",
                                                                 cloud)) if on]  # fmt: skip
    how = " and ".join(sides) or "not cached on either side"
    return Figure("shared_prefix_tokens", tokens, "tokens/request", "assumed",
                  f"--shared-prefix-tokens; cached by {how}")  # fmt: skip


def _apply_floor(
    devices: list[DeviceTarget], floor: QualityFloor
) -> tuple[list[DeviceTarget], list[tuple[str, str]]]:
    if not floor.active:
        return devices, []
    kept, left_out = [], []
    for d in devices:
        ok, why = floor.check(d.quality)
        if ok:
            kept.append(d)
        else:
            left_out.append((d.name, why))
    return kept, left_out


def targets_from_runs(
    store: Store, run_ids: Sequence[str] | None
) -> tuple[list[DeviceTarget], list[CloudTarget], list[str]]:
    """Device and cloud targets from the runs (by the kind each run recorded), and notes on
    the runs that cannot be either."""
    notes: list[str] = []
    devices: list[DeviceTarget] = []
    clouds: list[CloudTarget] = []
    for run, summary in _summaries(store, run_ids):
        made: DeviceTarget | CloudTarget | str
        if run.get("target_kind") == "remote":
            made = _cloud_run_target(run, summary)
            if isinstance(made, CloudTarget):
                made = replace(made, latency=Latency.of(summary))
        else:
            summary, sustained = _sustained(store, run, summary)
            made = _device_target(summary)
            if isinstance(made, DeviceTarget) and sustained:
                soak = Figure("duration_s", run["params"]["duration_s"], "s", "measured", sustained)
                made = replace(made, sustained=sustained, inputs=(*made.inputs, soak))
            if isinstance(made, DeviceTarget):
                made = replace(made, quality=_quality(store, run), curve_key=_curve_key(run))
        if isinstance(made, str):
            notes.append(made)
        elif isinstance(made, DeviceTarget):
            devices.append(made)
        else:
            clouds.append(made)
    devices, soak_notes = prefer_soaks(devices)
    return devices, clouds, notes + soak_notes


def _sustained(store: Store, run: RunRow, summary: RunSummary) -> tuple[RunSummary, str | None]:
    """A soak (`run --duration`) stands for what the device sustains: its later half's
    figures replace the whole run's. Returns the summary to price and where its figures
    came from (None: not a soak)."""
    if not (run.get("params") or {}).get("duration_s"):
        return summary, None
    from edgeprof.analysis.soak import sustained_figures

    s = sustained_figures(store, run["id"])
    if s is None or not s.decode_tps_mean or not s.prefill_tps_mean:
        return summary, None
    figures = replace(
        summary,
        decode_tps_mean=s.decode_tps_mean,
        prefill_tps_mean=s.prefill_tps_mean,
        decode_tps_ci=s.decode_tps_ci,
        prefill_tps_ci=s.prefill_tps_ci,
        avg_power_w=s.avg_power_w if s.avg_power_w is not None else summary.avg_power_w,
        j_per_output_token=s.j_per_output_token or summary.j_per_output_token,
        energy_method=s.energy_method or summary.energy_method,
    )
    return figures, (
        f"sustained: {s.definition} of a {run['params']['duration_s']:g} s soak "
        f"({s.t0_s:.0f}-{s.t1_s:.0f} s, {s.n_requests} requests)"
    )


def prefer_soaks(devices: list[DeviceTarget]) -> tuple[list[DeviceTarget], list[str]]:
    """Where one target (same device, model, backend, settings, concurrency) has a soak, its
    short runs are left out: a burst overstates what a device that heats up sustains."""
    soaked = {(d.curve_key, d.performance.concurrency) for d in devices if d.sustained}
    kept, notes = [], []
    for d in devices:
        if d.sustained is None and (d.curve_key, d.performance.concurrency) in soaked:
            notes.append(f"{d.name}: left out; a soak of the same target says what it sustains")
        else:
            kept.append(d)
    return kept, notes


def _curve_key(run: RunRow) -> tuple[Any, ...]:
    """What must match for runs to be points of one throughput curve: all but concurrency."""
    p = run.get("params") or {}
    return (run.get("device_id"), run["backend"], run.get("model_sha256"), run.get("quant"),
            p.get("threads"), p.get("max_tokens"), p.get("suite_sha256"))  # fmt: skip


def pick_from_curves(
    devices: list[DeviceTarget], max_ttft_s: float | None
) -> tuple[list[DeviceTarget], list[str]]:
    """Where a target was profiled at several concurrencies, keep the run at the highest one
    whose p95 TTFT meets `max_ttft_s` (CURVE_MAX_TTFT_S when not given): the device's
    capacity under that latency requirement. Returns the targets and a note per curve."""
    limit = CURVE_MAX_TTFT_S if max_ttft_s is None else max_ttft_s
    groups: dict[Any, list[DeviceTarget]] = {}
    for d in devices:
        groups.setdefault(d.curve_key or d.name, []).append(d)
    kept, notes = [], []
    for group in groups.values():
        levels = {d.performance.concurrency for d in group}
        if len(levels) < 2:
            kept += group
            continue
        by_n = sorted(group, key=lambda d: (d.performance.concurrency, d.run_id))
        ok = [d for d in by_n if _p95(d) is not None and _p95(d) <= limit]  # type: ignore[operator]
        chosen = ok[-1] if ok else by_n[0]
        kept.append(chosen)
        points = ", ".join(f"{d.performance.concurrency}: {_p95_text(d)}" for d in by_n)
        source = "--max-ttft-s" if max_ttft_s is not None else "default; set --max-ttft-s"
        why = (f"the highest whose p95 TTFT meets {limit:g} s ({source})" if ok else
               f"none meets {limit:g} s p95 TTFT ({source}); the lowest")  # fmt: skip
        n = chosen.performance.concurrency
        notes.append(
            f"{chosen.name}: throughput curve (concurrency: p95 TTFT) {points}; capacity at "
            f"concurrency {n}, {why}"
        )
    return kept, notes


def _p95(d: DeviceTarget) -> float | None:
    return d.latency.ttft_p95_s if d.latency else None


def _p95_text(d: DeviceTarget) -> str:
    v = _p95(d)
    return "–" if v is None else f"{v:.2f} s"


def _quality(store: Store, run: RunRow) -> TargetQuality | None:
    from edgeprof.quality.store import quality_of

    row = quality_of(store, run.get("model_sha256"), str(run["backend"]), run.get("quant"))
    return TargetQuality.of(row) if row else None


def _listed_clouds(
    cloud_models: Sequence[str], price_in: float | None, price_out: float | None
) -> list[CloudTarget]:
    """Cloud targets named by the user: catalog models, and one explicit price pair."""
    from edgeprof.decision import prices

    clouds = []
    for ref in cloud_models:
        mp = prices.lookup_price(ref)
        clouds.append(_priced(f"{mp.provider}:{mp.model}", "model", mp))
    if price_in is not None and price_out is not None:
        mp = prices.manual_price(price_in, price_out)
        clouds.append(_priced(f"${price_in:g}/${price_out:g} per 1M", "explicit", mp))
    return clouds


def _cost_assumptions(costs: DeviceCosts, requests_per_day: float) -> list[Figure]:
    # Each source names the flag that sets the figure: this list is shown as it is.
    return [
        Figure(
            "requests_per_day", requests_per_day, "requests/day", "assumed", "--requests-per-day"
        ),
        Figure("deployment", costs.deployment, "", "assumed", "--deployment"),
        Figure(
            "device_price_usd",
            costs.device_price_usd,
            "USD",
            "assumed",
            "--device-price" + (" (sunk: owned)" if costs.owned else ""),
        ),
        Figure("lifetime_years", costs.lifetime_years, "years", "assumed", "--lifetime-years"),
        Figure(
            "electricity_usd_per_kwh",
            costs.electricity_usd_per_kwh,
            "USD/kWh",
            "assumed",
            "--electricity",
        ),
        Figure("utilization", costs.utilization, "fraction of the day", "assumed", "--utilization"),
    ]


def _token_counts(
    devices: Sequence[DeviceTarget],
    input_tokens: float | None,
    output_tokens: float | None,
    assumptions: list[Figure],
) -> tuple[float, float]:
    """Tokens per request: as given, else the mean the on-device runs measured. Appends the
    figure used to `assumptions`."""
    tokens: list[float] = []
    for flag, given, key in (
        ("--input-tokens", input_tokens, "mean_input_tokens"),
        ("--output-tokens", output_tokens, "mean_output_tokens"),
    ):
        name = flag[2:].replace("-", "_")
        if given is not None:
            tokens.append(float(given))
            assumptions.append(Figure(name, given, "tokens/request", "assumed", flag))
            continue
        means = [getattr(d, key) for d in devices if getattr(d, key)]
        if not means:
            raise UsageError(f"the runs record no token counts; pass `{name}` N")
        tokens.append(sum(means) / len(means))
        assumptions.append(
            Figure(
                name,
                tokens[-1],
                "tokens/request",
                "measured",
                f"mean over the on-device runs (no {flag} given)",
            )
        )
    return tokens[0], tokens[1]


def to_dict(comparison: Comparison) -> dict[str, Any]:
    """Every figure, JSON-ready (no secrets: runs' params are not copied)."""
    return asdict(comparison)
