"""`edgeprof route`: every policy replayed over a device run and a cloud run, priced at a
volume, tuned policies reported held out (docs/hybrid.md). `evaluate` is pure: it works on a
`Replay` (load.py) and can be called again at another volume or with another protocol.

Gap recovered = (policy's pass rate − the device's) / (the cloud's − the device's): 0 for the
device alone, 1 for the cloud alone; undefined where the cloud passes no more than the device.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from edgeprof.decision.compare import Figure
from edgeprof.decision.economics import CloudPrice, DeviceCosts
from edgeprof.errors import UsageError
from edgeprof.grading.rates import PassRate
from edgeprof.routing.cases import PromptCase
from edgeprof.routing.families import CascadeFamily, Family, PromptFamily
from edgeprof.routing.holdout import (
    DEFAULT_FOLDS,
    HeldOut,
    Objective,
    Protocol,
    assign_folds,
    cross_validate,
    make_protocol,
    stability_warnings,
)
from edgeprof.routing.load import Replay, load_replay
from edgeprof.routing.outcome import Outcome, apply
from edgeprof.routing.policies import CloudOnly, DeviceOnly, Oracle, Policy, PolicyName, describe
from edgeprof.routing.pricing import Mix, PolicyCost, price
from edgeprof.routing.scoring import Scored
from edgeprof.routing.signals import FORMAT_CHECKS, Signal
from edgeprof.store.db import Store


@dataclass(frozen=True)
class RouteOptions:
    folds: int = DEFAULT_FOLDS
    objective: Objective | None = None  # None: cheapest-at-floor with a floor, else per pass
    min_pass_rate: float | None = None  # 0..1


@dataclass(frozen=True)
class PolicyResult:
    policy: PolicyName
    variant: str  # the tuned family: "logprob_mean", "format check", "kind"; "" otherwise
    rule: str  # the rule chosen on every prompt, in words: what one would deploy
    chosen: Policy
    held_out: bool  # True: the figures are the held-out folds'; False: nothing was chosen
    pass_rate: PassRate
    escalation_rate: float  # share of requests the cloud answers (after the device or instead)
    device_share: float  # share the device answers
    mix: Mix  # to price it at another volume: `pricing.price(mix, replay.pricing, R)`
    cost: PolicyCost
    latency_p50_s: float | None
    latency_p95_s: float | None
    gap_recovered: float | None
    # the cloud's energy for the requests it answers: no API reports it, so never a figure
    cloud_energy_j_per_request: float | None = None
    fold_rules: tuple[str, ...] = ()  # each fold's rule, chosen on the other folds
    in_sample_pass_rate: PassRate | None = None  # the chosen rule scored on every prompt
    in_sample_usd_per_day: float | None = None
    met_floor: bool | None = None  # None: no floor given

    @property
    def label(self) -> str:
        return f"{self.policy}: {self.variant}" if self.variant else self.policy


@dataclass(frozen=True)
class SweepPoint:
    """One candidate of a tuned family on every prompt (in-sample): a point of the
    pass-rate-against-cost frontier."""

    policy: PolicyName
    variant: str
    rule: str
    candidate: Policy
    pass_rate: float
    escalation_rate: float
    usd_per_day: float


@dataclass(frozen=True)
class RouteReport:
    device_run_id: str
    cloud_run_id: str
    suite: str
    device_name: str
    cloud_name: str
    requests_per_day: float
    costs: DeviceCosts
    inputs: tuple[Figure, ...]
    n_prompts: int
    protocol: Protocol
    protocol_text: str
    policies: tuple[PolicyResult, ...]
    device_pass_rate: PassRate
    cloud_pass_rate: PassRate
    signals: tuple[Signal, ...]  # stored for every device answer: a cascade tried each
    format_checks: tuple[str, ...]  # the format checks the prompts carry
    missing_on_device: tuple[str, ...]
    missing_on_cloud: tuple[str, ...]
    ungraded: tuple[str, ...]
    notes: tuple[str, ...]
    warnings: tuple[str, ...]
    sweep: tuple[SweepPoint, ...] = field(default=())

    def result(self, label: str) -> PolicyResult:
        """The policy named `label` as the table names it: "oracle", "cascade: logprob_mean"."""
        for p in self.policies:
            if p.label == label:
                return p
        raise KeyError(label)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for row, p in zip(out["policies"], self.policies, strict=True):
            row["label"] = p.label
        return out


def families(replay: Replay) -> list[Family]:
    """The tuned families this replay can try: a cascade per stored signal (alone, and with
    the format check where the suite has one), the format check alone, the prompt rules."""
    out: list[Family] = []
    check = bool(replay.format_checks)
    if check:
        out.append(CascadeFamily(None, True))
    for s in replay.signals:
        out.append(CascadeFamily(s, False))
        if check:
            out.append(CascadeFamily(s, True))
    out.append(PromptFamily("input-tokens"))
    if any(c.kind for c in replay.cases):
        out.append(PromptFamily("kind"))
    return out


NO_KINDS = "the suite names no kinds: route-by-prompt by kind is not tried"


def evaluate(
    replay: Replay, requests_per_day: float, options: RouteOptions | None = None
) -> RouteReport:
    """Every policy over the replay's prompts, priced at `requests_per_day`."""
    options = options or RouteOptions()
    if not requests_per_day > 0 or requests_per_day == float("inf"):
        raise UsageError(f"`requests_per_day` must be a number above 0 (got {requests_per_day})")
    cases = replay.cases
    k = min(options.folds, len(cases))
    notes = list(replay.notes)
    if len(cases) < 2:
        raise UsageError(
            "a replay needs at least 2 prompts answered and graded on both sides to hold any "
            f"out (got {len(cases)})"
        )
    if k < options.folds:
        notes.append(f"{options.folds} folds asked, {k} used: there are {len(cases)} prompts")
    protocol = make_protocol(k, options.objective, options.min_pass_rate)
    folds = assign_folds([c.prompt_id for c in cases], k)
    pricing = replay.pricing

    def replayed(policy: Policy) -> Outcome:
        return apply(policy, cases, pricing)

    device, cloud = replayed(DeviceOnly()), replayed(CloudOnly())
    d_rate, c_rate = device.pass_rate(), cloud.pass_rate()
    gap = c_rate.rate - d_rate.rate
    if gap <= 0:
        notes.append(
            f"the cloud passes no more often than the device on these prompts ({c_rate.rate:.0%}"
            f" against {d_rate.rate:.0%}): there is no gap to recover"
        )

    def result(
        policy: Policy, o: Outcome, variant: str = "", held: HeldOut | None = None
    ) -> PolicyResult:
        cost = price(o.mix(), pricing, requests_per_day)
        return _result(policy, o, cost, variant, held, d_rate.rate, gap, protocol)

    results = [result(DeviceOnly(), device), result(CloudOnly(), cloud)]
    sweep: list[SweepPoint] = []
    for fam in families(replay):
        held = cross_validate(fam, cases, pricing, requests_per_day, protocol, folds)
        if not fam.tuned:  # nothing to choose: every prompt is scored by the same rule
            policy = held.final.policy
            results.append(result(policy, replayed(policy), fam.label))
            continue
        results.append(result(held.final.policy, held.outcome, fam.label, held))
        sweep += [_point(fam, s) for s in held.sweep]
        notes += _floor_notes(fam, held, protocol)
    results.append(result(Oracle(), replayed(Oracle())))
    notes += _case_notes(cases)
    warnings = stability_warnings(cases, protocol)
    return RouteReport(
        replay.device_run_id, replay.cloud_run_id, replay.suite, replay.device_name,
        replay.cloud_name, requests_per_day, pricing.costs, replay.inputs, len(cases),
        protocol, protocol.describe(), tuple(results), d_rate, c_rate, replay.signals,
        replay.format_checks, replay.missing_on_device, replay.missing_on_cloud,
        replay.ungraded, tuple(notes + _matching_notes(replay)), tuple(warnings), tuple(sweep),
    )  # fmt: skip


def _result(
    policy: Policy, o: Outcome, cost: PolicyCost, variant: str, held: HeldOut | None,
    device_rate: float, gap: float, protocol: Protocol,
) -> PolicyResult:  # fmt: skip
    rate = o.pass_rate()
    floor = protocol.min_pass_rate
    return PolicyResult(
        policy=policy.name,
        variant=variant,
        rule=describe(policy),
        chosen=policy,
        held_out=held is not None,
        pass_rate=rate,
        escalation_rate=o.cloud_share,
        device_share=o.device_share,
        mix=o.mix(),
        cost=cost,
        latency_p50_s=o.latency_s(50),
        latency_p95_s=o.latency_s(95),
        gap_recovered=(rate.rate - device_rate) / gap if gap > 0 else None,
        fold_rules=tuple(describe(f.policy) for f in held.folds) if held else (),
        in_sample_pass_rate=held.final.pass_rate if held else None,
        in_sample_usd_per_day=held.final.cost.usd_per_day if held else None,
        met_floor=None if floor is None else rate.rate >= floor - 1e-12,
    )


def _case_notes(cases: Sequence[PromptCase]) -> list[str]:
    """What the prompts themselves leave out of the report."""
    notes = [] if any(c.kind for c in cases) else [NO_KINDS]
    unmeasured = sum(a.e2e_s is None for c in cases for a in c.device)
    if unmeasured:  # failed requests: often the slowest (timeouts), so the percentiles read low
        notes.append(
            f"{unmeasured} device request(s) failed and have no measured latency: the latency "
            "percentiles leave them out, and those of the policies that escalate them"
        )
    return notes


def _floor_notes(fam: Family, held: HeldOut, protocol: Protocol) -> list[str]:
    missed = [f.fold + 1 for f in held.folds if not f.met_floor]
    if not missed:
        return []
    folds = ", ".join(map(str, missed))
    return [
        f"{fam.policy}: {fam.label}: no rule met the {protocol.min_pass_rate:.0%} floor on the "
        f"calibration part of fold {folds}; the highest pass rate was taken there"
    ]


def _point(fam: Family, s: Scored) -> SweepPoint:
    return SweepPoint(fam.policy, fam.label, describe(s.policy), s.policy, s.rate,
                      s.cloud_share, s.cost.usd_per_day)  # fmt: skip


def _matching_notes(replay: Replay) -> list[str]:
    out = []
    for what, names in (
        ("answered by the cloud run only", replay.missing_on_device),
        ("answered by the device run only", replay.missing_on_cloud),
        ("not graded on one side", replay.ungraded),
    ):
        if names:
            out.append(f"{len(names)} prompts {what}, left out: {_some(names)}")
    return out


def _some(names: Sequence[str], n: int = 5) -> str:
    head = ", ".join(names[:n])
    return head + (f" and {len(names) - n} more" if len(names) > n else "")


def route(
    store: Store,
    device_run: str,
    cloud_run: str,
    costs: DeviceCosts,
    requests_per_day: float,
    options: RouteOptions | None = None,
    *,
    cloud_price: CloudPrice | None = None,
    format_checks: Iterable[str] = FORMAT_CHECKS,
    cost_figures: Sequence[Figure] = (),
) -> RouteReport:
    """Load two graded runs and evaluate every policy (`load_replay`, then `evaluate`).
    `cost_figures`: the owner's cost inputs with their sources, listed with the report's."""
    replay = load_replay(store, device_run, cloud_run, costs, cloud_price=cloud_price,
                         format_checks=format_checks)  # fmt: skip
    report = evaluate(replay, requests_per_day, options)
    if not cost_figures:
        return report
    return replace(report, inputs=(*cost_figures, *report.inputs))
