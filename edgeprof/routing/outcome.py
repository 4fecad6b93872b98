"""A policy replayed over prompts: each request's route, grade and latency, and the figures
over them (pass rate, shares, the mix to price, latency percentiles). Pure.

Latency of one request: the device's end-to-end time; the cloud's for a request sent there
instead; both added for an escalated one (it is answered twice, one after the other).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from edgeprof.analysis.metrics import percentile
from edgeprof.grading.rates import PassRate
from edgeprof.routing.cases import PromptCase
from edgeprof.routing.policies import Policy, Route, route
from edgeprof.routing.pricing import Mix, RoutePricing


@dataclass(frozen=True)
class RequestOutcome:
    prompt_id: str
    weight: float  # 1 / the prompt's replayed requests: each prompt weighs 1
    route: Route
    passed: float  # 0..1: the cloud side's share where the cloud's answer is used
    latency_s: float | None  # None: a side's time was not measured (a failed request)
    device_input_tokens: int  # 0 where the device did not answer
    device_output_tokens: int
    cloud_usd: float  # 0 where the cloud did not answer

    @property
    def on_device(self) -> bool:
        return self.route != "cloud"

    @property
    def on_cloud(self) -> bool:
        return self.route != "device"


@dataclass(frozen=True)
class Outcome:
    requests: tuple[RequestOutcome, ...]
    n_prompts: int

    def pass_rate(self) -> PassRate:
        return PassRate.of(sum(r.weight * r.passed for r in self.requests), self.n_prompts)

    def _share(self, which: Iterable[RequestOutcome]) -> float:
        return sum(r.weight for r in which) / self.n_prompts if self.n_prompts else 0.0

    @property
    def device_share(self) -> float:
        return self._share(r for r in self.requests if r.on_device)

    @property
    def cloud_share(self) -> float:
        """The escalation rate: the share of requests the cloud answers (after the device, or
        instead of it)."""
        return self._share(r for r in self.requests if r.on_cloud)

    def mix(self) -> Mix:
        device = [r for r in self.requests if r.on_device]
        cloud = [r for r in self.requests if r.on_cloud]
        return Mix(
            device_share=self.device_share,
            device_input_tokens=_mean(device, lambda r: r.device_input_tokens),
            device_output_tokens=_mean(device, lambda r: r.device_output_tokens),
            cloud_share=self.cloud_share,
            cloud_usd_per_request=_mean(cloud, lambda r: r.cloud_usd),
        )

    def latency_s(self, q: float) -> float | None:
        """The q-th percentile of the requests' latencies (those measured)."""
        return percentile([r.latency_s for r in self.requests if r.latency_s is not None], q)

    def unmeasured_latency(self) -> int:
        return sum(r.latency_s is None for r in self.requests)


def _mean(rows: Sequence[RequestOutcome], key: Callable[[RequestOutcome], float]) -> float:
    """The weighted mean of key(row), 0 for no rows."""
    total = sum(r.weight for r in rows)
    if total <= 0:
        return 0.0
    return sum(r.weight * key(r) for r in rows) / total


def apply(policy: Policy, cases: Sequence[PromptCase], pricing: RoutePricing) -> Outcome:
    """Replay `policy` over `cases`."""
    out = []
    for case in cases:
        weight = 1.0 / len(case.device)
        cloud_usd = pricing.cloud_usd(case.cloud)
        for answer in case.device:
            where = route(policy, case, answer)
            device_s, cloud_s = answer.e2e_s, case.cloud.e2e_s
            if where == "device":
                passed, latency = float(answer.passed), device_s
            elif where == "cloud":
                passed, latency = case.cloud.passed, cloud_s
            else:
                passed = case.cloud.passed
                latency = None if device_s is None or cloud_s is None else device_s + cloud_s
            on_device = where != "cloud"
            out.append(
                RequestOutcome(
                    case.prompt_id, weight, where, passed, latency,
                    answer.input_tokens if on_device else 0,
                    answer.output_tokens if on_device else 0,
                    cloud_usd if where != "device" else 0.0,
                )
            )  # fmt: skip
    return Outcome(tuple(out), len(cases))


def pooled(outcomes: Iterable[Outcome]) -> Outcome:
    """Outcomes over disjoint sets of prompts as one (the held-out folds, put together)."""
    parts = list(outcomes)
    return Outcome(tuple(r for o in parts for r in o.requests), sum(o.n_prompts for o in parts))
