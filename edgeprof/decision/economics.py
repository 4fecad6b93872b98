"""Break-even economics: is a workload cheaper on the device or in the cloud? Pure functions.

The model (every figure per day; R requests/day; e = electricity $/kWh ÷ 3.6e6 J/kWh):

    cloud $/request        c = in × price_in/1e6 + out × price_out/1e6  (or a measured cost)
    busy s/request         b = in / prefill_tps + out / decode_tps
    energy J/request       E = in × J/input token + out × J/output token   (gross, while busy)
    net J/request          E_net = E − P_idle × b   (what a request adds to an idle device)
    capacity/device        cap = utilization × 86,400 / b
    devices needed         N = ⌈R / cap⌉   (one device serves at most cap requests a day)

Each deployment pays for something different:

    dedicated    a device bought to serve this feature, switched on all day:
                 device $/day = N × (capital/day + 86,400 × P_idle × e) + R × E_net × e
                 (idle draw all day, and on top of it each request's net energy)
    owned        the device exists and is on anyway (a workstation): no capital, only the
                 marginal energy R × E_net × e. Devices needed beyond the `owned_devices` the
                 user has are bought and run as dedicated ones.
    user-device  the feature runs on the end user's hardware: the operator pays nothing; the
                 user pays E_net a request (their electricity, or battery: 100 × E_net /
                 (battery Wh × 3,600) % a request).

Break-even (dedicated; owned beyond its own devices): with F = capital/day + 86,400 × P_idle
× e per device and margin m = c − E_net × e, the lines cross at R* = F / m. It holds for every
fleet size or none: in the range served by k devices the crossing is k × F / m, inside that
range exactly when F / m ≤ cap. So a break-even past one device's capacity means no volume
pays off with any number of devices (`exceeds_capacity`). No break-even either when m ≤ 0:
the electricity of a request costs at least what the cloud charges (`energy_exceeds_cloud`).

Payback months = devices bought × price / monthly operating saving (cloud bill avoided minus
electricity, idle included), a month being 365/12 days: at exactly R* it equals the lifetime.

Without a measured idle baseline P_idle is taken as 0 (E_net = E): idle draw is then not
charged, and the comparison says so. Batching is modelled where it was measured: a target
profiled at several `--concurrency` levels is priced at the level whose p95 TTFT meets the
latency requirement, with its aggregate speed and each request's share of the energy
(`compare.pick_from_curves`). Not modelled (stated, not hidden): cloud volume discounts, the
cost of the user's time waiting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

from edgeprof.errors import PricingError, UsageError, one_of
from edgeprof.report.formatting import format_count, format_usd

SECONDS_PER_DAY = 86_400.0
DAYS_PER_YEAR = 365.0
DAYS_PER_MONTH = DAYS_PER_YEAR / 12.0
J_PER_KWH = 3.6e6
J_PER_WH = 3600.0
TOKENS_PER_M = 1e6

BreakEvenStatus = Literal["ok", "energy_exceeds_cloud", "exceeds_capacity"]
Deployment = Literal["dedicated", "owned", "user-device"]
DEPLOYMENTS: tuple[Deployment, ...] = ("dedicated", "owned", "user-device")


def parse_deployment(value: str) -> Deployment:
    """The deployment mode `value` names, or a `UsageError` listing the modes."""
    return one_of(value, DEPLOYMENTS, "deployment")


@dataclass(frozen=True)
class Workload:
    requests_per_day: float
    input_tokens: float
    output_tokens: float
    cached_input_tokens: float = 0.0  # part of input_tokens billed at the cached price
    # part of input_tokens whose KV state the device keeps between requests (a shared system
    # prompt): neither prefilled nor charged again
    device_cached_input_tokens: float = 0.0


@dataclass(frozen=True)
class DevicePerformance:
    """What a profile measured for one on-device target."""

    prefill_tps: float
    decode_tps: float
    j_per_output_token: float
    j_per_input_token: float = 0.0
    idle_power_w: float | None = None  # the device's draw doing nothing; None: not measured
    # Requests decoded together when these figures were measured: the speeds are each
    # request's under that load, the J/token its share of the device's energy, and the device
    # serves this many at once (capacity N × a day / busy seconds)
    concurrency: int = 1


@dataclass(frozen=True)
class DeviceCosts:
    """The owner's assumptions about the device, and how it is deployed."""

    device_price_usd: float
    lifetime_years: float
    electricity_usd_per_kwh: float
    utilization: float = 1.0  # share of the day the device can spend serving requests
    deployment: Deployment = "dedicated"
    owned_devices: int = 1  # `owned`: devices the user already has
    battery_wh: float | None = None  # `user-device`: the battery the feature drains

    @property
    def owned(self) -> bool:
        return self.deployment == "owned"


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
    """Every figure of one device-against-cloud comparison at one workload. Device costs are
    the operator's: zero for `user-device`, whose user pays `user_*` instead."""

    deployment: Deployment
    requests_per_day: float
    cloud_cost_per_request_usd: float
    cloud_cost_per_m_output_tokens_usd: float
    cloud_cost_per_day_usd: float
    device_busy_s_per_request: float
    device_energy_j_per_request: float  # gross: the device's whole draw while busy
    device_energy_net_j_per_request: float  # what the request adds to the idle draw
    device_idle_power_w: float  # 0 when not measured
    device_energy_cost_per_request_usd: float  # net energy, the marginal cost of a request
    device_idle_cost_per_day_usd: float  # idle draw of the devices the operator runs
    device_capital_usd_per_day: float  # all devices bought
    device_fixed_usd_per_device_day: float  # capital and idle draw of one device bought
    capital_usd_per_request_at_capacity: float
    device_capacity_requests_per_day: float  # one device
    devices_needed: int  # to serve the volume (user-device: 0, the users bring their own)
    devices_bought: int  # of those, the ones the operator pays for
    device_cost_per_request_usd: float
    device_cost_per_m_output_tokens_usd: float
    device_cost_per_day_usd: float
    saving_usd_per_day: float  # cloud − device; negative: the cloud is cheaper
    break_even_requests_per_day: float | None
    break_even_status: BreakEvenStatus
    payback_months: float | None
    lifetime_months: float
    user_energy_cost_per_request_usd: float  # user-device: on the user's electricity bill
    user_battery_pct_per_100_requests: float | None  # user-device, with a battery
    verdict: str

    @property
    def owned(self) -> bool:
        return self.deployment == "owned"


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
    _check("device-cached input tokens", workload.device_cached_input_tokens,
           flag="`shared_prefix_tokens`")  # fmt: skip
    if max(workload.cached_input_tokens, workload.device_cached_input_tokens) > (
        workload.input_tokens
    ):
        raise UsageError(
            "cached input tokens exceed input tokens; lower `shared_prefix_tokens` below "
            f"{workload.input_tokens:g}"
        )
    if device.concurrency < 1:
        raise UsageError(f"concurrency must be 1 or more (got {device.concurrency})")
    _check("prefill tok/s", device.prefill_tps, flag="the run (re-profile it)", positive=True)
    _check("decode tok/s", device.decode_tps, flag="the run (re-profile it)", positive=True)
    _check("J per output token", device.j_per_output_token, flag="the run's energy figures")
    _check("J per input token", device.j_per_input_token, flag="the run's energy figures")
    if device.idle_power_w is not None:
        _check("idle power", device.idle_power_w, flag="the run's idle baseline")
    _validate_costs(costs)
    _validate_cloud(cloud)


def _validate_costs(costs: DeviceCosts) -> None:
    parse_deployment(costs.deployment)
    _check("device price", costs.device_price_usd, flag="`device_price_usd`")
    _check("lifetime", costs.lifetime_years, flag="`lifetime_years` (e.g. 3)", positive=True)
    _check("electricity price", costs.electricity_usd_per_kwh, flag="`electricity_usd_per_kwh`")
    _check("utilization", costs.utilization, flag="`utilization` (0 < f <= 1)", positive=True)
    if costs.utilization > 1:
        raise UsageError(
            f"utilization must be at most 1 (got {costs.utilization}); "
            "fix `utilization` (0 < f <= 1)"
        )
    if costs.owned_devices < 0:
        raise UsageError(f"`owned_devices` must be >= 0 (got {costs.owned_devices})")
    if costs.battery_wh is not None:
        _check("battery capacity", costs.battery_wh, flag="`battery_wh`", positive=True)


def _validate_cloud(cloud: CloudPrice) -> None:
    for name, value, flag in (
        ("cloud input price", cloud.input_usd_per_m, "`price_in_usd_per_m`"),
        ("cloud output price", cloud.output_usd_per_m, "`price_out_usd_per_m`"),
        ("cloud cached input price", cloud.cached_input_usd_per_m, "the cached input price"),
        ("cloud cost per request", cloud.cost_per_request_usd, "the cloud run's recorded cost"),
    ):
        if value is not None:
            _check(name, value, flag=flag, error=PricingError)


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


def prefilled_tokens(workload: Workload) -> float:
    """Input tokens the device computes for each request: all but a prefix it keeps cached."""
    return workload.input_tokens - workload.device_cached_input_tokens


def busy_s_per_request(workload: Workload, device: DevicePerformance) -> float:
    return prefilled_tokens(workload) / device.prefill_tps + (
        workload.output_tokens / device.decode_tps
    )


def energy_j_per_request(workload: Workload, device: DevicePerformance) -> float:
    return (
        prefilled_tokens(workload) * device.j_per_input_token
        + workload.output_tokens * device.j_per_output_token
    )


def net_energy_j(gross_j: float, idle_power_w: float, busy_s: float) -> float:
    """What a request adds to an idle device; never below 0 (a noisy baseline can exceed the
    average of a short request)."""
    return max(0.0, gross_j - idle_power_w * busy_s)


def energy_cost_usd(energy_j: float, electricity_usd_per_kwh: float) -> float:
    return energy_j / J_PER_KWH * electricity_usd_per_kwh


def capital_usd_per_day(costs: DeviceCosts) -> float:
    """One device's price spread over its life (whatever the deployment: who pays is decided
    by `devices_bought`)."""
    return costs.device_price_usd / (costs.lifetime_years * DAYS_PER_YEAR)


def capacity_requests_per_day(busy_s: float, utilization: float) -> float:
    return utilization * SECONDS_PER_DAY / busy_s


def devices_needed(requests_per_day: float, capacity: float) -> int:
    """⌈R / capacity⌉, at least 1; a volume a hair over a whole number of devices (float
    rounding of R = k × capacity) does not buy one more."""
    ratio = requests_per_day / capacity
    if not math.isfinite(ratio):
        raise UsageError(
            f"{format_count(requests_per_day)} requests/day need more devices than can be "
            "counted; check `requests_per_day`"
        )
    return max(1, math.ceil(ratio * (1 - 1e-12)))


def devices_bought(deployment: Deployment, needed: int, owned_devices: int) -> int:
    if deployment == "dedicated":
        return needed
    if deployment == "owned":
        return max(0, needed - owned_devices)
    return 0  # user-device: every user brings their own


def cloud_cost_per_day_usd(requests_per_day: float, cloud_usd_per_request: float) -> float:
    return requests_per_day * cloud_usd_per_request


def device_cost_per_day_usd(
    requests_per_day: float,
    fixed_usd_per_device_day: float,
    energy_usd_per_request: float,
    capacity: float = math.inf,
    *,
    deployment: Deployment = "dedicated",
    owned_devices: int = 1,
) -> float:
    """The operator's daily cost at a volume: the fixed cost (capital and idle draw) of every
    device bought to serve it, plus each request's net energy."""
    if deployment == "user-device":
        return 0.0
    bought = devices_bought(deployment, devices_needed(requests_per_day, capacity), owned_devices)
    return bought * fixed_usd_per_device_day + requests_per_day * energy_usd_per_request


def break_even_requests_per_day(
    fixed_usd_per_day: float, cloud_usd_per_request: float, energy_usd_per_request: float
) -> float | None:
    """Where the two daily-cost lines cross; None when the device saves nothing per request."""
    margin = cloud_usd_per_request - energy_usd_per_request
    if margin <= 0:
        return None
    volume = fixed_usd_per_day / margin
    # A saving of 1e-313 USD a request: the crossing is past any volume a float can hold.
    return volume if math.isfinite(volume) else None


def payback_months(outlay_usd: float, saving_usd_per_day: float) -> float | None:
    if saving_usd_per_day <= 0:
        return None
    return outlay_usd / (saving_usd_per_day * DAYS_PER_MONTH)


def battery_pct_per_100_requests(energy_j: float, battery_wh: float) -> float:
    return 100 * 100 * energy_j / (battery_wh * J_PER_WH)


# -- the comparison ------------------------------------------------------------------------


@dataclass(frozen=True)
class _DeviceDay:
    """The device side at one volume, before the comparison with the cloud."""

    busy_s: float
    energy_j: float
    energy_net_j: float
    idle_w: float
    energy_usd: float  # per request, net
    capacity: float
    capital_usd: float  # per device and day
    idle_usd: float  # per device and day
    needed: int
    bought: int

    @property
    def fixed_usd(self) -> float:
        return self.capital_usd + self.idle_usd

    def cost_per_day_usd(self, requests_per_day: float) -> float:
        return self.bought * self.fixed_usd + requests_per_day * self.energy_usd


def _device_day(workload: Workload, device: DevicePerformance, costs: DeviceCosts) -> _DeviceDay:
    busy = busy_s_per_request(workload, device)
    gross = energy_j_per_request(workload, device)
    idle_w = device.idle_power_w or 0.0
    # N requests share the device's seconds: each is charged 1/N of the idle draw it overlaps
    net = net_energy_j(gross, idle_w, busy / device.concurrency)
    capacity = device.concurrency * capacity_requests_per_day(busy, costs.utilization)
    user = costs.deployment == "user-device"
    needed = 0 if user else devices_needed(workload.requests_per_day, capacity)
    return _DeviceDay(
        busy_s=busy,
        energy_j=gross,
        energy_net_j=net,
        idle_w=idle_w,
        energy_usd=0.0 if user else energy_cost_usd(net, costs.electricity_usd_per_kwh),
        capacity=capacity,
        capital_usd=capital_usd_per_day(costs),
        idle_usd=energy_cost_usd(idle_w * SECONDS_PER_DAY, costs.electricity_usd_per_kwh),
        needed=needed,
        bought=devices_bought(costs.deployment, needed, costs.owned_devices),
    )


def _crossing(
    deployment: Deployment, d: _DeviceDay, cloud_usd: float, energy_usd: float
) -> tuple[float | None, BreakEvenStatus]:
    if deployment == "user-device":
        return 0.0, "ok"  # the operator pays nothing on the device: it saves from request one
    be = break_even_requests_per_day(d.fixed_usd, cloud_usd, energy_usd)
    if be is None:
        return None, "energy_exceeds_cloud"
    if deployment == "owned" and d.bought < d.needed:
        return 0.0, "ok"  # a device already on: every request saves the margin
    return be, ("exceeds_capacity" if be > d.capacity else "ok")


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
    d = _device_day(workload, device, costs)
    # The break-even is a property of one device's economics, whatever the fleet at `r`.
    marginal_usd = energy_cost_usd(d.energy_net_j, costs.electricity_usd_per_kwh)
    one = replace(d, needed=1, bought=devices_bought(costs.deployment, 1, costs.owned_devices))
    be, status = _crossing(costs.deployment, one, cloud_req, marginal_usd)
    device_day = d.cost_per_day_usd(r)
    saving_day = r * cloud_req - device_day
    outlay = d.bought * costs.device_price_usd
    # Payback counts the operating saving (cloud bill avoided − electricity) against the outlay.
    operating_saving_day = saving_day + d.bought * d.capital_usd
    payback = payback_months(outlay, operating_saving_day)
    if outlay == 0:
        payback = 0.0 if operating_saving_day > 0 else None
    per_m = TOKENS_PER_M / workload.output_tokens
    user = costs.deployment == "user-device"
    result = BreakEven(
        deployment=costs.deployment,
        requests_per_day=r,
        cloud_cost_per_request_usd=cloud_req,
        cloud_cost_per_m_output_tokens_usd=cloud_req * per_m,
        cloud_cost_per_day_usd=cloud_cost_per_day_usd(r, cloud_req),
        device_busy_s_per_request=d.busy_s,
        device_energy_j_per_request=d.energy_j,
        device_energy_net_j_per_request=d.energy_net_j,
        device_idle_power_w=d.idle_w,
        device_energy_cost_per_request_usd=d.energy_usd,
        device_idle_cost_per_day_usd=d.bought * d.idle_usd,
        device_capital_usd_per_day=d.bought * d.capital_usd,
        device_fixed_usd_per_device_day=d.fixed_usd,
        capital_usd_per_request_at_capacity=d.capital_usd / d.capacity,
        device_capacity_requests_per_day=d.capacity,
        devices_needed=d.needed,
        devices_bought=d.bought,
        device_cost_per_request_usd=device_day / r,
        device_cost_per_m_output_tokens_usd=device_day / r * per_m,
        device_cost_per_day_usd=device_day,
        saving_usd_per_day=saving_day,
        break_even_requests_per_day=be,
        break_even_status=status,
        payback_months=None if user else payback,
        lifetime_months=costs.lifetime_years * 12.0,
        user_energy_cost_per_request_usd=marginal_usd if user else 0.0,
        user_battery_pct_per_100_requests=(
            battery_pct_per_100_requests(d.energy_net_j, costs.battery_wh)
            if costs.battery_wh
            else None
        ),
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
    if result.deployment == "user-device":
        return _user_device_verdict(result, cloud_name)
    if result.break_even_status == "energy_exceeds_cloud":
        return (
            f"no break-even: the device's electricity alone costs more per request "
            f"({format_usd(result.device_energy_cost_per_request_usd)}) than {cloud_name} "
            f"({format_usd(result.cloud_cost_per_request_usd)})"
        )
    capacity = format_count(result.device_capacity_requests_per_day)
    if result.break_even_status == "exceeds_capacity":
        assert result.break_even_requests_per_day is not None
        return (
            f"no break-even: break-even volume "
            f"({format_count(result.break_even_requests_per_day)} requests/day) exceeds the "
            f"device's capacity ({capacity} requests/day), so no number of devices pays off"
        )
    head = _head(result, cloud_name)
    if result.devices_needed > 1:
        head += (
            f"; {format_count(result.requests_per_day)} requests/day need "
            f"{result.devices_needed} devices ({capacity} requests/day each)"
        )
    return head


def _head(result: BreakEven, cloud_name: str) -> str:
    r = format_count(result.requests_per_day)
    be = result.break_even_requests_per_day
    assert be is not None
    pb = result.payback_months
    if result.deployment == "owned":
        head = (
            f"on-device is cheaper than {cloud_name} at any volume the owned device serves "
            f"(already owned: each request costs only its marginal electricity, "
            f"{format_usd(result.device_energy_cost_per_request_usd)} against "
            f"{format_usd(result.cloud_cost_per_request_usd)})"
        )
        if result.devices_bought and result.saving_usd_per_day < 0:
            head += f"; at {r} requests/day, with devices to buy, the cloud is cheaper"
        return head
    head = f"on-device is cheaper than {cloud_name} above {format_count(be)} requests/day"
    if result.requests_per_day < be:
        months = "" if pb is None else f"payback {pb:,.1f} months, "
        return (
            f"{head}; at {r} requests/day the cloud is cheaper ({months}beyond the device's "
            f"{result.lifetime_months:,.0f}-month life)"
        )
    return head if pb is None else f"{head}; pays back in {pb:,.1f} months"


def _user_device_verdict(result: BreakEven, cloud_name: str) -> str:
    battery = result.user_battery_pct_per_100_requests
    drain = "" if battery is None else f", {battery:.2g}% of a battery charge per 100 requests"
    return (
        f"on the users' own devices the operator avoids {cloud_name}'s bill of "
        f"{format_usd(result.cloud_cost_per_day_usd)}/day "
        f"({format_usd(result.cloud_cost_per_request_usd)} a request); each user pays "
        f"{result.device_energy_net_j_per_request:,.3g} J a request "
        f"({format_usd(result.user_energy_cost_per_request_usd)} of electricity{drain})"
    )
