"""Economics: hand-computed cases and hypothesis properties of the break-even model."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeprof.decision import economics as ec
from edgeprof.decision.economics import CloudPrice, DeviceCosts, DevicePerformance, Workload
from edgeprof.errors import PricingError, UsageError

# The hand-worked device (numbers chosen so that the arithmetic can be done on paper):
#   busy      = 500 / 1000 + 250 / 25                       = 10.5 s/request
#   energy    = 500 × 0.036 + 250 × 1.44 = 18 + 360         = 378 J/request
#             = 378 / 3.6e6 kWh × $0.25/kWh                 = $0.00002625/request
#   capital   = $730 / (2 years × 365 days)                 = $1.00/day
#   cloud     = 500 × $1/M + 250 × $4/M = 0.0005 + 0.001    = $0.0015/request
#   margin    = 0.0015 − 0.00002625                         = $0.00147375/request
#   break-even = 1.00 / 0.00147375                          = 678.54 requests/day
#   capacity  = 0.5 × 86,400 / 10.5                         = 4,114.29 requests/day
#   at 2,000 requests/day: saving = 2,000 × 0.00147375      = $2.9475/day
#   payback   = 730 / (2.9475 × 365/12)                     = 730 / 89.653125 = 8.14249 months
WORKLOAD = Workload(requests_per_day=2000, input_tokens=500, output_tokens=250)
DEVICE = DevicePerformance(
    prefill_tps=1000, decode_tps=25, j_per_output_token=1.44, j_per_input_token=0.036
)
COSTS = DeviceCosts(
    device_price_usd=730, lifetime_years=2, electricity_usd_per_kwh=0.25, utilization=0.5
)
CLOUD = CloudPrice(input_usd_per_m=1, output_usd_per_m=4)


def test_ten_billion_output_tokens_at_15_per_million_cost_150k_a_day() -> None:
    workload = Workload(requests_per_day=10_000_000, input_tokens=0, output_tokens=1000)
    res = ec.break_even(workload, DEVICE, COSTS, CloudPrice(5, 15))
    assert res.cloud_cost_per_day_usd == pytest.approx(150_000)
    assert res.cloud_cost_per_m_output_tokens_usd == pytest.approx(15)
    assert ec.format_usd(res.cloud_cost_per_day_usd) == "$150,000"


def test_hand_computed_break_even_and_payback() -> None:
    res = ec.break_even(WORKLOAD, DEVICE, COSTS, CLOUD, cloud_name="model-x")
    assert res.device_busy_s_per_request == pytest.approx(10.5)
    assert res.device_energy_j_per_request == pytest.approx(378)
    assert res.device_energy_cost_per_request_usd == pytest.approx(0.00002625)
    assert res.device_capital_usd_per_day == pytest.approx(1.0)
    assert res.cloud_cost_per_request_usd == pytest.approx(0.0015)
    assert res.break_even_requests_per_day == pytest.approx(678.5411365564)
    assert res.device_capacity_requests_per_day == pytest.approx(4114.2857142857)
    assert res.break_even_status == "ok"
    assert res.payback_months == pytest.approx(8.1424936, rel=1e-6)
    # device day = $1 + 2000 × 0.00002625 = $1.0525; cloud day = 2000 × 0.0015 = $3
    assert res.device_cost_per_day_usd == pytest.approx(1.0525)
    assert res.cloud_cost_per_day_usd == pytest.approx(3.0)
    assert res.saving_usd_per_day == pytest.approx(3.0 - 1.0525)
    assert res.device_cost_per_request_usd == pytest.approx(1.0525 / 2000)
    assert res.device_cost_per_m_output_tokens_usd == pytest.approx(1.0525 / 2000 / 250 * 1e6)
    # capital share at capacity = price / (lifetime s × utilization) × busy s
    share = 730 / (2 * 365 * 86_400 * 0.5) * 10.5
    assert res.capital_usd_per_request_at_capacity == pytest.approx(share)
    assert res.verdict == (
        "on-device is cheaper than model-x above 679 requests/day; pays back in 8.1 months"
    )


def test_below_break_even_the_cloud_wins_and_payback_exceeds_life() -> None:
    res = ec.break_even(Workload(300, 500, 250), DEVICE, COSTS, CLOUD)
    assert res.saving_usd_per_day < 0
    # 730 / (300 × 0.00147375 × 365/12) = 54.28 months > 24
    assert res.payback_months == pytest.approx(730 / (300 * 0.00147375 * 365 / 12))
    assert "at 300 requests/day the cloud is cheaper" in res.verdict
    assert "24-month life" in res.verdict


def test_owned_device_counts_electricity_only() -> None:
    owned = DeviceCosts(730, 2, 0.25, 0.5, deployment="owned")
    res = ec.break_even(WORKLOAD, DEVICE, owned, CLOUD)
    assert res.device_capital_usd_per_day == 0 and res.devices_bought == 0
    assert res.break_even_requests_per_day == 0
    assert res.payback_months == 0
    assert res.device_cost_per_day_usd == pytest.approx(2000 * 0.00002625)
    assert "already owned" in res.verdict


# The same device with a measured idle baseline of 2 W:
#   net energy = 378 − 2 W × 10.5 s = 357 J/request → 357 / 3.6e6 × 0.25 = $0.0000247917
#   idle draw  = 2 W × 86,400 s = 172,800 J/day = 0.048 kWh × $0.25      = $0.012/day
IDLE_DEVICE = DevicePerformance(1000, 25, 1.44, 0.036, idle_power_w=2.0)
NET_USD = 357 / 3.6e6 * 0.25


def test_dedicated_device_pays_for_its_idle_draw_all_day() -> None:
    res = ec.break_even(WORKLOAD, IDLE_DEVICE, COSTS, CLOUD, cloud_name="model-x")
    assert res.device_energy_net_j_per_request == pytest.approx(357)
    assert res.device_energy_cost_per_request_usd == pytest.approx(NET_USD)
    assert res.device_idle_cost_per_day_usd == pytest.approx(0.012)
    # capital $1 + idle $0.012 + 2,000 × net: the same as gross energy while busy (2,000 ×
    # 378 J) plus idle draw for the rest of the day ((86,400 − 21,000) s × 2 W)
    assert res.device_cost_per_day_usd == pytest.approx(1.012 + 2000 * NET_USD)
    by_time = (2000 * 378 + (86_400 - 2000 * 10.5) * 2) / 3.6e6 * 0.25
    assert res.device_cost_per_day_usd == pytest.approx(1 + by_time)
    # break-even: fixed $1.012/day over a margin of 0.0015 − NET_USD
    assert res.break_even_requests_per_day == pytest.approx(1.012 / (0.0015 - NET_USD))
    assert (res.break_even_requests_per_day or 0) > 678.5411365564  # without idle draw


def test_owned_device_is_charged_net_of_idle() -> None:
    owned = DeviceCosts(730, 2, 0.25, 0.5, deployment="owned")
    res = ec.break_even(WORKLOAD, IDLE_DEVICE, owned, CLOUD)
    # it is on anyway: no idle draw, only what 2,000 requests add to it
    assert res.device_idle_cost_per_day_usd == 0
    assert res.device_cost_per_day_usd == pytest.approx(2000 * NET_USD)
    assert res.device_cost_per_day_usd < 2000 * 0.00002625  # below the gross charge


def test_user_device_reports_the_users_energy_and_battery() -> None:
    users = DeviceCosts(730, 2, 0.25, deployment="user-device", battery_wh=50)
    res = ec.break_even(WORKLOAD, IDLE_DEVICE, users, CLOUD, cloud_name="model-x")
    assert res.device_cost_per_day_usd == 0 and res.devices_needed == 0
    assert res.saving_usd_per_day == pytest.approx(3.0)  # the whole cloud bill avoided
    assert res.user_energy_cost_per_request_usd == pytest.approx(NET_USD)
    # 357 J of a 50 Wh (180,000 J) battery = 0.19833% a request, 19.833% per 100
    assert res.user_battery_pct_per_100_requests == pytest.approx(19.8333333)
    assert res.payback_months is None
    assert "avoids model-x's bill of $3.00/day" in res.verdict
    assert "20% of a battery charge per 100 requests" in res.verdict


def test_volume_beyond_one_device_buys_more_devices() -> None:
    # capacity 4,114.29/device: 10,000 requests/day need ⌈2.43⌉ = 3 devices
    res = ec.break_even(Workload(10_000, 500, 250), IDLE_DEVICE, COSTS, CLOUD)
    assert (res.devices_needed, res.devices_bought) == (3, 3)
    assert res.device_capital_usd_per_day == pytest.approx(3.0)
    assert res.device_idle_cost_per_day_usd == pytest.approx(3 * 0.012)
    assert res.device_cost_per_day_usd == pytest.approx(3 * 1.012 + 10_000 * NET_USD)
    # payback: 3 × $730 against the operating saving (cloud − electricity incl. idle)
    operating = 10_000 * 0.0015 - 10_000 * NET_USD - 3 * 0.012
    assert res.payback_months == pytest.approx(3 * 730 / (operating * 365 / 12))
    assert "10,000 requests/day need 3 devices (4,114 requests/day each)" in res.verdict


def test_owned_device_buys_only_the_extra_devices() -> None:
    owned = DeviceCosts(730, 2, 0.25, 0.5, deployment="owned", owned_devices=1)
    res = ec.break_even(Workload(10_000, 500, 250), IDLE_DEVICE, owned, CLOUD)
    assert (res.devices_needed, res.devices_bought) == (3, 2)
    assert res.device_cost_per_day_usd == pytest.approx(2 * 1.012 + 10_000 * NET_USD)


@pytest.mark.parametrize(
    ("volume", "devices"), [(4114.2857142857, 1), (4114.3, 2), (8228.5714285714, 2), (1, 1)]
)
def test_devices_needed_at_the_edges(volume: float, devices: int) -> None:
    assert ec.devices_needed(volume, 0.5 * 86_400 / 10.5) == devices


def test_no_break_even_when_electricity_alone_costs_more() -> None:
    # cloud = 250 × $0.05/M = $0.0000125 < energy $0.00002625
    res = ec.break_even(WORKLOAD, DEVICE, COSTS, CloudPrice(0, 0.05), cloud_name="cheap-model")
    assert res.break_even_requests_per_day is None
    assert res.break_even_status == "energy_exceeds_cloud"
    assert res.payback_months is None
    assert res.verdict == (
        "no break-even: the device's electricity alone costs more per request ($0.0000263) "
        "than cheap-model ($0.0000125)"
    )


def test_no_break_even_beyond_capacity() -> None:
    # capital $1,000/day → break-even 678,541 requests/day, capacity 4,114
    res = ec.break_even(WORKLOAD, DEVICE, DeviceCosts(730_000, 2, 0.25, 0.5), CLOUD)
    assert res.break_even_requests_per_day == pytest.approx(678_541.1365564)
    assert res.break_even_status == "exceeds_capacity"
    assert res.verdict == (
        "no break-even: break-even volume (678,541 requests/day) exceeds the device's "
        "capacity (4,114 requests/day), so no number of devices pays off"
    )


def test_cached_input_tokens_use_the_cached_price() -> None:
    w = Workload(1, input_tokens=1000, output_tokens=100, cached_input_tokens=600)
    price = CloudPrice(input_usd_per_m=2, output_usd_per_m=8, cached_input_usd_per_m=0.5)
    # 400 × 2 + 600 × 0.5 + 100 × 8 = 800 + 300 + 800 = 1900 $/M
    assert ec.cloud_cost_per_request_usd(w, price) == pytest.approx(0.0019)
    # without a cached price, all input is billed at the full price
    assert ec.cloud_cost_per_request_usd(w, CloudPrice(2, 8)) == pytest.approx(0.0028)


def test_flat_cost_per_request_overrides_token_prices() -> None:
    res = ec.break_even(WORKLOAD, DEVICE, COSTS, CloudPrice(cost_per_request_usd=0.0015))
    assert res.break_even_requests_per_day == pytest.approx(678.5411365564)


def test_sensitivity_table_by_hand() -> None:
    rows = ec.sensitivity(WORKLOAD, DEVICE, COSTS, CLOUD)
    got = {(r.parameter, r.factor): r for r in rows}
    assert len(rows) == 6
    # lifetime × 0.5 → capital $2/day → 2 / 0.00147375
    assert got["lifetime_years", 0.5].break_even_requests_per_day == pytest.approx(1357.08227)
    assert got["lifetime_years", 0.5].value == 1.0
    # cloud × 1.5 → $0.00225; margin 0.00222375 → 449.69
    assert got["cloud_price", 1.5].break_even_requests_per_day == pytest.approx(1 / 0.00222375)
    assert got["cloud_price", 1.5].value == pytest.approx(0.00225)
    # electricity × 1.5 → energy $0.000039375 → margin 0.001460625
    assert got["electricity_usd_per_kwh", 1.5].break_even_requests_per_day == pytest.approx(
        1 / 0.001460625
    )
    assert [r.parameter for r in rows][:2] == ["electricity_usd_per_kwh"] * 2


@pytest.mark.parametrize(
    ("change", "error", "param", "flag"),
    [
        ({"costs": DeviceCosts(-1, 2, 0.25)}, UsageError, "device_price_usd", "--device-price"),
        ({"costs": DeviceCosts(730, 0, 0.25)}, UsageError, "lifetime_years", "--lifetime-years"),
        (
            {"costs": DeviceCosts(730, 2, -0.1)},
            UsageError,
            "electricity_usd_per_kwh",
            "--electricity",
        ),
        (
            {"costs": DeviceCosts(730, 2, 0.25, utilization=1.5)},
            UsageError,
            "utilization",
            "--utilization",
        ),
        ({"cloud": CloudPrice(-1, 4)}, PricingError, "price_in_usd_per_m", "--price-in"),
        ({"cloud": CloudPrice(1, math.nan)}, PricingError, "price_out_usd_per_m", "--price-out"),
        (
            {"workload": Workload(0, 500, 250)},
            UsageError,
            "requests_per_day",
            "--requests-per-day",
        ),
        ({"workload": Workload(1, 500, 0)}, UsageError, "output_tokens", "--output-tokens"),
    ],
)
def test_bad_input_gets_a_one_line_error_naming_the_fix(
    change: dict[str, object], error: type[Exception], param: str, flag: str
) -> None:
    """The library names the parameter; the command line shows the flag that sets it."""
    from edgeprof.cli.app import cli_message

    args: dict[str, object] = {
        "workload": WORKLOAD,
        "device": DEVICE,
        "costs": COSTS,
        "cloud": CLOUD,
    }
    args.update(change)
    with pytest.raises(error) as info:
        ec.break_even(**args)  # type: ignore[arg-type]
    message = str(info.value)
    assert f"`{param}`" in message and "--" not in message
    assert "\n" not in message
    assert flag in cli_message(message) and f"`{param}`" not in cli_message(message)


def test_format_usd() -> None:
    assert ec.format_usd(0.00002625) == "$0.0000263"
    assert ec.format_usd(1.5) == "$1.50"
    assert ec.format_usd(-0.3) == "-$0.300"


# -- properties ----------------------------------------------------------------------------

pos = st.floats(min_value=0.01, max_value=1e4, allow_nan=False)


def money(lo: float, hi: float) -> st.SearchStrategy[float]:
    """Floats for prices, volumes and lifetimes: no subnormals (no one pays 2e-313 dollars,
    and arithmetic on them loses the precision the properties compare at)."""
    return st.floats(min_value=lo, max_value=hi, allow_subnormal=False)


tokens = st.integers(min_value=1, max_value=8192)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Workload, DevicePerformance, DeviceCosts, CloudPrice]:
    workload = Workload(
        requests_per_day=draw(money(1, 1e7)),
        input_tokens=draw(st.integers(min_value=0, max_value=8192)),
        output_tokens=draw(tokens),
    )
    device = DevicePerformance(
        prefill_tps=draw(pos),
        decode_tps=draw(pos),
        j_per_output_token=draw(money(0, 100)),
        j_per_input_token=draw(money(0, 10)),
        idle_power_w=draw(st.none() | money(0, 200)),
    )
    costs = DeviceCosts(
        device_price_usd=draw(money(0, 1e5)),
        lifetime_years=draw(money(0.1, 20)),
        electricity_usd_per_kwh=draw(money(0, 2)),
        utilization=draw(money(0.01, 1)),
        deployment=draw(st.sampled_from(ec.DEPLOYMENTS)),
        owned_devices=draw(st.integers(min_value=0, max_value=3)),
    )
    cloud = CloudPrice(draw(money(0, 100)), draw(money(0, 200)))
    return workload, device, costs, cloud


def _device_day(res: ec.BreakEven, costs: DeviceCosts, volume: float) -> float:
    return ec.device_cost_per_day_usd(
        volume,
        res.device_fixed_usd_per_device_day,
        res.device_energy_cost_per_request_usd,
        res.device_capacity_requests_per_day,
        deployment=costs.deployment,
        owned_devices=costs.owned_devices,
    )


@settings(max_examples=300, deadline=None)
@given(scenarios(), st.floats(min_value=0.01, max_value=100))
def test_break_even_is_where_the_cost_curves_cross(
    s: tuple[Workload, DevicePerformance, DeviceCosts, CloudPrice], factor: float
) -> None:
    costs = replace(s[2], deployment="dedicated")  # the mode with a fixed cost to recover
    res = ec.break_even(s[0], s[1], costs, s[3])
    be = res.break_even_requests_per_day
    fixed, energy = res.device_fixed_usd_per_device_day, res.device_energy_cost_per_request_usd
    cloud, cap = res.cloud_cost_per_request_usd, res.device_capacity_requests_per_day
    if be is None or res.break_even_status != "ok":
        # no crossing: at no volume, with any number of devices, is the device cheaper
        v = cap * factor
        assert _device_day(res, costs, v) >= v * cloud * (1 - 1e-9) - 1e-12
        return
    if be > 0:
        assert _device_day(res, costs, be) == pytest.approx(be * cloud, rel=1e-9, abs=1e-12)
    # at any volume the device is cheaper exactly when its devices' fixed costs are below what
    # the volume saves on the margin: a step function, one step per device bought
    v = be * factor if be > 0 else factor
    n = ec.devices_needed(v, cap)
    device_v, cloud_v = _device_day(res, costs, v), v * cloud
    if not math.isclose(n * fixed, v * (cloud - energy), rel_tol=1e-9, abs_tol=1e-12):
        assert (device_v < cloud_v) == (n * fixed < v * (cloud - energy))
    capital = res.capital_usd_per_request_at_capacity * res.device_capacity_requests_per_day
    if be > 0 and capital > 1e-6 * fixed:
        # exactly at the break-even the devices bought pay back over their lifetime (the
        # saving there equals the capital a day: a capital lost in the idle cost's rounding,
        # a $1e-68 device, cannot show it)
        w = Workload(be, s[0].input_tokens, s[0].output_tokens)
        at_be = ec.break_even(w, s[1], costs, s[3])
        if costs.device_price_usd > 0 and at_be.payback_months is not None:
            assert at_be.payback_months == pytest.approx(res.lifetime_months, rel=1e-6)


@settings(max_examples=300, deadline=None)
@given(scenarios(), st.floats(min_value=1, max_value=100))
def test_raising_the_cloud_price_never_raises_break_even(
    s: tuple[Workload, DevicePerformance, DeviceCosts, CloudPrice], factor: float
) -> None:
    workload, device, costs, cloud = s
    base = ec.break_even(workload, device, costs, cloud).break_even_requests_per_day
    dearer = ec.break_even(workload, device, costs, cloud.scaled(factor))
    new = dearer.break_even_requests_per_day
    base_or_inf = math.inf if base is None else base
    new_or_inf = math.inf if new is None else new
    assert new_or_inf <= base_or_inf * (1 + 1e-12)


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_the_devices_bought_serve_the_volume(
    s: tuple[Workload, DevicePerformance, DeviceCosts, CloudPrice],
) -> None:
    res = ec.break_even(*s)
    costs, cap = s[2], res.device_capacity_requests_per_day
    if costs.deployment == "user-device":
        assert res.devices_needed == 0 and res.device_cost_per_day_usd == 0
        return
    n, r = res.devices_needed, res.requests_per_day
    # enough devices for the volume in the utilized part of their day, and not one too many
    assert n * cap >= r * (1 - 1e-9)
    assert (n - 1) * cap < r or n == 1
    busy_per_device_s = r * res.device_busy_s_per_request / n
    assert busy_per_device_s <= costs.utilization * 86_400 * (1 + 1e-9)
    if costs.deployment == "owned":
        assert res.devices_bought == max(0, n - costs.owned_devices)
    else:
        assert res.devices_bought == n
    if res.break_even_status == "ok" and costs.deployment == "dedicated":
        assert res.break_even_requests_per_day is not None
        assert res.break_even_requests_per_day <= cap * (1 + 1e-12)


def test_a_vanishing_saving_has_no_break_even() -> None:
    """Found by the property above: a cloud price of 1e-307 USD/1M made the crossing overflow
    to inf and the daily costs at it NaN."""
    assert ec.break_even_requests_per_day(1.0, 1.2e-313, 0.0) is None
    assert ec.break_even_requests_per_day(1.0, 2.0, 1.0) == 1.0
