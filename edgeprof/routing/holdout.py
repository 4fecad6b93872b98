"""No tuning on the test data: a family's threshold is chosen on some prompts and reported on
the others. Pure.

Folds: the prompts sorted by the sha256 of their id, dealt round-robin into k folds (a stable
assignment: the same prompts always make the same folds, and the folds differ in size by one
at most). For each fold, the candidate that best meets the objective on the other k − 1 folds
(the calibration part) is applied to that fold; the figures reported are those of the k
held-out folds put together, so every prompt is scored by a rule chosen without it. The rule
chosen on every prompt is what one would deploy; its own (in-sample) figures are given beside,
and are optimistic.

Objectives, on the calibration part:
    cheapest-per-pass   the least $/day per pass rate ($ per passing answer); the default
    max-pass            the highest pass rate, then the cheapest
    cheapest-at-floor   the cheapest whose pass rate meets `min_pass_rate` (the default when
                        one is given); where none does, the highest pass rate, and said so
Ties go to the higher pass rate, then to fewer escalations, then to the earlier candidate.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from edgeprof.errors import UsageError, one_of
from edgeprof.routing.cases import PromptCase
from edgeprof.routing.families import Family
from edgeprof.routing.outcome import Outcome, apply, pooled
from edgeprof.routing.policies import Policy
from edgeprof.routing.pricing import RoutePricing
from edgeprof.routing.scoring import Scored, score_family

Objective = Literal["cheapest-per-pass", "max-pass", "cheapest-at-floor"]
OBJECTIVES: tuple[Objective, ...] = ("cheapest-per-pass", "max-pass", "cheapest-at-floor")
DEFAULT_FOLDS = 5
# Below these a chosen threshold moves with a handful of prompts: the output says so.
MIN_PROMPTS_PER_FOLD = 20
MIN_DEVICE_FAILURES = 10
_EPS = 1e-12


def parse_objective(value: str) -> Objective:
    return one_of(value, OBJECTIVES, "objective")


@dataclass(frozen=True)
class Protocol:
    folds: int  # as used: at most the number of prompts
    objective: Objective
    min_pass_rate: float | None = None

    def describe(self) -> str:
        goal = {
            "cheapest-per-pass": "the least $ per passing answer",
            "max-pass": "the highest pass rate, then the cheapest",
            "cheapest-at-floor": f"the cheapest with a pass rate of at least "
            f"{(self.min_pass_rate or 0):.0%}",
        }[self.objective]
        return (
            f"held out: {self.folds}-fold cross-validation over prompts (folds dealt by the "
            f"sha256 of each prompt id); each fold's rule is chosen on the other "
            f"{self.folds - 1} by {goal} ({self.objective}) and scored on that fold; figures "
            "pooled over the held-out folds"
        )


def make_protocol(folds: int, objective: Objective | None, min_pass_rate: float | None) -> Protocol:
    if folds < 2:
        raise UsageError(f"`folds` must be 2 or more (got {folds})")
    if min_pass_rate is not None and not 0 <= min_pass_rate <= 1:
        raise UsageError(
            f"`min_pass_rate` is a share from 0 to 1 (0.8 for 80%), got {min_pass_rate}"
        )
    if objective is None:
        objective = "cheapest-at-floor" if min_pass_rate is not None else "cheapest-per-pass"
    if objective == "cheapest-at-floor" and min_pass_rate is None:
        raise UsageError("the cheapest-at-floor `objective` needs a `min_pass_rate`")
    return Protocol(folds, objective, min_pass_rate)


def assign_folds(prompt_ids: Sequence[str], k: int) -> dict[str, int]:
    """Prompt id -> fold (0..k-1): sorted by sha256 of the id, dealt round-robin."""
    order = sorted(set(prompt_ids), key=lambda p: (hashlib.sha256(p.encode()).hexdigest(), p))
    return {p: i % k for i, p in enumerate(order)}


def choose(scored: Sequence[Scored], protocol: Protocol) -> tuple[Scored, bool]:
    """The best candidate by the objective, and whether it met the floor (True without one)."""

    # Figures rounded to 12 digits: two candidates that tie must tie whatever the order their
    # sums were added in.
    def rate(s: Scored) -> float:
        return round(s.rate, 12)

    def usd(s: Scored) -> float:
        return float(f"{s.cost.usd_per_day:.12g}")

    def per_pass(s: Scored) -> float:
        return float(f"{s.cost.usd_per_day / s.rate:.12g}") if s.rate > 0 else math.inf

    def best_rate(s: Scored) -> tuple[float, float, float]:
        return (-rate(s), usd(s), round(s.cloud_share, 12))

    if protocol.objective == "max-pass":
        return min(scored, key=best_rate), True
    if protocol.objective == "cheapest-per-pass":
        return min(scored, key=lambda s: (per_pass(s), -rate(s), round(s.cloud_share, 12))), True
    floor = protocol.min_pass_rate or 0.0
    feasible = [s for s in scored if s.rate >= floor - _EPS]
    if feasible:
        return min(feasible, key=lambda s: (usd(s), -rate(s), round(s.cloud_share, 12))), True
    return min(scored, key=best_rate), False


@dataclass(frozen=True)
class FoldChoice:
    fold: int
    n_calibration: int  # prompts the rule was chosen on
    n_held_out: int  # prompts it was scored on
    policy: Policy
    met_floor: bool


@dataclass(frozen=True)
class HeldOut:
    outcome: Outcome  # the held-out folds put together: the figures to report
    folds: tuple[FoldChoice, ...]
    final: Scored  # chosen on every prompt: the rule to deploy, with in-sample figures
    final_met_floor: bool
    sweep: tuple[Scored, ...]  # every candidate on every prompt (in-sample): a frontier


def cross_validate(
    family: Family,
    cases: Sequence[PromptCase],
    pricing: RoutePricing,
    requests_per_day: float,
    protocol: Protocol,
    folds: Mapping[str, int],
) -> HeldOut:
    """Choose `family`'s rule on k − 1 folds, score it on the k-th, for every fold."""
    parts: list[Outcome] = []
    choices: list[FoldChoice] = []
    for k in range(protocol.folds):
        held = [c for c in cases if folds[c.prompt_id] == k]
        calibration = [c for c in cases if folds[c.prompt_id] != k]
        if not held:
            continue
        best, met = choose(score_family(family, calibration, pricing, requests_per_day), protocol)
        parts.append(apply(best.policy, held, pricing))
        choices.append(FoldChoice(k, len(calibration), len(held), best.policy, met))
    sweep = tuple(score_family(family, cases, pricing, requests_per_day))
    final, met = choose(sweep, protocol)
    return HeldOut(pooled(parts), tuple(choices), final, met, sweep)


def stability_warnings(cases: Sequence[PromptCase], protocol: Protocol) -> list[str]:
    """Too few prompts, or too few device failures, for a stable choice of threshold."""
    out = []
    n = len(cases)
    per_fold = n / protocol.folds
    if per_fold < MIN_PROMPTS_PER_FOLD:
        out.append(
            f"only {n} prompts ({per_fold:.0f} a fold): a rule chosen on so few moves with a "
            f"handful of answers; read the held-out figures as rough (at least "
            f"{MIN_PROMPTS_PER_FOLD * protocol.folds} prompts for {protocol.folds} folds)"
        )
    failures = sum(1 - c.device_passed for c in cases)
    if failures < MIN_DEVICE_FAILURES:
        out.append(
            f"the device fails only {failures:g} of the prompts: too few to place a threshold "
            f"reliably (at least {MIN_DEVICE_FAILURES})"
        )
    return out
