"""Economics: hand-computed cases and hypothesis properties of the break-even model."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from edgeprof import economics as ec
from edgeprof.economics import CloudPrice, DeviceCosts, DevicePerformance, Workload
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
    res = ec.break_even(WORKLOAD, DEVICE, DeviceCosts(730, 2, 0.25, 0.5, owned=True), CLOUD)
    assert res.device_capital_usd_per_day == 0
    assert res.break_even_requests_per_day == 0
    assert res.payback_months == 0
    assert res.device_cost_per_day_usd == pytest.approx(2000 * 0.00002625)
    assert "already owned" in res.verdict


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
        "capacity (4,114 requests/day)"
    )


def test_volume_above_capacity_is_served_only_up_to_capacity() -> None:
    res = ec.break_even(Workload(10_000, 500, 250), DEVICE, COSTS, CLOUD)
    cap = 0.5 * 86_400 / 10.5
    assert res.device_served_requests_per_day == pytest.approx(cap)
    assert res.device_unserved_requests_per_day == pytest.approx(10_000 - cap)
    assert res.device_cost_per_day_usd == pytest.approx(1 + cap * 0.00002625)
    assert res.payback_months == pytest.approx(730 / (cap * 0.00147375 * 365 / 12))
    assert "the other 5,886 need more devices or the cloud" in res.verdict


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
    )
    costs = DeviceCosts(
        device_price_usd=draw(money(0, 1e5)),
        lifetime_years=draw(money(0.1, 20)),
        electricity_usd_per_kwh=draw(money(0, 2)),
        utilization=draw(money(0.01, 1)),
        owned=draw(st.booleans()),
    )
    cloud = CloudPrice(draw(money(0, 100)), draw(money(0, 200)))
    return workload, device, costs, cloud


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_break_even_is_where_the_cost_curves_cross(
    s: tuple[Workload, DevicePerformance, DeviceCosts, CloudPrice],
) -> None:
    res = ec.break_even(*s)
    be = res.break_even_requests_per_day
    if be is None:  # no break-even in this scenario: nothing to check here
        assume(False)
        return
    capital, energy = res.device_capital_usd_per_day, res.device_energy_cost_per_request_usd
    cloud = res.cloud_cost_per_request_usd
    device_at = ec.device_cost_per_day_usd(be, capital, energy)
    cloud_at = ec.cloud_cost_per_day_usd(be, cloud)
    assert device_at == pytest.approx(cloud_at, rel=1e-9, abs=1e-12)
    if capital > 0:
        # below the crossing the cloud is cheaper, above it the device is
        assert ec.cloud_cost_per_day_usd(be / 2, cloud) < ec.device_cost_per_day_usd(
            be / 2, capital, energy
        )
        assert ec.cloud_cost_per_day_usd(be * 2, cloud) > ec.device_cost_per_day_usd(
            be * 2, capital, energy
        )
        # and exactly there the device pays back over its lifetime
        w = Workload(be, s[0].input_tokens, s[0].output_tokens)
        at_be = ec.break_even(w, s[1], s[2], s[3])
        if at_be.break_even_status == "ok":
            assert at_be.payback_months == pytest.approx(res.lifetime_months, rel=1e-9)


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
def test_capacity_is_never_exceeded(
    s: tuple[Workload, DevicePerformance, DeviceCosts, CloudPrice],
) -> None:
    res = ec.break_even(*s)
    cap = res.device_capacity_requests_per_day
    assert res.device_served_requests_per_day <= cap
    # the served requests fit in the utilized part of the day
    busy_day_s = res.device_served_requests_per_day * res.device_busy_s_per_request
    assert busy_day_s <= s[2].utilization * 86_400 * (1 + 1e-9)
    if res.break_even_status == "ok":
        assert res.break_even_requests_per_day is not None
        assert res.break_even_requests_per_day <= cap
    # costs stop growing at capacity: more volume than one device serves costs it nothing more
    more = ec.break_even(Workload(cap * 3, s[0].input_tokens, s[0].output_tokens), *s[1:])
    at_cap = ec.break_even(Workload(cap, s[0].input_tokens, s[0].output_tokens), *s[1:])
    assert more.device_cost_per_day_usd == pytest.approx(at_cap.device_cost_per_day_usd)
    assert more.device_served_requests_per_day == pytest.approx(cap)


def test_a_vanishing_saving_has_no_break_even() -> None:
    """Found by the property above: a cloud price of 1e-307 USD/1M made the crossing overflow
    to inf and the daily costs at it NaN."""
    assert ec.break_even_requests_per_day(1.0, 1.2e-313, 0.0) is None
    assert ec.break_even_requests_per_day(1.0, 2.0, 1.0) == 1.0
