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

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from edgeprof import economics as ec
from edgeprof.economics import BreakEven, CloudPrice, DeviceCosts, DevicePerformance, Workload
from edgeprof.errors import PricingError, ProfileDBError, UsageError
from edgeprof.store.db import Store

CLOUD_BACKENDS = frozenset({"openai", "anthropic"})
Provenance = Literal["measured", "estimated", "assumed"]


@dataclass(frozen=True)
class Figure:
    name: str
    value: float | str | None
    unit: str
    provenance: Provenance
    source: str


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


@dataclass(frozen=True)
class CloudTarget:
    name: str
    kind: Literal["model", "explicit", "run"]
    price: CloudPrice
    run_id: str | None
    inputs: tuple[Figure, ...]


@dataclass(frozen=True)
class Pair:
    device: str  # DeviceTarget.name
    cloud: str  # CloudTarget.name
    result: BreakEven
    sensitivity: tuple[ec.SensitivityRow, ...]


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

    def pair(self, device: str, cloud: str) -> Pair:
        return next(p for p in self.pairs if p.device == device and p.cloud == cloud)


# -- reading the profile -------------------------------------------------------------------


def _device_target(summary: dict[str, Any]) -> DeviceTarget | str:
    """A device target, or the reason this run cannot be one.

    Energy per token comes from the run's average power while serving (request energy over
    request time) and its measured speeds: J/input token = P / prefill tok/s, J/output token
    = P / decode tok/s. Energy per request is then P × busy seconds, consistent with the
    capacity model, and a workload with other in/out counts than the profile's is charged
    for the time it really keeps the device busy. Prefill is compute-bound and often draws
    more than the average, so input tokens may be under-charged a little: an estimate.
    """
    run_id = str(summary["run_id"])
    name = f"{summary.get('backend')}:{Path(str(summary.get('target') or '?')).name} [{run_id[:8]}]"
    prefill, decode = summary.get("prefill_tps_mean"), summary.get("decode_tps_mean")
    j_out, power_w = summary.get("j_per_output_token"), summary.get("avg_power_w")
    if not prefill or not decode:
        return f"run {run_id[:8]} has no prefill/decode speeds (status {summary.get('status')})"
    if j_out is None:
        return (
            f"run {run_id[:8]} has no energy figures; re-profile with a power sensor "
            "(edgeprof probe) or --tdp-w"
        )
    method = str(summary.get("energy_method") or "estimated")
    energy_prov: Provenance = "measured" if method == "measured" else "estimated"
    mean_in, mean_out = summary.get("mean_input_tokens"), summary.get("mean_output_tokens")
    inputs = [
        Figure("prefill_tps", prefill, "tokens/s", "measured", f"run {run_id}"),
        Figure("decode_tps", decode, "tokens/s", "measured", f"run {run_id}"),
    ]
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
    return DeviceTarget(
        name=name,
        run_id=run_id,
        backend=str(summary.get("backend")),
        model=str(summary.get("target")),
        device_label=summary.get("device_label"),
        performance=DevicePerformance(
            float(prefill), float(decode), float(j_out_decode), float(j_in)
        ),
        mean_input_tokens=mean_in,
        mean_output_tokens=mean_out,
        inputs=tuple(inputs),
    )


def _cloud_run_target(run: dict[str, Any], summary: dict[str, Any]) -> CloudTarget | str:
    from edgeprof import prices

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
    cost = summary.get("cost_per_request_usd")
    if cost is None:
        return f"cloud run {run_id[:8]} ({model}) has no price and recorded no cost; skipped"
    source = (
        f"mean cost the run recorded, at its own {summary.get('mean_input_tokens')} in / "
        f"{summary.get('mean_output_tokens')} out tokens"
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
    return CloudTarget(
        name, kind, CloudPrice(mp.input_usd_per_m, mp.output_usd_per_m), run_id, tuple(figs)
    )


def _summaries(store: Store, run_ids: Sequence[str] | None) -> list[tuple[dict, dict]]:
    from edgeprof.summary import summarize_run

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
) -> Comparison:
    """Price every on-device run in `store` against every cloud target at one workload."""
    from edgeprof import prices

    if (price_in_usd_per_m is None) != (price_out_usd_per_m is None):
        raise UsageError("give both --price-in and --price-out (USD per 1M tokens), or neither")
    notes: list[str] = []
    devices: list[DeviceTarget] = []
    clouds: list[CloudTarget] = []
    for run, summary in _summaries(store, run_ids):
        made: DeviceTarget | CloudTarget | str
        if str(run.get("backend")) in CLOUD_BACKENDS:
            made = _cloud_run_target(run, summary)
        else:
            made = _device_target(summary)
        if isinstance(made, str):
            notes.append(made)
        elif isinstance(made, DeviceTarget):
            devices.append(made)
        else:
            clouds.append(made)
    for ref in cloud_models:
        mp = prices.lookup_price(ref)
        clouds.append(_priced(f"{mp.provider}:{mp.model}", "model", mp))
    if price_in_usd_per_m is not None and price_out_usd_per_m is not None:
        mp = prices.manual_price(price_in_usd_per_m, price_out_usd_per_m)
        name = f"${price_in_usd_per_m:g}/${price_out_usd_per_m:g} per 1M"
        clouds.append(_priced(name, "explicit", mp))
    if not devices:
        why = f" ({'; '.join(notes)})" if notes else ""
        raise ProfileDBError(
            f"no usable on-device run in {store.path}{why}; profile one with "
            "`edgeprof run --backend llamacpp`"
        )
    if not clouds:
        raise UsageError(
            "nothing to compare with: pass --cloud PROVIDER:MODEL (e.g. "
            "openai:gpt-4o-mini) or --price-in USD_PER_M --price-out USD_PER_M"
        )

    assumptions = [
        Figure(
            "requests_per_day", requests_per_day, "requests/day", "assumed", "--requests-per-day"
        ),
        Figure(
            "device_price_usd",
            costs.device_price_usd,
            "USD",
            "assumed",
            "--device-price" + (" (sunk: --owned)" if costs.owned else ""),
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
            raise UsageError(f"the runs record no token counts; pass {flag} N")
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
    workload = Workload(requests_per_day, tokens[0], tokens[1])

    pairs = []
    for d in devices:
        for c in clouds:
            res = ec.break_even(workload, d.performance, costs, c.price, cloud_name=c.name)
            sens = ec.sensitivity(workload, d.performance, costs, c.price)
            pairs.append(Pair(d.name, c.name, res, tuple(sens)))
    return Comparison(
        str(store.path),
        workload,
        costs,
        tuple(assumptions),
        tuple(devices),
        tuple(clouds),
        tuple(pairs),
        tuple(notes),
    )


def to_dict(comparison: Comparison) -> dict[str, Any]:
    """Every figure, JSON-ready (no secrets: runs' params are not copied)."""
    return asdict(comparison)


# -- the plot ------------------------------------------------------------------------------


def plot_costs(comparison: Comparison, path: Path | str) -> Path:
    """Cost per day against requests per day (log-log) for every target; break-evens marked."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    path = Path(path)
    r = comparison.workload.requests_per_day
    first = {p.device: p.result for p in comparison.pairs}
    marks = [r] + [p.result.break_even_requests_per_day or 0 for p in comparison.pairs]
    marks += [res.device_capacity_requests_per_day for res in first.values()]
    positive = [m for m in marks if m and m > 0]
    lo, hi = min(positive) / 10, max(positive) * 10
    xs = np.logspace(math.log10(lo), math.log10(hi), 300)

    fig = MplFigure(figsize=(9, 5.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, d in enumerate(comparison.devices):
        res, color = first[d.name], f"C{i}"
        cap = res.device_capacity_requests_per_day
        x = xs[xs <= cap]
        y = [
            ec.device_cost_per_day_usd(
                v, res.device_capital_usd_per_day, res.device_energy_cost_per_request_usd
            )
            for v in x
        ]
        ax.plot(x, y, color=color, lw=2, label=_tex_safe(f"device: {d.name}"))
        ax.axvline(cap, color=color, ls=":", lw=1)
        ax.annotate(
            f"capacity {ec.format_count(cap)}/day",
            (cap, 0.02),
            color=color,
            xycoords=("data", "axes fraction"),
            rotation=90,
            ha="right",
            fontsize=8,
        )
    n = len(comparison.devices)
    for j, c in enumerate(comparison.clouds):
        per_req = next(
            p.result.cloud_cost_per_request_usd for p in comparison.pairs if p.cloud == c.name
        )
        ax.plot(
            xs,
            xs * per_req,
            color=f"C{n + j}",
            lw=1.5,
            ls="--",
            label=_tex_safe(f"cloud: {c.name}"),
        )
    for k, p in enumerate(comparison.pairs):
        be = p.result.break_even_requests_per_day
        if be and p.result.break_even_status == "ok":
            at = (be, be * p.result.cloud_cost_per_request_usd)
            ax.plot([at[0]], [at[1]], "o", color="black", ms=6)
            # Stagger labels: break-evens against similar clouds sit close together.
            ax.annotate(
                f"{ec.format_count(be)}/day",
                at,
                textcoords="offset points",
                xytext=(6, -12 - 10 * (k % 3)),
                fontsize=8,
            )
    ax.axvline(r, color="grey", ls="-.", lw=1, label=f"your volume: {ec.format_count(r)}/day")
    ax.set_xscale("log")
    ax.set_yscale("log", nonpositive="mask")
    ax.set_xlabel("requests per day")
    ax.set_ylabel("cost per day (USD)")
    w = comparison.workload
    ax.set_title(
        f"Cost per day, {w.input_tokens:,.0f} in / {w.output_tokens:,.0f} out tokens "
        "per request (● break-even)"
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def _tex_safe(text: str) -> str:
    """Matplotlib reads $...$ as math; target names like "$5/$15 per 1M" must stay literal."""
    return text.replace("$", r"\$")
