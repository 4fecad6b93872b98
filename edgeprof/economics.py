"""Break-even economics: is a workload cheaper on the device or in the cloud? Pure functions.

The model (every figure per day, one device, one request stream at a time):

    cloud cost/request     = in × price_in/1e6 + out × price_out/1e6   (a measured cost/request
                             may stand in for the prices)
    busy s/request         = in / prefill_tps + out / decode_tps
    energy J/request       = in × J/input token + out × J/output token
    energy $/request       = J / 3.6e6 × $/kWh
    capital $/day          = device price / (lifetime_years × 365), or 0 for a device already
                             owned (its price is sunk: only electricity counts)
    capacity requests/day  = utilization × 86,400 / busy s/request
    device $/day at R      = capital $/day + min(R, capacity) × energy $/request
    cloud $/day at R       = R × cloud $/request
    break-even R*          = capital $/day / (cloud $/request − energy $/request)

Capital is a fixed daily cost: the device depreciates whether it serves 1 request or 10,000.
Spread over the requests actually served, capital per request is capital $/day / R; its floor,
reached at full capacity, is price / (lifetime seconds × utilization) × busy seconds — the
"capital share" of one request (`capital_usd_per_request_at_capacity`).

No break-even exists when the device's electricity alone costs at least as much as the cloud
per request (the curves never cross), or when R* lies beyond the device's capacity (one device
cannot serve the volume at which it would pay off). Payback months = device price / monthly
saving, with the saving counted on the requests the device can serve (min(R, capacity)) and a
month of 365/12 days, so at exactly R* the payback equals the lifetime.

Not modelled (stated, not hidden): the device's idle draw between requests, batching several
requests at once (capacity from single-stream speed is conservative), cloud volume discounts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

from edgeprof.errors import PricingError, UsageError
from edgeprof.formatting import format_count, format_usd

SECONDS_PER_DAY = 86_400.0
DAYS_PER_YEAR = 365.0
DAYS_PER_MONTH = DAYS_PER_YEAR / 12.0
J_PER_KWH = 3.6e6
TOKENS_PER_M = 1e6

BreakEvenStatus = Literal["ok", "energy_exceeds_cloud", "exceeds_capacity"]


@dataclass(frozen=True)
class Workload:
    requests_per_day: float
    input_tokens: float
    output_tokens: float
    cached_input_tokens: float = 0.0  # part of input_tokens billed at the cached price


@dataclass(frozen=True)
class DevicePerformance:
    """What a profile measured for one on-device target."""

    prefill_tps: float
    decode_tps: float
    j_per_output_token: float
    j_per_input_token: float = 0.0


@dataclass(frozen=True)
class DeviceCosts:
    """The owner's assumptions about the device."""

    device_price_usd: float
    lifetime_years: float
    electricity_usd_per_kwh: float
    utilization: float = 1.0  # share of the day the device can spend serving requests
    owned: bool = False


@dataclass(frozen=True)
class CloudPrice:
    """$ per million tokens; or a flat cost per request when that is what was measured."""

    input_usd_per_m: float = 0.0
    output_usd_per_m: float = 0.0
    cached_input_usd_per_m: float | None = None
    cost_per_request_usd: float | None = None  # overrides the token prices when set

    def scaled(self, factor: float) -> CloudPrice:
        cached, flat = self.cached_input_usd_per_m, self.cost_per_request_usd
        return CloudPrice(
            input_usd_per_m=self.input_usd_per_m * factor,
            output_usd_per_m=self.output_usd_per_m * factor,
            cached_input_usd_per_m=None if cached is None else cached * factor,
            cost_per_request_usd=None if flat is None else flat * factor,
        )


@dataclass(frozen=True)
class BreakEven:
    """Every figure of one device-against-cloud comparison at one workload."""

    requests_per_day: float
    cloud_cost_per_request_usd: float
    cloud_cost_per_m_output_tokens_usd: float
    cloud_cost_per_day_usd: float
    device_busy_s_per_request: float
    device_energy_j_per_request: float
    device_energy_cost_per_request_usd: float
    device_capital_usd_per_day: float
    capital_usd_per_request_at_capacity: float
    device_capacity_requests_per_day: float
    device_served_requests_per_day: float
    device_unserved_requests_per_day: float
    device_cost_per_request_usd: float  # energy + capital spread over the served requests
    device_cost_per_m_output_tokens_usd: float
    device_cost_per_day_usd: float
    saving_usd_per_day: float  # cloud − device on the served requests; negative: cloud cheaper
    break_even_requests_per_day: float | None
    break_even_status: BreakEvenStatus
    payback_months: float | None
    lifetime_months: float
    owned: bool
    verdict: str


@dataclass(frozen=True)
class SensitivityRow:
    parameter: Literal["electricity_usd_per_kwh", "lifetime_years", "cloud_price"]
    factor: float
    value: float  # the parameter's value after scaling (cloud: $/request)
    break_even_requests_per_day: float | None
    break_even_status: BreakEvenStatus
    payback_months: float | None


# -- validation ----------------------------------------------------------------------------


def _check(
    name: str, value: float, *, flag: str, positive: bool = False, error: type = UsageError
) -> None:
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        need = "> 0" if positive else ">= 0"
        raise error(f"{name} must be a finite number {need} (got {value}); fix {flag}")


def validate(
    workload: Workload, device: DevicePerformance, costs: DeviceCosts, cloud: CloudPrice
) -> None:
    _check("requests per day", workload.requests_per_day, flag="`requests_per_day`", positive=True)
    _check("input tokens", workload.input_tokens, flag="`input_tokens`")
    _check("output tokens", workload.output_tokens, flag="`output_tokens`", positive=True)
    _check("cached input tokens", workload.cached_input_tokens, flag="the cached token count")
    if workload.cached_input_tokens > workload.input_tokens:
        raise UsageError("cached input tokens exceed input tokens; lower the cached count")
    _check("prefill tok/s", device.prefill_tps, flag="the run (re-profile it)", positive=True)
    _check("decode tok/s", device.decode_tps, flag="the run (re-profile it)", positive=True)
    _check("J per output token", device.j_per_output_token, flag="the run's energy figures")
    _check("J per input token", device.j_per_input_token, flag="the run's energy figures")
    _check("device price", costs.device_price_usd, flag="`device_price_usd`")
    _check("lifetime", costs.lifetime_years, flag="`lifetime_years` (e.g. 3)", positive=True)
    _check("electricity price", costs.electricity_usd_per_kwh, flag="`electricity_usd_per_kwh`")
    _check("utilization", costs.utilization, flag="`utilization` (0 < f <= 1)", positive=True)
    if costs.utilization > 1:
        raise UsageError(
            f"utilization must be at most 1 (got {costs.utilization}); "
            "fix `utilization` (0 < f <= 1)"
        )
    _check(
        "cloud input price", cloud.input_usd_per_m, flag="`price_in_usd_per_m`", error=PricingError
    )
    _check(
        "cloud output price",
        cloud.output_usd_per_m,
        flag="`price_out_usd_per_m`",
        error=PricingError,
    )
    if cloud.cached_input_usd_per_m is not None:
        _check(
            "cloud cached input price",
            cloud.cached_input_usd_per_m,
            flag="the cached input price",
            error=PricingError,
        )
    if cloud.cost_per_request_usd is not None:
        _check(
            "cloud cost per request",
            cloud.cost_per_request_usd,
            flag="the cloud run's recorded cost",
            error=PricingError,
        )


# -- the pieces ----------------------------------------------------------------------------


def cloud_cost_per_request_usd(workload: Workload, cloud: CloudPrice) -> float:
    if cloud.cost_per_request_usd is not None:
        return cloud.cost_per_request_usd
    cached = workload.cached_input_tokens if cloud.cached_input_usd_per_m is not None else 0.0
    cached_price = cloud.cached_input_usd_per_m or 0.0
    return (
        (workload.input_tokens - cached) * cloud.input_usd_per_m
        + cached * cached_price
        + workload.output_tokens * cloud.output_usd_per_m
    ) / TOKENS_PER_M


def busy_s_per_request(workload: Workload, device: DevicePerformance) -> float:
    return workload.input_tokens / device.prefill_tps + workload.output_tokens / device.decode_tps


def energy_j_per_request(workload: Workload, device: DevicePerformance) -> float:
    return (
        workload.input_tokens * device.j_per_input_token
        + workload.output_tokens * device.j_per_output_token
    )


def energy_cost_usd(energy_j: float, electricity_usd_per_kwh: float) -> float:
    return energy_j / J_PER_KWH * electricity_usd_per_kwh


def capital_usd_per_day(costs: DeviceCosts) -> float:
    if costs.owned:
        return 0.0
    return costs.device_price_usd / (costs.lifetime_years * DAYS_PER_YEAR)


def capacity_requests_per_day(busy_s: float, utilization: float) -> float:
    return utilization * SECONDS_PER_DAY / busy_s


def cloud_cost_per_day_usd(requests_per_day: float, cloud_usd_per_request: float) -> float:
    return requests_per_day * cloud_usd_per_request


def device_cost_per_day_usd(
    requests_per_day: float,
    capital_per_day_usd: float,
    energy_usd_per_request: float,
    capacity: float = math.inf,
) -> float:
    """The device's daily cost; it serves at most `capacity` requests, so costs stop there."""
    return capital_per_day_usd + min(requests_per_day, capacity) * energy_usd_per_request


def break_even_requests_per_day(
    capital_per_day_usd: float, cloud_usd_per_request: float, energy_usd_per_request: float
) -> float | None:
    """Where the two daily-cost lines cross; None when the device saves nothing per request."""
    margin = cloud_usd_per_request - energy_usd_per_request
    if margin <= 0:
        return None
    volume = capital_per_day_usd / margin
    # A saving of 1e-313 USD a request: the crossing is past any volume a float can hold.
    return volume if math.isfinite(volume) else None


def payback_months(device_price_usd: float, saving_usd_per_day: float) -> float | None:
    if saving_usd_per_day <= 0:
        return None
    return device_price_usd / (saving_usd_per_day * DAYS_PER_MONTH)


# -- the comparison ------------------------------------------------------------------------


def break_even(
    workload: Workload,
    device: DevicePerformance,
    costs: DeviceCosts,
    cloud: CloudPrice,
    *,
    cloud_name: str = "the cloud",
) -> BreakEven:
    """Compare one on-device target with one cloud target at one workload."""
    validate(workload, device, costs, cloud)
    r = workload.requests_per_day
    cloud_req = cloud_cost_per_request_usd(workload, cloud)
    busy = busy_s_per_request(workload, device)
    energy_j = energy_j_per_request(workload, device)
    energy_req = energy_cost_usd(energy_j, costs.electricity_usd_per_kwh)
    capital_day = capital_usd_per_day(costs)
    capacity = capacity_requests_per_day(busy, costs.utilization)
    served = min(r, capacity)
    device_day = device_cost_per_day_usd(r, capital_day, energy_req, capacity)
    device_req = device_day / served
    saving_day = served * (cloud_req - energy_req) - capital_day
    # Payback counts the gross saving (cloud bill avoided − electricity) against the price.
    gross_saving_day = served * (cloud_req - energy_req)
    be = break_even_requests_per_day(capital_day, cloud_req, energy_req)
    status: BreakEvenStatus
    if be is None:
        status = "energy_exceeds_cloud"
    elif be > capacity:
        status = "exceeds_capacity"
    else:
        status = "ok"
    payback = None if costs.owned else payback_months(costs.device_price_usd, gross_saving_day)
    if costs.owned and gross_saving_day > 0:
        payback = 0.0
    lifetime_months = costs.lifetime_years * 12.0
    per_m = TOKENS_PER_M / workload.output_tokens
    result = BreakEven(
        requests_per_day=r,
        cloud_cost_per_request_usd=cloud_req,
        cloud_cost_per_m_output_tokens_usd=cloud_req * per_m,
        cloud_cost_per_day_usd=cloud_cost_per_day_usd(r, cloud_req),
        device_busy_s_per_request=busy,
        device_energy_j_per_request=energy_j,
        device_energy_cost_per_request_usd=energy_req,
        device_capital_usd_per_day=capital_day,
        capital_usd_per_request_at_capacity=capital_day / capacity,
        device_capacity_requests_per_day=capacity,
        device_served_requests_per_day=served,
        device_unserved_requests_per_day=r - served,
        device_cost_per_request_usd=device_req,
        device_cost_per_m_output_tokens_usd=device_req * per_m,
        device_cost_per_day_usd=device_day,
        saving_usd_per_day=saving_day,
        break_even_requests_per_day=be,
        break_even_status=status,
        payback_months=payback,
        lifetime_months=lifetime_months,
        owned=costs.owned,
        verdict="",
    )
    return replace(result, verdict=verdict(result, cloud_name))


def sensitivity(
    workload: Workload,
    device: DevicePerformance,
    costs: DeviceCosts,
    cloud: CloudPrice,
    factors: tuple[float, ...] = (0.5, 1.5),
) -> list[SensitivityRow]:
    """How break-even and payback move when electricity, lifetime or cloud price change."""
    rows: list[SensitivityRow] = []
    for factor in factors:
        cases: list[
            tuple[
                Literal["electricity_usd_per_kwh", "lifetime_years", "cloud_price"],
                DeviceCosts,
                CloudPrice,
            ]
        ] = [
            (
                "electricity_usd_per_kwh",
                replace(costs, electricity_usd_per_kwh=costs.electricity_usd_per_kwh * factor),
                cloud,
            ),
            ("lifetime_years", replace(costs, lifetime_years=costs.lifetime_years * factor), cloud),
            ("cloud_price", costs, cloud.scaled(factor)),
        ]
        for name, c, p in cases:
            res = break_even(workload, device, c, p)
            value = {
                "electricity_usd_per_kwh": c.electricity_usd_per_kwh,
                "lifetime_years": c.lifetime_years,
                "cloud_price": res.cloud_cost_per_request_usd,
            }[name]
            rows.append(
                SensitivityRow(
                    name,
                    factor,
                    value,
                    res.break_even_requests_per_day,
                    res.break_even_status,
                    res.payback_months,
                )
            )
    order = {"electricity_usd_per_kwh": 0, "lifetime_years": 1, "cloud_price": 2}
    rows.sort(key=lambda row: (order[row.parameter], row.factor))
    return rows


# -- words ---------------------------------------------------------------------------------


def verdict(result: BreakEven, cloud_name: str = "the cloud") -> str:
    """One line a reader acts on."""
    capacity = format_count(result.device_capacity_requests_per_day)
    if result.break_even_status == "energy_exceeds_cloud":
        return (
            f"no break-even: the device's electricity alone costs more per request "
            f"({format_usd(result.device_energy_cost_per_request_usd)}) than {cloud_name} "
            f"({format_usd(result.cloud_cost_per_request_usd)})"
        )
    assert result.break_even_requests_per_day is not None
    be = format_count(result.break_even_requests_per_day)
    if result.break_even_status == "exceeds_capacity":
        return (
            f"no break-even: break-even volume ({be} requests/day) exceeds the device's "
            f"capacity ({capacity} requests/day)"
        )
    if result.owned:
        head = (
            f"on-device is cheaper than {cloud_name} at any volume (the device is already "
            f"owned), up to its capacity of {capacity} requests/day"
        )
    else:
        head = f"on-device is cheaper than {cloud_name} above {be} requests/day"
        r = format_count(result.requests_per_day)
        pb = result.payback_months
        assert pb is not None
        if result.requests_per_day < result.break_even_requests_per_day:
            return (
                f"{head}; at {r} requests/day the cloud is cheaper (payback {pb:,.1f} "
                f"months, beyond the device's {result.lifetime_months:,.0f}-month life)"
            )
        head = f"{head}; pays back in {pb:,.1f} months"
    if result.device_unserved_requests_per_day > 0:
        return (
            f"{head}; {format_count(result.requests_per_day)} requests/day exceed its "
            f"capacity of {capacity}: the other "
            f"{format_count(result.device_unserved_requests_per_day)} need more devices "
            "or the cloud"
        )
    return head
