"""The owner's device-cost flags (`--device-price`, `--lifetime-years`, `--electricity`, ...) for
commands that price stored runs without profiling (`route`), and the costs they make, each
figure with its source (`decision.orchestrate.cost_inputs`, as `decide` states them)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from edgeprof.decision.compare import Figure
    from edgeprof.decision.economics import DeviceCosts

DEVICE_PRESET = typer.Option(
    None,
    "--device-preset",
    help="A device preset for price and lifetime (edgeprof devices), e.g. rpi5-8gb.",
)
DEVICE_PRICE = typer.Option(None, "--device-price", help="Device price, USD.")
LIFETIME_YEARS = typer.Option(
    None, "--lifetime-years", help="Years the device serves (default: the preset's, or 3)."
)
ELECTRICITY = typer.Option(None, "--electricity", help="Electricity, USD per kWh (default 0.17).")
UTILIZATION = typer.Option(
    None, "--utilization", help="Share of the day a device may spend serving (0-1]."
)
DEPLOYMENT = typer.Option(
    "dedicated",
    "--deployment",
    help="dedicated (bought for this feature: capital + idle draw all day), owned (on anyway: "
    "marginal energy only) or user-device (the users' own hardware).",
)
OWNED_DEVICES = typer.Option(1, "--owned-devices", help="owned: how many devices you already have.")
BATTERY_WH = typer.Option(
    None, "--battery-wh", help="user-device: battery capacity (default: the preset's)."
)


def device_costs(
    *,
    requests_per_day: float,
    device: str | None,
    device_price_usd: float | None,
    lifetime_years: float | None,
    electricity_usd_per_kwh: float | None,
    utilization: float | None,
    deployment: str,
    owned_devices: int,
    battery_wh: float | None,
) -> tuple[DeviceCosts, list[Figure]]:
    """The costs and their figures, as `decide` builds them (a preset, the flags, defaults)."""
    from edgeprof.decision.orchestrate import DecideConfig, cost_inputs
    from edgeprof.decision.presets import get_preset

    config = DecideConfig(
        requests_per_day=requests_per_day, device=device, device_price_usd=device_price_usd,
        lifetime_years=lifetime_years, electricity_usd_per_kwh=electricity_usd_per_kwh,
        utilization=utilization, deployment=deployment, owned_devices=owned_devices,
        battery_wh=battery_wh,
    )  # fmt: skip
    preset = get_preset(device) if device else None
    return cost_inputs(config, preset)
