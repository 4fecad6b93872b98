"""`edgeprof route`: hybrid policies replayed over a graded device run and cloud run, priced at
a volume, tuned rules reported held out (docs/hybrid.md)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from edgeprof.cli.app import app, err, out
from edgeprof.cli.cost_options import (
    BATTERY_WH,
    DEPLOYMENT,
    DEVICE_PRESET,
    DEVICE_PRICE,
    ELECTRICITY,
    LIFETIME_YEARS,
    OWNED_DEVICES,
    UTILIZATION,
    device_costs,
)

if TYPE_CHECKING:
    from rich.table import Table

    from edgeprof.routing.replay import PolicyResult, RouteReport
    from edgeprof.store.db import Store


@app.command("route")
def route_command(
    device_run: str = typer.Option(
        ..., "--device", help="The device run: id or unique prefix, graded (edgeprof grade)."
    ),
    cloud_run: str = typer.Option(
        ..., "--cloud", help="The cloud run of the same suite, graded: id or unique prefix."
    ),
    requests_per_day: float = typer.Option(
        ..., "--requests-per-day", help="The feature's volume: requests per day."
    ),
    db: Path | None = typer.Option(
        None, "--db", help="Profile database (default: $EDGEPROF_DB or profiles/edgeprof.db)."
    ),
    folds: int = typer.Option(
        5, "--folds", help="Rules are chosen on k-1 folds of the prompts, reported on the k-th."
    ),
    min_pass_rate: float | None = typer.Option(
        None,
        "--min-pass-rate",
        help="Choose each rule as the cheapest whose pass rate meets this share (0-1).",
    ),
    objective: str | None = typer.Option(
        None,
        "--objective",
        help="How a rule is chosen on the calibration folds: cheapest-per-pass (default), "
        "max-pass, or cheapest-at-floor (the default with --min-pass-rate).",
    ),
    format_checks: str | None = typer.Option(
        None,
        "--format-checks",
        help="Check types whose failure on a device answer escalates it, comma-separated "
        "(default: is-json,contains-json,max-words,bullets: checks that need no expected answer).",
    ),
    price_in: float | None = typer.Option(
        None, "--price-in", help="The cloud's input price, USD per 1M tokens (default: the run's)."
    ),
    price_out: float | None = typer.Option(
        None, "--price-out", help="The cloud's output price, USD per 1M tokens."
    ),
    price_cached_in: float | None = typer.Option(
        None, "--price-cached-in", help="The cloud's cached-input price, USD per 1M tokens."
    ),
    device: str | None = DEVICE_PRESET,
    device_price: float | None = DEVICE_PRICE,
    lifetime_years: float | None = LIFETIME_YEARS,
    electricity: float | None = ELECTRICITY,
    utilization: float | None = UTILIZATION,
    deployment: str = DEPLOYMENT,
    owned_devices: int = OWNED_DEVICES,
    battery_wh: float | None = BATTERY_WH,
    as_json: bool = typer.Option(False, "--json", help="Print every figure as JSON."),
    plot: Path | None = typer.Option(
        None,
        "--plot",
        help="Write $/day against pass rate (every policy, every threshold) to this PNG.",
    ),
) -> None:
    """Replay device-only, cloud-only, cascade, route-by-prompt and oracle policies over two
    graded runs of the same suite: pass rate, escalation, $/day, J/request, latency."""
    from edgeprof.errors import ProfileDBError, UsageError
    from edgeprof.routing.holdout import parse_objective
    from edgeprof.routing.replay import RouteOptions, route
    from edgeprof.routing.signals import FORMAT_CHECKS
    from edgeprof.store.db import Store, default_db_path

    path = db or default_db_path()
    if not path.exists():
        raise ProfileDBError(f"{path} does not exist; create it with `edgeprof run --db {path}`")
    if (price_in is None) != (price_out is None):
        raise UsageError("give both `price_in` and `price_out` (USD per 1M tokens), or neither")
    if price_cached_in is not None and price_in is None:
        raise UsageError("`price_cached_in` goes with `price_in` and `price_out`: give all three")
    price = None
    if price_in is not None and price_out is not None:
        from edgeprof.decision.economics import CloudPrice
        from edgeprof.decision.prices import manual_price

        mp = manual_price(price_in, price_out, price_cached_in)
        price = CloudPrice(mp.input_usd_per_m, mp.output_usd_per_m, mp.cached_input_usd_per_m)
    checks = (
        frozenset(c.strip() for c in format_checks.split(",") if c.strip())
        if format_checks is not None
        else FORMAT_CHECKS
    )
    _check_types(checks)
    options = RouteOptions(folds, parse_objective(objective) if objective else None, min_pass_rate)
    with Store(path) as store:
        note = None
        if device is None and device_price is None and deployment == "dedicated":
            device, note = _run_preset(store, device_run)
        costs, figures = device_costs(
            requests_per_day=requests_per_day, device=device, device_price_usd=device_price,
            lifetime_years=lifetime_years, electricity_usd_per_kwh=electricity,
            utilization=utilization, deployment=deployment, owned_devices=owned_devices,
            battery_wh=battery_wh,
        )  # fmt: skip
        report = route(store, device_run, cloud_run, costs, requests_per_day, options,
                       cloud_price=price, format_checks=checks, cost_figures=figures)  # fmt: skip
    if note is not None:
        report = dataclasses.replace(report, notes=(note, *report.notes))
    if plot is not None:
        from edgeprof.report.hybrid_chart import frontier_chart, plot_frontier

        plot_frontier(frontier_chart(report, min_pass_rate), plot)
        err.print(f"wrote {plot}")
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
        return
    render(report)


def _run_preset(store: Store, device_run: str) -> tuple[str | None, str | None]:
    """A dedicated device with no price given: the preset that names the device the run was
    profiled on (its board or CPU: a stored device does not say whether it has a battery, so
    a preset recognised by its architecture and battery alone is not taken), and a note
    saying so. None: the cost options' error asks for a price."""
    from edgeprof.decision.presets import matching_presets

    run = store.runs([store.resolve_run_id(device_run)])
    device = store.device(run[0]["device_id"]) if run else None
    found = [p for p in matching_presets(device) if {"label", "cpu_model"} & set(p.match)] if (
        device
    ) else []  # fmt: skip
    if not found:
        return None, None
    preset = found[0]
    return preset.id, (
        f"priced as preset {preset.id} ({preset.name}): it describes the device the run was "
        "profiled on (set --device-preset or --device-price to price another)"
    )


def _check_types(checks: frozenset[str]) -> None:
    from edgeprof.errors import UsageError
    from edgeprof.grading.assertions import ASSERTION_TYPES, JUDGED_TYPES

    unknown = sorted(c for c in checks if c not in ASSERTION_TYPES or c in JUDGED_TYPES)
    if unknown:
        raise UsageError(
            f"`format_checks` takes deterministic check types; not one: {', '.join(unknown)}"
        )


def render(report: RouteReport) -> None:
    """The header, the policies' table and the protocol on stdout; notes on stderr."""
    from edgeprof.report.formatting import format_count

    c = report.costs
    out.print(
        f"[bold]{report.device_name}[/] then [bold]{report.cloud_name}[/] on suite "
        f"{report.suite}: {report.n_prompts} prompts answered and graded on both sides; "
        f"{format_count(report.requests_per_day)} requests/day, {c.deployment} device",
        highlight=False,
    )
    out.print(policy_table(report))
    out.print(report.protocol_text, style="dim", highlight=False)
    out.print(
        "escalation: share of requests the cloud answers; a cascade's escalated requests are "
        "answered on the device first (its energy and capacity) and take both times; J/request: "
        "the device's net energy per request of the workload, + cloud ? where the cloud answers "
        "some (no API reports its energy)",
        style="dim",
        highlight=False,
    )
    for line in report.warnings:
        err.print(f"[bold red]warning:[/] {line}", highlight=False)
    for line in report.notes:
        err.print(f"note: {line}", highlight=False)


def policy_table(report: RouteReport) -> Table:
    from rich.table import Table

    from edgeprof.report.formatting import DASH, format_usd, seconds

    table = Table(title=f"policies at {report.requests_per_day:,.0f} requests/day",
                  title_justify="left")  # fmt: skip
    heads = ("policy", "rule", "pass rate [95%]", "escalation", "$/day", "J/request",
             "p50 / p95 latency", "gap recovered")  # fmt: skip
    for name in heads:
        table.add_column(name, justify="left" if name in ("policy", "rule") else "right")
    for p in report.policies:
        r = p.pass_rate
        gap = DASH if p.gap_recovered is None else f"{p.gap_recovered:.0%}"
        table.add_row(
            p.label, _rule(p), f"{r.rate:.0%} [{r.low:.0%}–{r.high:.0%}]",
            f"{p.escalation_rate:.0%}", format_usd(p.cost.usd_per_day),
            _joules(p),
            f"{seconds(p.latency_p50_s)} / {seconds(p.latency_p95_s)}", gap,
        )  # fmt: skip
    return table


def _joules(p: PolicyResult) -> str:
    """The device's net J a request; `+ cloud ?` where the cloud answers some (unknown)."""
    device = f"{p.cost.energy_net_j_per_request:.3g}"
    return f"{device} + cloud ?" if p.escalation_rate > 0 else device


def _rule(p: PolicyResult) -> str:
    if not p.held_out:
        return p.rule
    folds = sorted(set(p.fold_rules))
    varies = "" if folds == [p.rule] else f"; folds: {len(folds)} rules"
    return f"{p.rule} (held out{varies})"
