"""`decide --hybrid`: the best device-first, cloud-when-unsure cascade as a target beside the
device and cloud targets (docs/hybrid.md).

For every device target and cloud target that both have a graded run of the suite, the two
runs are replayed (`edgeprof.routing`): every policy held out over k folds, priced as the
verdict prices the device. The best cascade is the cheapest one whose held-out pass rate
meets the floor (`--min-pass-rate`), or without a floor the cheapest per passing answer.

The break-even becomes a curve over the escalation rate e: a cascade costs the device at the
whole volume plus e × R × the cloud's $ a request, the cloud alone R × that $, so the cascade
breaks even with the cloud where the device alone would against a cloud that cost (1 − e) as
much. The device side's break-even is one device's economics (`economics.break_even`), so
the curve holds at every volume.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from edgeprof.decision import economics as ec
from edgeprof.decision.economics import BreakEvenStatus, CloudPrice, DeviceCosts, Workload
from edgeprof.grading.rates import PassRate
from edgeprof.report.formatting import format_count, format_usd
from edgeprof.routing.load import Replay, load_replay
from edgeprof.routing.pricing import Mix, RoutePricing
from edgeprof.routing.replay import PolicyResult, RouteOptions, RouteReport, evaluate
from edgeprof.store.db import Store

# The escalation rates the break-even curve is computed at.
CURVE_ESCALATION = tuple(i / 20 for i in range(21))


@dataclass(frozen=True)
class BreakEvenPoint:
    escalation_rate: float  # share of requests the cascade sends to the cloud as well
    requests_per_day: float | None  # the cascade is cheaper than the cloud alone above it
    status: BreakEvenStatus


@dataclass(frozen=True)
class HybridTarget:
    """The best cascade of one device target and one cloud target, with what it beats."""

    device: str  # the device target as the verdict names it
    cloud: str
    device_run_id: str
    cloud_run_id: str
    best: PolicyResult | None  # None: no cascade could be tried (see `why`)
    device_only: PolicyResult
    cloud_only: PolicyResult
    meets_floor: bool | None  # the best cascade's held-out pass rate; None: no floor
    curve: tuple[BreakEvenPoint, ...]
    report: RouteReport
    why: str = ""

    @property
    def saving_vs_cloud_usd_per_day(self) -> float | None:
        if self.best is None:
            return None
        return self.cloud_only.cost.usd_per_day - self.best.cost.usd_per_day

    @property
    def name(self) -> str:
        return f"cascade {self.device} → {self.cloud}"


def choose_cascade(report: RouteReport, min_pass_rate: float | None) -> PolicyResult | None:
    """The cheapest cascade whose held-out pass rate meets the floor; with no cascade meeting
    it, the one that passes most; with no floor, the cheapest per passing answer."""
    cascades = [p for p in report.policies if p.policy == "cascade"]
    if not cascades:
        return None
    if min_pass_rate is None:
        return min(cascades, key=lambda p: (_usd_per_pass(p), -p.pass_rate.rate))
    meeting = [p for p in cascades if p.met_floor]
    if meeting:
        return min(meeting, key=lambda p: (p.cost.usd_per_day, -p.pass_rate.rate))
    return max(cascades, key=lambda p: (p.pass_rate.rate, -p.cost.usd_per_day))


def _usd_per_pass(p: PolicyResult) -> float:
    return p.cost.usd_per_day / p.pass_rate.rate if p.pass_rate.rate > 0 else float("inf")


def break_even_curve(
    mix: Mix, pricing: RoutePricing, cloud_usd_per_request: float,
    escalations: Sequence[float] = CURVE_ESCALATION,
) -> tuple[BreakEvenPoint, ...]:  # fmt: skip
    """Break-even requests/day of a cascade against the cloud alone, at each escalation rate:
    the device answering every request (at `mix`'s token counts) against a cloud costing
    (1 − e) × `cloud_usd_per_request`. Pure."""
    points = []
    for e in escalations:
        cloud = CloudPrice(cost_per_request_usd=(1.0 - e) * cloud_usd_per_request)
        if cloud.cost_per_request_usd == 0:  # everything escalated: nothing saved, ever
            points.append(BreakEvenPoint(e, None, "energy_exceeds_cloud"))
            continue
        workload = Workload(1.0, mix.device_input_tokens, mix.device_output_tokens)
        be = ec.break_even(workload, pricing.device, pricing.costs, cloud)
        points.append(BreakEvenPoint(e, be.break_even_requests_per_day, be.break_even_status))
    return tuple(points)


def hybrid_target(
    replay: Replay, device: str, cloud: str, requests_per_day: float, options: RouteOptions
) -> HybridTarget:
    """Replay one device run against one cloud run and keep the best cascade."""
    report = evaluate(replay, requests_per_day, options)
    device_only, cloud_only = report.result("device-only"), report.result("cloud-only")
    best = choose_cascade(report, options.min_pass_rate)
    why = "" if best is not None else "no cascade could be tried: " + "; ".join(report.notes)
    curve = break_even_curve(
        (best or device_only).mix, replay.pricing, cloud_only.mix.cloud_usd_per_request
    )
    return HybridTarget(
        device=device, cloud=cloud, device_run_id=replay.device_run_id,
        cloud_run_id=replay.cloud_run_id, best=best, device_only=device_only,
        cloud_only=cloud_only, meets_floor=None if best is None else best.met_floor,
        curve=curve, report=report, why=why,
    )  # fmt: skip


def hybrid_targets(
    store: Store,
    devices: Sequence[tuple[str, str]],  # (name, graded run id)
    clouds: Sequence[tuple[str, str]],
    costs: DeviceCosts,
    requests_per_day: float,
    options: RouteOptions,
) -> tuple[list[HybridTarget], list[str]]:
    """Every device × cloud pair that can be replayed; notes for the pairs that cannot."""
    from edgeprof.errors import EdgeprofError

    out: list[HybridTarget] = []
    notes: list[str] = []
    for d_name, d_run in devices:
        for c_name, c_run in clouds:
            try:
                replay = load_replay(store, d_run, c_run, costs)
                out.append(hybrid_target(replay, d_name, c_name, requests_per_day, options))
            except EdgeprofError as e:
                notes.append(f"hybrid {d_name} → {c_name} not evaluated: {e}")
    return out, notes


def task_hybrids(
    store: Store, task: Any, costs: DeviceCosts, requests_per_day: float,
    options: RouteOptions, names: Mapping[str, str],
) -> tuple[list[HybridTarget], list[str]]:  # fmt: skip
    """Every device target × cloud target of a task-quality report (`decision.task_quality`)
    with a graded run of the suite, replayed; `names`: the verdict's short names."""

    def named(side: str) -> list[tuple[str, str]]:
        return [(names.get(t.name, t.name), t.run_id) for t in task.targets
                if t.side == side and t.run_id]  # fmt: skip

    devices, clouds = named("device"), named("cloud")
    if not devices or not clouds:
        return [], [
            "hybrid: needs a graded run of the suite on both sides: the cloud's answers come "
            "from a live cloud target (--base-url) or an earlier `edgeprof run --remote` of the "
            "model on the same prompts"
        ]
    return hybrid_targets(store, devices, clouds, costs, requests_per_day, options)


def hybrid_dict(h: HybridTarget) -> dict[str, Any]:
    """One pair for `--json`: every field, the replay's whole report, the saving."""
    out = dataclasses.asdict(h)
    out["report"] = h.report.to_dict()
    out["name"] = h.name
    out["saving_vs_cloud_usd_per_day"] = h.saving_vs_cloud_usd_per_day
    return out


# -- words ---------------------------------------------------------------------------------


def _rate(r: PassRate) -> str:
    return f"{r.rate:.0%} [{r.low:.0%}–{r.high:.0%}]"


def hybrid_sentence(h: HybridTarget, min_pass_rate: float | None) -> str:
    """What the verdict says of one pair's best cascade: its rule, escalation, held-out pass
    rate, cost against the cloud alone, and how sure the pass rate is against the floor."""
    if h.best is None:
        return f"Hybrid {h.device} → {h.cloud}: {h.why}."
    b, cloud = h.best, h.cloud_only
    held = (
        h.report.protocol_text.rstrip(".")
        if b.held_out
        else "a fixed rule with nothing to tune, scored on every prompt"
    )
    # Each rule's threshold is held out, but picking the best rule compares their held-out
    # figures on the same prompts: the pick's own figure leans high, by how many there were.
    n_rules = sum(p.policy == "cascade" for p in h.report.policies)
    if n_rules > 1:
        held += f"; the pick of {n_rules} cascade rules on these prompts, so it leans high"
    head = (
        f"Hybrid: {h.device} first, {h.cloud} when unsure ({b.rule}) escalates "
        f"{b.escalation_rate:.0%} of requests and passes {_rate(b.pass_rate)} ({held}), at "
        f"{format_usd(b.cost.usd_per_day)}/day against {format_usd(cloud.cost.usd_per_day)}"
        f"/day for {h.cloud} alone (passing {_rate(cloud.pass_rate)})"
    )
    saving = h.saving_vs_cloud_usd_per_day or 0.0
    if saving > 0:
        head += f": {format_usd(saving)}/day ({saving / cloud.cost.usd_per_day:.0%}) cheaper"
    else:
        head += ": no cheaper than the cloud alone"
    if min_pass_rate is None:
        return head + "."
    floor = f"the {min_pass_rate:.0%} floor"
    if b.pass_rate.low >= min_pass_rate:
        sure = f"it meets {floor} even at its interval's low end"
    elif b.met_floor:
        sure = f"it meets {floor} on its measured rate, but its interval reaches below it"
    else:
        sure = f"it does not meet {floor}"
    return f"{head}; {sure}."


def curve_text(h: HybridTarget) -> str:
    """The break-even over escalation, in a line: where the cascade stops paying."""
    cells = []
    for p in h.curve[::4]:
        v = format_count(p.requests_per_day) if p.requests_per_day is not None else "never"
        if p.status == "exceeds_capacity":
            v += " (above one device's capacity)"
        cells.append(f"{p.escalation_rate:.0%}: {v}")
    return "break-even requests/day against the cloud alone, by escalation: " + ", ".join(cells)


def _beats(h: HybridTarget, min_pass_rate: float | None) -> bool:
    """The cascade meets the floor and costs less a day than each side alone that does (its
    own replay's device-only and cloud-only, priced the same way)."""
    b = h.best

    def meets(p: PolicyResult) -> bool:
        return min_pass_rate is None or p.pass_rate.rate >= min_pass_rate - 1e-12

    if b is None or not meets(b):
        return False
    rivals = [r for r in (h.cloud_only, h.device_only) if meets(r)]
    return all(b.cost.usd_per_day < r.cost.usd_per_day for r in rivals)


def cheapest_alone_usd_per_day(decision: Any) -> float | None:
    """The lowest $/day of any target the decision priced on its own: its rows hold only the
    targets that meet the task floor (`apply_task_floor` left the others out)."""
    costs = [
        c
        for r in getattr(decision, "rows", ())
        for c in (r.device_cost_per_day_usd, r.cloud_cost_per_day_usd)
        if c is not None
    ]
    return min(costs, default=None)


def cheapest_meeting(
    hybrids: Sequence[HybridTarget], decision: Any, min_pass_rate: float | None
) -> tuple[str, str]:
    """(the decision's winner, a sentence): the cheapest cascade that meets the floor, beats
    both of its sides alone and costs less than every target the decision priced alone (a
    cheaper device of another pair that meets the floor keeps the win) wins; otherwise the
    winner stays and the sentence is empty."""
    alone = cheapest_alone_usd_per_day(decision)
    winners = [
        h for h in hybrids
        if _beats(h, min_pass_rate) and h.best is not None
        and (alone is None or h.best.cost.usd_per_day < alone)
    ]  # fmt: skip
    if not winners:
        return decision.winner, ""
    h = min(winners, key=lambda x: x.best.cost.usd_per_day if x.best else float("inf"))
    assert h.best is not None
    floor = "" if min_pass_rate is None else f" that meets the {min_pass_rate:.0%} floor"
    return h.name, (
        f"The cheapest option{floor} is the {h.name} cascade ({h.best.rule}): "
        f"{format_usd(h.best.cost.usd_per_day)}/day at "
        f"{format_count(h.report.requests_per_day)} requests/day."
    )
