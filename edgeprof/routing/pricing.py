"""A policy's cost at a volume: the device priced exactly as the verdict prices it
(`decision/economics.break_even`: capital of the devices needed, idle draw per deployment,
each request's net energy), for the requests the device answers, plus the cloud's tokens for
the requests it answers. Pure.

    device requests/day   R × device share (a cascade's escalated requests included: the
                          device answered them first)
    device $/day          economics at those requests and their mean token counts: the
                          fleet sized from one device's capacity (busy seconds a request)
    cloud $/day           R × cloud share × the mean cloud $ of the requests sent there,
                          each priced at its own stored token counts (cached input at the
                          cached price where the price list has one)
    J/request             the device's energy per request of the workload: per device
                          request × device share (the cloud's energy is not known)
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeprof.decision import economics as ec
from edgeprof.decision.economics import CloudPrice, DeviceCosts, DevicePerformance, Workload
from edgeprof.routing.cases import CloudSide

NO_TOKENS = 1e-6  # the output tokens priced for a device share that produced none


@dataclass(frozen=True)
class RoutePricing:
    """What prices a policy: the device target's measured performance (as `compare` builds it
    from the device run), the owner's costs, and the cloud's price."""

    device: DevicePerformance
    costs: DeviceCosts
    cloud: CloudPrice

    def cloud_usd(self, side: CloudSide) -> float:
        """One cloud request of this prompt, at its stored token counts."""
        if self.cloud.cost_per_request_usd is not None:  # no token prices: what it recorded
            return (
                side.recorded_cost_usd
                if side.recorded_cost_usd is not None
                else self.cloud.cost_per_request_usd
            )
        tokens = Workload(1.0, side.input_tokens, side.output_tokens, side.cached_input_tokens)
        return ec.cloud_cost_per_request_usd(tokens, self.cloud)


@dataclass(frozen=True)
class Mix:
    """Where a policy sends the workload, per request: a policy's outcome without its grades."""

    device_share: float  # of requests the device answers (escalated ones included)
    device_input_tokens: float  # mean over those
    device_output_tokens: float
    cloud_share: float  # of requests the cloud answers (escalated or routed)
    cloud_usd_per_request: float  # mean over those

    def with_escalation(self, share: float) -> Mix:
        """A cascade that escalates `share` of the requests, the escalated ones costing what
        this mix's cloud requests cost on average (for a curve over the escalation rate)."""
        return Mix(1.0, self.device_input_tokens, self.device_output_tokens, share,
                   self.cloud_usd_per_request)  # fmt: skip


@dataclass(frozen=True)
class PolicyCost:
    requests_per_day: float
    usd_per_day: float  # device + cloud
    device_usd_per_day: float  # capital, idle draw and energy of the devices that serve it
    cloud_usd_per_day: float
    device_requests_per_day: float
    devices_needed: int  # 0 where the device answers nothing (user-device: the users')
    devices_bought: int
    device_capital_usd_per_day: float
    device_idle_usd_per_day: float
    device_energy_usd_per_day: float
    energy_j_per_request: float  # the device's, gross, per request of the workload
    energy_net_j_per_request: float  # what the requests add to the idle draw
    device_capacity_requests_per_day: float | None  # one device; None: the device is unused

    @property
    def usd_per_request(self) -> float:
        return self.usd_per_day / self.requests_per_day


def price(mix: Mix, pricing: RoutePricing, requests_per_day: float) -> PolicyCost:
    """The cost of `mix` at `requests_per_day`."""
    cloud_day = requests_per_day * mix.cloud_share * mix.cloud_usd_per_request
    device_r = requests_per_day * mix.device_share
    if device_r <= 0:
        return PolicyCost(requests_per_day, cloud_day, 0.0, cloud_day, 0.0, 0, 0, 0.0, 0.0,
                          0.0, 0.0, 0.0, None)  # fmt: skip
    # A device share of failed answers alone can hold no output token (a request that never
    # reached the model records 0): such answers cost no decode time, but the verdict's
    # economics prices a request by its tokens and needs some; a millionth of one leaves the
    # devices' capital and idle draw, and nothing per request.
    out_tokens = max(mix.device_output_tokens, NO_TOKENS)
    workload = Workload(device_r, mix.device_input_tokens, out_tokens)
    be = ec.break_even(workload, pricing.device, pricing.costs, CloudPrice())
    return PolicyCost(
        requests_per_day=requests_per_day,
        usd_per_day=be.device_cost_per_day_usd + cloud_day,
        device_usd_per_day=be.device_cost_per_day_usd,
        cloud_usd_per_day=cloud_day,
        device_requests_per_day=device_r,
        devices_needed=be.devices_needed,
        devices_bought=be.devices_bought,
        device_capital_usd_per_day=be.device_capital_usd_per_day,
        device_idle_usd_per_day=be.device_idle_cost_per_day_usd,
        device_energy_usd_per_day=device_r * be.device_energy_cost_per_request_usd,
        energy_j_per_request=be.device_energy_j_per_request * mix.device_share,
        energy_net_j_per_request=be.device_energy_net_j_per_request * mix.device_share,
        device_capacity_requests_per_day=be.device_capacity_requests_per_day,
    )


def break_even_escalation(
    mix: Mix, pricing: RoutePricing, requests_per_day: float, cloud_usd_per_request: float
) -> float | None:
    """The share of requests a cascade may escalate before it costs more a day than sending
    every request to the cloud: 1 − (the device answering all) / (the cloud answering all),
    the escalated requests costing `cloud_usd_per_request` (the cloud-only mix's mean). None
    where the device alone already costs at least the cloud alone: no cascade is cheaper."""
    cloud_day = requests_per_day * cloud_usd_per_request
    device_day = price(mix.with_escalation(0.0), pricing, requests_per_day).usd_per_day
    if cloud_day <= device_day:
        return None
    return 1.0 - device_day / cloud_day
