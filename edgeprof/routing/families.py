"""The families of policies a replay tunes: one per signal, per signal with the format check,
the format check alone, and the prompt rules. A family lists its candidates from the prompts
it may look at (the calibration folds only, when held out). Pure."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from edgeprof.routing.cases import PromptCase
from edgeprof.routing.policies import ByInputLength, ByKind, Cascade, Policy, PolicyName
from edgeprof.routing.signals import Signal, thresholds

PromptRule = Literal["input-tokens", "kind"]


@dataclass(frozen=True)
class CascadeFamily:
    signal: Signal | None  # None: the format check alone
    on_check: bool
    policy: PolicyName = field(default="cascade", init=False)

    @property
    def label(self) -> str:
        parts = (["format check"] if self.on_check else []) + ([self.signal] if self.signal else [])
        return " or ".join(parts)

    @property
    def tuned(self) -> bool:
        return self.signal is not None

    def candidates(self, cases: Sequence[PromptCase]) -> list[Policy]:
        first: Policy = Cascade(self.signal, None, self.on_check)
        if self.signal is None:
            return [first]
        signal = self.signal
        values = [v for c in cases for a in c.device if (v := a.signal(signal)) is not None]
        middle = (Cascade(signal, t, self.on_check) for t in thresholds(values))
        return [first, *middle, Cascade(signal, None, self.on_check, escalate_all=True)]


@dataclass(frozen=True)
class PromptFamily:
    rule: PromptRule
    policy: PolicyName = field(default="route-by-prompt", init=False)

    @property
    def label(self) -> str:
        return "input tokens" if self.rule == "input-tokens" else "kind"

    @property
    def tuned(self) -> bool:
        return True

    def candidates(self, cases: Sequence[PromptCase]) -> list[Policy]:
        if self.rule == "input-tokens":
            limits = thresholds(c.input_tokens for c in cases)
            # the last candidate (above 0 tokens) sends every prompt to the cloud
            return [ByInputLength(None), *(ByInputLength(t) for t in reversed(limits)),
                    ByInputLength(0.0)]  # fmt: skip
        order = kinds_by_gain(cases)
        return [ByKind(tuple(sorted(order[:j]))) for j in range(len(order) + 1)]


Family = CascadeFamily | PromptFamily


def kinds_by_gain(cases: Sequence[PromptCase]) -> list[str]:
    """The kinds, those where the cloud passes most more often than the device first (ties by
    name): sending the first j to the cloud is the j-th candidate."""
    gains: dict[str, list[float]] = defaultdict(list)
    for c in cases:
        gains[c.kind or ""].append(c.cloud.passed - c.device_passed)
    mean = {k: sum(v) / len(v) for k, v in gains.items()}
    return sorted(mean, key=lambda k: (-mean[k], k))
