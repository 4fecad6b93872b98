"""The words of `edgeprof decide`: one row per device × cloud pair, and one paragraph a product
manager can act on. Pure functions of a `Comparison`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from edgeprof.report.formatting import format_count, format_usd

# Costs within 5 % of each other are a tie: profiles on a shared machine move 10-20 % between
# runs, and an estimated energy figure is not better than that.
CLOSE_CALL = 0.05

if TYPE_CHECKING:
    from edgeprof.decision.compare import Comparison, DeviceTarget, Latency
    from edgeprof.decision.config import TargetRun
    from edgeprof.decision.economics import BreakEven


def _meets(latency: Latency | None, max_ttft_s: float | None) -> bool | None:
    """Whether a target's first token meets the requirement at its p95 (the percentile
    `--max-ttft-s` means everywhere, capacity included: `compare.MAX_TTFT_PERCENTILE`); None
    when there is no requirement or nothing was measured."""
    if max_ttft_s is None or latency is None or latency.ttft_p95_s is None:
        return None
    return latency.ttft_p95_s <= max_ttft_s


Side = Literal["device", "cloud"]
SIDES: tuple[Side, ...] = ("device", "cloud")


@dataclass(frozen=True)
class SideFigures:
    """One side of a decision row (the device target or the cloud), read by name."""

    key: str  # the target as the comparison names it
    cost_per_day_usd: float
    meets_max_ttft: bool | None
    latency: str  # "measured" | "not measured"
    ttft_p50_s: float | None
    ttft_p99_s: float | None
    e2e_p50_s: float | None
    decode_tps: float | None


@dataclass(frozen=True)
class DecisionRow:
    """Every figure a verdict rests on for one device × cloud pair. `asdict` gives decide's
    `--json` rows; the field names are those keys."""

    device: str
    cloud: str
    deployment: str
    requests_per_day: float
    break_even_requests_per_day: float | None
    break_even_status: str
    payback_months: float | None
    device_capacity_requests_per_day: float
    devices_needed: int
    devices_bought: int
    device_cost_per_day_usd: float
    # the device's $/day at the ends of its measured speeds' 95 % intervals
    device_cost_per_day_ci_usd: tuple[float, float] | None
    cloud_cost_per_day_usd: float
    saving_usd_per_day: float
    device_cost_per_request_usd: float
    cloud_cost_per_request_usd: float
    device_latency: str
    device_ttft_p50_s: float | None
    device_ttft_p99_s: float | None
    device_e2e_p50_s: float | None
    device_decode_tps: float | None
    device_peak_rss_bytes: float | None
    device_quality: str
    device_kld_mean: float | None
    device_delta_ppl_pct: float | None
    device_top1_agreement: float | None
    device_quality_reference: str | None
    device_quality_text: str | None
    cloud_latency: str
    cloud_ttft_p50_s: float | None
    cloud_ttft_p99_s: float | None
    cloud_e2e_p50_s: float | None
    cloud_decode_tps: float | None
    device_meets_max_ttft: bool | None
    cloud_meets_max_ttft: bool | None
    device_energy_net_j_per_request: float | None
    user_energy_cost_per_request_usd: float | None
    user_battery_pct_per_100_requests: float | None
    cheaper: Side
    verdict: str

    def side(self, side: Side) -> SideFigures:
        if side == "device":
            return SideFigures(
                self.device, self.device_cost_per_day_usd, self.device_meets_max_ttft,
                self.device_latency, self.device_ttft_p50_s, self.device_ttft_p99_s,
                self.device_e2e_p50_s, self.device_decode_tps,
            )  # fmt: skip
        return SideFigures(
            self.cloud, self.cloud_cost_per_day_usd, self.cloud_meets_max_ttft,
            self.cloud_latency, self.cloud_ttft_p50_s, self.cloud_ttft_p99_s,
            self.cloud_e2e_p50_s, self.cloud_decode_tps,
        )  # fmt: skip


def _latency_cells(prefix: Side, latency: Latency | None) -> dict[str, Any]:
    lat = latency
    return {
        f"{prefix}_latency": "measured" if lat is not None else "not measured",
        f"{prefix}_ttft_p50_s": lat.ttft_p50_s if lat else None,
        f"{prefix}_ttft_p99_s": lat.ttft_p99_s if lat else None,
        f"{prefix}_e2e_p50_s": lat.e2e_p50_s if lat else None,
        f"{prefix}_decode_tps": lat.decode_tps if lat else None,
    }


def _quality_cells(c: Comparison, d: DeviceTarget) -> dict[str, Any]:
    q = d.quality
    return {
        "device_quality": c.floor.check(q)[1],
        "device_kld_mean": q.kld_mean if q else None,
        "device_delta_ppl_pct": q.delta_ppl_pct if q else None,
        "device_top1_agreement": q.top1_agreement if q else None,
        "device_quality_reference": q.reference_note if q else None,
        "device_quality_text": q.text_name if q else None,
    }


def decision_rows(c: Comparison, max_ttft_s: float | None = None) -> list[DecisionRow]:
    """Every figure a verdict rests on, one row per device × cloud pair."""
    devices = {d.name: d for d in c.devices}
    clouds = {t.name: t for t in c.clouds}
    rows = []
    for p in c.pairs:
        r, d, t = p.result, devices[p.device], clouds[p.cloud]
        rows.append(
            DecisionRow(
                device=p.device,
                cloud=p.cloud,
                deployment=r.deployment,
                requests_per_day=r.requests_per_day,
                break_even_requests_per_day=r.break_even_requests_per_day,
                break_even_status=r.break_even_status,
                payback_months=r.payback_months,
                device_capacity_requests_per_day=r.device_capacity_requests_per_day,
                devices_needed=r.devices_needed,
                devices_bought=r.devices_bought,
                device_cost_per_day_usd=r.device_cost_per_day_usd,
                device_cost_per_day_ci_usd=p.device_cost_per_day_ci_usd,
                cloud_cost_per_day_usd=r.cloud_cost_per_day_usd,
                saving_usd_per_day=r.saving_usd_per_day,
                device_cost_per_request_usd=r.device_cost_per_request_usd,
                cloud_cost_per_request_usd=r.cloud_cost_per_request_usd,
                **_latency_cells("device", d.latency),
                device_peak_rss_bytes=d.latency.peak_rss_bytes if d.latency else None,
                **_quality_cells(c, d),
                **_latency_cells("cloud", t.latency),
                device_meets_max_ttft=_meets(d.latency, max_ttft_s),
                cloud_meets_max_ttft=_meets(t.latency, max_ttft_s),
                device_energy_net_j_per_request=r.device_energy_net_j_per_request,
                user_energy_cost_per_request_usd=r.user_energy_cost_per_request_usd,
                user_battery_pct_per_100_requests=r.user_battery_pct_per_100_requests,
                cheaper="device" if r.saving_usd_per_day > 0 else "cloud",
                verdict=r.verdict,
            )
        )
    return rows


# -- the paragraph -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Option:
    """One way to serve the feature: a device target or a cloud target."""

    name: str  # as the paragraph says it
    key: str  # as the comparison names it
    side: Side
    cost_per_day_usd: float
    meets: bool | None
    # (low, high) $/day over the 95 % intervals of what was measured; None: no interval
    # (one repetition). A cloud's bill is a price list: its own cost, exactly.
    cost_ci: tuple[float, float] | None = None

    def overlaps(self, other: _Option) -> bool:
        """Whether the two costs' intervals overlap: the gap is inside the noise."""
        a = self.cost_ci or (self.cost_per_day_usd,) * 2
        b = other.cost_ci or (other.cost_per_day_usd,) * 2
        if self.cost_ci is None and other.cost_ci is None:
            return False
        return a[0] <= b[1] and b[0] <= a[1]


def _options(c: Comparison, rows: Sequence[DecisionRow], names: dict[str, str]) -> list[_Option]:
    seen: dict[str, _Option] = {}
    for row in rows:
        for side in SIDES:
            f = row.side(side)
            if f.key not in seen:
                ci = row.device_cost_per_day_ci_usd if side == "device" else None
                seen[f.key] = _Option(
                    names.get(f.key, f.key), f.key, side, f.cost_per_day_usd, f.meets_max_ttft,
                    (ci[0], ci[1]) if ci else None,
                )  # fmt: skip
    return list(seen.values())


def _cheapest(options: Sequence[_Option], side: Side | None = None) -> _Option | None:
    ok = [o for o in options if o.meets is not False and (side is None or o.side == side)]
    return min(ok, key=lambda o: (o.cost_per_day_usd, o.side != "device"), default=None)


def target_names(c: Comparison, runs: Sequence[TargetRun]) -> dict[str, str]:
    """Short names for the paragraph: "llama.cpp" rather than "llamacpp:x.gguf [01JD…]"."""
    by_run = {r.run_id: r.target for r in runs}
    names = {d.name: by_run.get(d.run_id, d.name) for d in c.devices}
    for t in c.clouds:
        short = t.name.split(" [")[0]
        names[t.name] = short
    return names


def verdict_paragraph(
    c: Comparison,
    rows: Sequence[DecisionRow],
    *,
    runs: Sequence[TargetRun],
    device_name: str,
    energy: Sequence[str],
    max_ttft_s: float | None,
    suite: str,
    degenerate: Mapping[str, str] | None = None,
) -> tuple[str, str]:
    """(the winner's name, the paragraph). `degenerate`: {target name: how many answers} for
    targets whose answers look degenerate; the paragraph opens with them."""
    names = target_names(c, runs)
    options = _options(c, rows, names)
    w = c.workload
    head = (
        f"At {format_count(w.requests_per_day)} requests/day ({w.input_tokens:,.0f} input and "
        f"{w.output_tokens:,.0f} output tokens a request, as measured on the {suite} prompts)"
    )
    excluded = [o.name for o in options if o.meets is False]
    best = _cheapest(options)
    if best is None:
        return "none", (
            f"{head}, no target meets the {max_ttft_s:g} s time-to-first-token requirement "
            f"(p95): {', '.join(excluded)}. {_provenance(c, runs, energy)}"
        )
    device, cloud = _cheapest(options, "device"), _cheapest(options, "cloud")
    parts = [
        _degenerate_sentence(degenerate or {}, best),
        _winner_sentence(c, head, options, best, device, cloud, device_name),
    ]
    if device is not None and cloud is not None:
        parts.append(_break_even_sentence(c, device, cloud))
    parts.append(_concurrency_sentence(c, device))
    parts.append(_latency_sentence(c, device, cloud))
    if excluded:
        parts.append(
            f"Excluded for a first token slower than {max_ttft_s:g} s (p95): {', '.join(excluded)}."
        )
    parts.append(_quality_sentence(c, runs, device))
    parts.append(_provenance(c, runs, energy))
    return best.name, " ".join(p for p in parts if p)


def _degenerate_sentence(degenerate: Mapping[str, str], best: _Option) -> str:
    """Targets whose figures were measured over noise, first: a wrong prompt format decodes
    at full speed, so the costs below look sound while the answers are not."""
    if not degenerate:
        return ""
    names = "; ".join(f"{name} ({why})" for name, why in degenerate.items())
    lead = f"{best.name}, the cheapest below, " if best.name in degenerate else ""
    return (
        f"WARNING: answers look degenerate for {names}: {lead or 'those targets '}"
        "answered with noise (loops to max tokens, or chat markup), so their figures price "
        "noise, not answers; fix the prompt format (--chat-template, or --raw for a base "
        "model) before trusting this verdict."
    )


def _concurrency_sentence(c: Comparison, device: _Option | None) -> str:
    """The concurrency the device's capacity assumes, when it is not one request at a time."""
    target = next((d for d in c.devices if device and d.name == device.key), None)
    if target is None or target.performance.concurrency == 1:
        return ""
    assert device is not None
    return (
        f"{device.name}'s capacity assumes {target.performance.concurrency} requests decoded "
        "together, as its throughput curve measured them."
    )


def _quality_sentence(c: Comparison, runs: Sequence[TargetRun], device: _Option | None) -> str:
    """What the quality floor left out, and what is known of the device's quality."""
    names = {f"[{r.run_id[:8]}]": r.target for r in runs}

    def short(name: str) -> str:
        return next((v for k, v in names.items() if name.endswith(k)), name)

    parts = []
    if c.floor.active:
        left = "; ".join(f"{short(n)} ({why})" for n, why in c.below_floor)
        parts.append(
            f"Quality floor {c.floor.describe()}"
            + (f": left out {left}." if left else ": every device target meets it.")
            + " Cloud models are taken to meet it (not measured here)."
        )
    if device is not None:
        target = next((d for d in c.devices if d.name == device.key), None)
        quality = target.quality if target else None
        if quality is None:
            parts.append(f"{device.name}: quality not measured (`edgeprof quality`).")
        elif not c.floor.active:
            parts.append(f"{device.name} against its reference: {quality.summary()}.")
    return " ".join(parts)


def _pair(c: Comparison, device: _Option, cloud: _Option) -> BreakEven:
    return c.pair(device.key, cloud.key).result


def _winner_sentence(
    c: Comparison,
    head: str,
    options: Sequence[_Option],
    best: _Option,
    device: _Option | None,
    cloud: _Option | None,
    device_name: str,
) -> str:
    mode = c.costs.deployment
    where = f"on {device_name}, " + ("owned already" if mode == "owned" else mode)
    if mode == "user-device" and device is not None and cloud is not None:
        r = _pair(c, device, cloud)
        battery = r.user_battery_pct_per_100_requests
        drain = "" if battery is None else f", {battery:.2g}% of a battery charge per 100 requests"
        rss = _latency_of(c, device.key, "device")
        ram = (
            ""
            if rss is None or rss.peak_rss_bytes is None
            else (f"; the feature takes {rss.peak_rss_bytes / 2**20:,.0f} MiB of RAM")
        )
        return (
            f"{head}, running {device.name} on the users' devices ({device_name}) avoids "
            f"{cloud.name}'s bill of {format_usd(r.cloud_cost_per_day_usd)}/day "
            f"({format_usd(r.cloud_cost_per_day_usd * 365)}/year): the operator pays nothing. "
            f"Each user pays {r.device_energy_net_j_per_request:,.3g} J a request "
            f"({format_usd(r.user_energy_cost_per_request_usd)} of electricity{drain}){ram}."
        )
    other = cloud if best.side == "device" else device
    label = f"{best.name} {where}" if best.side == "device" else best.name
    if other is None:
        return (
            f"{head}, {label} is the only option that meets the latency requirement, at "
            f"{format_usd(best.cost_per_day_usd)}/day."
        )
    other_label = f"{other.name} {where}" if other.side == "device" else other.name
    diff = other.cost_per_day_usd - best.cost_per_day_usd
    close = _noise(best, other, diff)
    return (
        f"{head}, the cheapest option is {label}: {format_usd(best.cost_per_day_usd)}/day "
        f"against {format_usd(other.cost_per_day_usd)}/day for {other_label}, the cheapest "
        f"on the other side (saving {format_usd(diff)}/day, {format_usd(diff * 365)}/year)."
        f"{close}{_same_side_ties(options, best)}{_same_side_ties(options, other)}"
    )


def _noise(best: _Option, other: _Option, diff: float) -> str:
    """Whether the winner's lead is inside the noise: the two costs' 95 % intervals overlap,
    or (where no interval exists) they are within CLOSE_CALL of each other."""
    if best.overlaps(other):
        return (
            f" The 95% intervals of the two overlap ({_ci_text(best)}; {_ci_text(other)}): the "
            "difference is inside the noise of the measurements, so this is no winner; repeat "
            "the profiles (`edgeprof run --target-ci 3%`) or weigh latency and what was estimated."
        )
    if diff <= CLOSE_CALL * other.cost_per_day_usd:
        return (
            f" That is within {CLOSE_CALL:.0%}: too close to call on these figures, so weigh "
            "latency and what was estimated."
        )
    return ""


def _ci_text(o: _Option) -> str:
    if o.cost_ci is None:
        return f"{o.name} {format_usd(o.cost_per_day_usd)}/day, a price-list figure"
    low, high = o.cost_ci
    return f"{o.name} {format_usd(low)}-{format_usd(high)}/day"


def _same_side_ties(options: Sequence[_Option], best: _Option) -> str:
    """Other targets on the winner's side that cost about as much: a win by noise is none."""
    ties = [
        o
        for o in options
        if o.side == best.side
        and o is not best
        and o.meets is not False
        and (
            o.overlaps(best)
            or o.cost_per_day_usd - best.cost_per_day_usd <= CLOSE_CALL * o.cost_per_day_usd
        )
    ]
    if not ties:
        return ""
    names = ", ".join(f"{o.name} ({format_usd(o.cost_per_day_usd)}/day)" for o in ties)
    how = (
        "their 95% intervals overlap"
        if all(o.overlaps(best) for o in ties)
        else f"within {CLOSE_CALL:.0%}"
    )
    return f" {names} costs about the same as {best.name} ({how}): not a win by itself."


def _break_even_sentence(c: Comparison, device: _Option, cloud: _Option) -> str:
    r = _pair(c, device, cloud)
    if r.deployment == "user-device":
        return ""
    cap = format_count(r.device_capacity_requests_per_day)
    fleet = (
        f"; this volume needs {r.devices_needed} devices, all priced in"
        if r.devices_needed > 1
        else ""
    )
    be = r.break_even_requests_per_day
    if r.break_even_status == "energy_exceeds_cloud":
        head = (
            f"Against {cloud.name} there is no break-even: a request's electricity alone "
            f"({format_usd(r.device_energy_cost_per_request_usd)}) costs more than the cloud "
            f"charges ({format_usd(r.cloud_cost_per_request_usd)})"
        )
    elif r.break_even_status == "exceeds_capacity":
        head = (
            f"Against {cloud.name} there is no break-even: it would take "
            f"{format_count(be or 0)} requests/day, more than one device can serve"
        )
    elif r.deployment == "owned" and be == 0:
        head = f"The device is already owned, so it beats {cloud.name} from the first request"
    else:
        head = (
            f"{device.name} breaks even with {cloud.name} above "
            f"{format_count(be or 0)} requests/day{_payback_words(r)}"
        )
    return f"{head}. One device serves up to {cap} requests/day{fleet}."


def _payback_words(r: BreakEven) -> str:
    pb = r.payback_months
    if pb is None:
        return ""
    if pb > r.lifetime_months:
        return (
            f"; at this volume it would take {pb:,.1f} months to pay back, beyond the "
            f"device's {r.lifetime_months:,.0f}-month life"
        )
    return f", and at this volume pays back in {pb:,.1f} months"


def _latency_of(c: Comparison, key: str, side: str) -> Latency | None:
    targets = c.devices if side == "device" else c.clouds
    return next((t.latency for t in targets if t.name == key), None)


def _latency_sentence(c: Comparison, device: _Option | None, cloud: _Option | None) -> str:
    out = c.workload.output_tokens
    parts = []
    dev = None if device is None else _latency_of(c, device.key, "device")
    if device is not None and dev is not None and dev.ttft_p50_s is not None:
        answer = (
            ""
            if dev.e2e_p50_s is None
            else (f" and a whole {out:,.0f}-token answer in {dev.e2e_p50_s:.2g} s")
        )
        parts.append(
            f"{device.name} answers its first token in {dev.ttft_p50_s:.2g} s{answer} (medians)"
        )
    if cloud is not None:
        cl = _latency_of(c, cloud.key, "cloud")
        if cl is not None and cl.ttft_p50_s is not None and cl.e2e_p50_s is not None:
            parts.append(
                f"{cloud.name} in {cl.ttft_p50_s:.2g} s and {cl.e2e_p50_s:.2g} s, measured live"
            )
        else:
            parts.append(
                "cloud latency was not measured (give --base-url and --api-key-env to profile "
                "an endpoint live)"
            )
    return "Latency: " + "; ".join(parts) + "." if parts else ""


def _provenance(c: Comparison, runs: Sequence[TargetRun], energy: Sequence[str]) -> str:
    reused = sum(1 for r in runs if r.reused)
    runs_words = f"{len(runs)} run{'s' if len(runs) != 1 else ''}" + (
        f", {reused} reused from the database" if reused else ""
    )
    if not energy:
        energy_words = "not recorded"
    elif any(e.startswith("estimated") for e in energy):
        energy_words = (
            "estimated from CPU load, as no power sensor reads here ("
            + "; ".join(e.removeprefix("estimated, ") for e in energy)
            + ")"
        )
    else:
        energy_words = "; ".join(energy)
    assumed = [
        f"{_ASSUMED[f.name]} {_value(f.value, f.unit)} ({_short_source(f.source)})"
        for f in c.assumptions
        if f.name in _ASSUMED and f.value is not None
    ]
    prices = sorted({f.source for t in c.clouds for f in t.inputs if f.name.startswith("price")})
    return (
        f"Measured: speed, latency and token counts ({runs_words}). Energy: {energy_words}. "
        f"Assumed: {', '.join(assumed)}; cloud list prices ({', '.join(prices) or 'none'})."
    )


_ASSUMED = {
    "device_price_usd": "device price",
    "lifetime_years": "lifetime",
    "electricity_usd_per_kwh": "electricity",
    "utilization": "utilization",
    "battery_wh": "battery",
}


def _short_source(source: str) -> str:
    """ "preset rpi5-8gb: https://..." -> "preset rpi5-8gb"; "default: why" -> "default"."""
    for prefix in ("preset ", "default", "this machine"):
        if source.startswith(prefix):
            return source.split(":")[0].split(" (")[0]
    return source


def _value(v: Any, unit: str) -> str:
    if unit == "USD":
        return format_usd(float(v))
    if unit == "USD/kWh":
        return f"{format_usd(float(v))}/kWh"
    if unit == "fraction of the day":
        return f"{float(v):.0%}"
    return f"{v:g} {unit}" if isinstance(v, (int, float)) else str(v)
