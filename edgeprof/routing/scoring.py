"""A candidate policy's figures on a set of prompts, as the objective needs them: pass rate,
escalation and cost. Pure.

`score` replays one policy request by request (`outcome.apply`). `score_family` scores every
candidate of a threshold family in one pass: the requests sorted by how unsure they are, each
threshold moving a growing prefix of them to the cloud, sums kept as it goes; a suite of
thousands of prompts takes as long as sorting it. The two agree (a test checks).
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from edgeprof.grading.rates import PassRate
from edgeprof.routing.cases import DeviceAnswer, PromptCase
from edgeprof.routing.families import CascadeFamily, Family, PromptFamily
from edgeprof.routing.outcome import apply
from edgeprof.routing.policies import ByInputLength, Cascade, Policy
from edgeprof.routing.pricing import Mix, PolicyCost, RoutePricing, price
from edgeprof.routing.signals import SURER


@dataclass(frozen=True)
class Scored:
    policy: Policy
    pass_rate: PassRate
    cloud_share: float  # the escalation rate
    mix: Mix
    cost: PolicyCost

    @property
    def rate(self) -> float:
        return self.pass_rate.rate


def score(
    policy: Policy, cases: Sequence[PromptCase], pricing: RoutePricing, requests_per_day: float
) -> Scored:
    """One policy, replayed request by request."""
    o = apply(policy, cases, pricing)
    mix = o.mix()
    return Scored(policy, o.pass_rate(), o.cloud_share, mix,
                  price(mix, pricing, requests_per_day))  # fmt: skip


def score_family(
    family: Family, cases: Sequence[PromptCase], pricing: RoutePricing, requests_per_day: float
) -> list[Scored]:
    """Every candidate of `family` on `cases`, in `family.candidates(cases)` order."""
    candidates = family.candidates(cases)
    if isinstance(family, CascadeFamily) and family.signal is not None:
        return _sweep(candidates, _cascade_rows(family, cases, pricing), True, len(cases),
                      pricing, requests_per_day)  # fmt: skip
    if isinstance(family, PromptFamily) and family.rule == "input-tokens":
        return _sweep(candidates, _length_rows(cases, pricing), False, len(cases), pricing,
                      requests_per_day)  # fmt: skip
    return [score(p, cases, pricing, requests_per_day) for p in candidates]


@dataclass(frozen=True)
class _Row:
    """A replayed request as a sweep sees it. `key`: how unsure (or how long) it is, the
    lowest moved to the cloud first; None: moved only by the candidate that moves all."""

    weight: float
    gain: float  # weight × (cloud pass − device pass): what moving it changes
    device_pass: float  # weight × device pass
    input_tokens: float  # weight × tokens
    output_tokens: float
    cloud_usd: float  # weight × $
    key: float | None
    base: bool  # moved by every candidate (a failed request, a failed format check)


def _row(case: PromptCase, a: DeviceAnswer, usd: float, key: float | None, base: bool) -> _Row:
    w = 1.0 / len(case.device)
    return _Row(w, w * (case.cloud.passed - a.passed), w * a.passed, w * a.input_tokens,
                w * a.output_tokens, w * usd, key, base)  # fmt: skip


def _cascade_rows(
    family: CascadeFamily, cases: Sequence[PromptCase], pricing: RoutePricing
) -> list[_Row]:
    assert family.signal is not None
    signal, sign = family.signal, 1.0 if SURER[family.signal] == "higher" else -1.0
    rows = []
    for c in cases:
        usd = pricing.cloud_usd(c.cloud)
        for a in c.device:
            v = a.signal(signal)
            base = a.failed or (family.on_check and a.check_failed)
            rows.append(_row(c, a, usd, None if v is None else sign * v, base))
    return rows


def _length_rows(cases: Sequence[PromptCase], pricing: RoutePricing) -> list[_Row]:
    rows = []
    for c in cases:
        usd = pricing.cloud_usd(c.cloud)
        rows += [_row(c, a, usd, -float(a.input_tokens), False) for a in c.device]
    return rows


def _limit(policy: Policy) -> float | None:
    """The key below which a candidate moves a request; None: it moves every request."""
    if isinstance(policy, Cascade):
        if policy.escalate_all:
            return None
        if policy.threshold is None or policy.signal is None:
            return -math.inf
        return policy.threshold if SURER[policy.signal] == "higher" else -policy.threshold
    assert isinstance(policy, ByInputLength)
    limit = policy.max_device_input_tokens
    return -math.inf if limit is None else -limit


_FIELDS = ("weight", "gain", "input_tokens", "output_tokens", "cloud_usd")


def _sums(rows: Sequence[_Row]) -> tuple[float, ...]:
    return tuple(sum(getattr(r, f) for r in rows) for f in _FIELDS)


def _sweep(
    candidates: Sequence[Policy], rows: Sequence[_Row], escalates: bool, n_prompts: int,
    pricing: RoutePricing, requests_per_day: float,
) -> list[Scored]:  # fmt: skip
    ranked = sorted((r for r in rows if not r.base and r.key is not None),
                    key=lambda r: r.key or 0.0)  # fmt: skip
    keys = [r.key or 0.0 for r in ranked]
    columns = [list(itertools.accumulate([getattr(r, f) for r in ranked], initial=0.0))
               for f in _FIELDS]  # fmt: skip
    prefix = list(zip(*columns, strict=True))
    base = _sums([r for r in rows if r.base])
    everything = _sums(rows)
    device_pass = sum(r.device_pass for r in rows)
    out = []
    for policy in candidates:
        limit = _limit(policy)
        if limit is None:
            moved = everything
        else:
            head = prefix[bisect.bisect_left(keys, limit)]
            moved = tuple(b + h for b, h in zip(base, head, strict=True))
        w, gain, tokens_in, tokens_out, usd = moved
        all_w, _, all_in, all_out, _ = everything
        if escalates:  # the device answers every request, the cloud the moved ones too
            device_w, dev_in, dev_out = all_w, all_in, all_out
        else:  # the moved ones go to the cloud instead
            device_w, dev_in, dev_out = all_w - w, all_in - tokens_in, all_out - tokens_out
        if device_w <= 1e-9 * all_w:  # all moved: no device serves it (not a float residue)
            device_w = 0.0
        device_share = device_w / n_prompts
        mix = Mix(
            device_share=device_share,
            device_input_tokens=dev_in / device_w if device_w else 0.0,
            device_output_tokens=dev_out / device_w if device_w else 0.0,
            cloud_share=w / n_prompts,
            cloud_usd_per_request=usd / w if w > 0 else 0.0,
        )
        out.append(Scored(policy, PassRate.of(device_pass + gain, n_prompts), mix.cloud_share,
                          mix, price(mix, pricing, requests_per_day)))  # fmt: skip
    return out
