"""`edgeprof compare`: is this workload cheaper on the device or in the cloud, and above what
volume? Tables, one-line verdicts, a sensitivity table, JSON and a plot."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from edgeprof.cli.app import app, err, out
from edgeprof.cli.floor_options import (
    CACHE_CLOUD,
    CACHE_DEVICE,
    MAX_KLD,
    MAX_PPL_INCREASE,
    MIN_TOP1,
    SHARED_PREFIX,
    caching_lines,
    floor_lines,
)
from edgeprof.cli.hybrid_options import HYBRID, HYBRID_FOLDS, hybrid_table, print_curves
from edgeprof.cli.task_options import MIN_PASS_RATE, SUITE, suite_name, task_table
from edgeprof.report.formatting import format_count, format_usd

if TYPE_CHECKING:
    from rich.table import Table

    from edgeprof.decision.compare import Comparison


@app.command("compare")
def compare_command(
    db: Path | None = typer.Argument(
        None, help="Profile database (default: $EDGEPROF_DB or profiles/edgeprof.db)."
    ),
    run: list[str] | None = typer.Option(
        None, "--run", help="Run id or unique prefix (repeatable; default: every complete run)."
    ),
    requests_per_day: float = typer.Option(..., "--requests-per-day", help="Requests per day."),
    input_tokens: float | None = typer.Option(
        None, "--input-tokens", help="Input tokens per request (default: the runs' mean)."
    ),
    output_tokens: float | None = typer.Option(
        None, "--output-tokens", help="Output tokens per request (default: the runs' mean)."
    ),
    device_price: float | None = typer.Option(
        None, "--device-price", help="Device price in USD (not needed with --owned)."
    ),
    lifetime_years: float | None = typer.Option(
        None, "--lifetime-years", help="Years the device serves (not needed with --owned)."
    ),
    electricity: float = typer.Option(..., "--electricity", help="Electricity, USD per kWh."),
    utilization: float = typer.Option(
        1.0, "--utilization", help="Share of the day the device may spend serving (0-1]."
    ),
    deployment: str = typer.Option(
        "dedicated",
        "--deployment",
        help="dedicated (bought for this: capital + idle draw all day), owned (on anyway: "
        "marginal energy only) or user-device (the users' hardware: the operator pays nothing).",
    ),
    owned: bool = typer.Option(False, "--owned", help="Short for --deployment owned."),
    battery_wh: float | None = typer.Option(
        None, "--battery-wh", help="user-device: the battery capacity, for % per 100 requests."
    ),
    cloud: list[str] | None = typer.Option(
        None, "--cloud", help="Cloud model to price, e.g. openai:gpt-4o-mini (repeatable)."
    ),
    price_in: float | None = typer.Option(
        None, "--price-in", help="An explicit cloud target: input USD per 1M tokens."
    ),
    price_out: float | None = typer.Option(
        None, "--price-out", help="An explicit cloud target: output USD per 1M tokens."
    ),
    plot: Path | None = typer.Option(None, "--plot", help="Write the cost curves to this PNG."),
    html: Path | None = typer.Option(
        None, "--html", help="Write the HTML report of these runs, with the verdicts."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print every figure as JSON."),
    max_kld: float | None = MAX_KLD,
    max_ppl_increase: float | None = MAX_PPL_INCREASE,
    min_top1: float | None = MIN_TOP1,
    shared_prefix_tokens: float = SHARED_PREFIX,
    device_cache: bool = CACHE_DEVICE,
    cloud_cache: bool = CACHE_CLOUD,
    max_ttft_s: float | None = typer.Option(
        None,
        "--max-ttft-s",
        help="Where a target was profiled at several --concurrency levels: the p95 TTFT its "
        "capacity must meet (default 2 s).",
    ),
    min_pass_rate: float | None = MIN_PASS_RATE,
    prompts: str | None = SUITE,
    hybrid: bool = HYBRID,
    hybrid_folds: int = HYBRID_FOLDS,
) -> None:
    """Price each on-device run against each cloud target: break-even volume and payback."""
    from edgeprof.decision.compare import compare, to_dict
    from edgeprof.decision.economics import DeviceCosts, parse_deployment
    from edgeprof.errors import ProfileDBError, UsageError
    from edgeprof.quality.floor import QualityFloor
    from edgeprof.report.plots import plot_costs
    from edgeprof.store.db import Store, default_db_path

    path = db or default_db_path()
    if not path.exists():
        raise ProfileDBError(f"{path} does not exist; create it with `edgeprof run --db {path}`")
    mode = parse_deployment("owned" if owned else deployment)
    if mode == "dedicated" and (device_price is None or lifetime_years is None):
        raise UsageError(
            "give --device-price USD and --lifetime-years Y, or --deployment owned for a "
            "device you already have (electricity only)"
        )
    # An owned device's price and life are sunk; they only label the output.
    device_price = 0.0 if device_price is None else device_price
    lifetime_years = 3.0 if lifetime_years is None else lifetime_years
    costs = DeviceCosts(
        device_price, lifetime_years, electricity, utilization, mode, battery_wh=battery_wh
    )
    floor = QualityFloor(max_kld, max_ppl_increase, min_top1)
    with Store(path) as store:
        result = compare(
            store,
            costs,
            requests_per_day=requests_per_day,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            run_ids=run or None,
            cloud_models=cloud or (),
            price_in_usd_per_m=price_in,
            price_out_usd_per_m=price_out,
            floor=floor,
            shared_prefix_tokens=shared_prefix_tokens,
            cache_device=device_cache,
            cache_cloud=cloud_cache,
            max_ttft_s=max_ttft_s,
        )
        from edgeprof.decision.task_quality import TaskFloor, apply_task_floor, report_dict

        result, task = apply_task_floor(
            store, result, TaskFloor(min_pass_rate, suite_name(prompts))
        )
        hybrids = _hybrids(store, task, costs, requests_per_day, min_pass_rate, hybrid_folds,
                           enabled=hybrid)  # fmt: skip
        if html is not None:
            from edgeprof.report.decision_section import DecisionView
            from edgeprof.report.html import write_html_report

            run_ids = [store.resolve_run_id(r) for r in run] if run else None
            view = DecisionView(result, max_ttft_s=max_ttft_s, hybrids=hybrids,
                                min_pass_rate=min_pass_rate)  # fmt: skip
            write_html_report(store, html, run_ids, compare=view)
            err.print(f"wrote {html}")
    if plot is not None:
        plot_costs(result, plot)
        err.print(f"wrote {plot}")
    if as_json:
        from edgeprof.decision.hybrid import hybrid_dict

        body = {**to_dict(result), "task_quality": report_dict(task)}
        if hybrid:
            body["hybrids"] = [hybrid_dict(h) for h in hybrids]
        print(json.dumps(body, indent=2))
        return
    for sentence in [*task.sentences, *task.closing]:  # first: it decides whether price matters
        out.print(f"[bold]task quality:[/] {sentence}", highlight=False)
    table = task_table(task)
    if table is not None:
        out.print(table)
    _render(result)
    _render_hybrids(hybrids, min_pass_rate)


def _hybrids(
    store: Any, task: Any, costs: Any, requests_per_day: float, min_pass_rate: float | None,
    folds: int, *, enabled: bool = True,
) -> list[Any]:  # fmt: skip
    """`--hybrid`: each device run × graded cloud run's best cascade (decision/hybrid.py);
    a note on stderr for each pair that cannot be replayed."""
    if not enabled:
        return []
    from edgeprof.decision.hybrid import task_hybrids
    from edgeprof.routing.replay import RouteOptions

    names = {t.name: t.name.split(" [")[0] for t in task.targets}
    options = RouteOptions(folds=folds, min_pass_rate=min_pass_rate)
    found, notes = task_hybrids(store, task, costs, requests_per_day, options, names)
    for line in notes:
        err.print(f"note: {line}", highlight=False)
    return found


def _render_hybrids(hybrids: Sequence[Any], min_pass_rate: float | None) -> None:
    """The cascades after the comparison: their sentences, their table, their curves."""
    from edgeprof.decision.hybrid import hybrid_sentence

    for h in hybrids:
        out.print(f"[bold]hybrid:[/] {hybrid_sentence(h, min_pass_rate)}", highlight=False)
    table = hybrid_table(hybrids)
    if table is not None:
        out.print(table)
    print_curves(hybrids)


def _render(c: Comparison) -> None:
    from edgeprof.analysis.comparability import comparability_notes
    from edgeprof.analysis.summary import summarize
    from edgeprof.cli.render import print_warnings
    from edgeprof.store.db import Store

    render_tables(c)
    # The device targets' runs, read again: Comparison keeps figures, not what each ran with.
    with Store(c.db_path) as store:
        summaries = summarize(store, [d.run_id for d in c.devices]) if c.devices else []
    # Targets are named by their run id's first 8 characters (`backend:model [01J...]`).
    notes = comparability_notes(summaries, id_of=lambda run_id: run_id[:8])
    print_warnings(err, summaries)  # a device target that answered with noise
    for line in caching_lines(c):
        out.print(line, highlight=False)
    for note in [*c.notes, *notes, *floor_lines(c)]:
        err.print(f"note: {note}", highlight=False)


def render_tables(c: Comparison) -> None:
    """Inputs, targets, break-even, the pairs' verdicts and the sensitivity, on stdout."""
    for table in (_inputs_table(c), _targets_table(c), _break_even_table(c)):
        out.print(table)
    for p in c.pairs:
        out.print(f"[bold]{p.device}[/] vs [bold]{p.cloud}[/]: {p.result.verdict}", highlight=False)
    out.print(_sensitivity_table(c))
    out.print(
        "✗: beyond the device's capacity (one device cannot reach that volume); "
        "none: electricity alone costs more than the cloud",
        style="dim",
        highlight=False,
    )


def _inputs_table(c: Comparison) -> Table:
    from rich.table import Table

    inputs = Table(title="Inputs", title_justify="left")
    for col in ("target", "input", "value", "unit", "kind", "source"):
        inputs.add_column(col, overflow="fold")
    rows = [("(all)", f) for f in c.assumptions]
    rows += [(d.name, f) for d in c.devices for f in d.inputs]
    rows += [(t.name, f) for t in c.clouds for f in t.inputs]
    for target, f in rows:
        value = f"{f.value:.4g}" if isinstance(f.value, float) else str(f.value)
        inputs.add_row(target, f.name, value, f.unit, f.provenance, f.source)
    return inputs


def _targets_table(c: Comparison) -> Table:
    from rich.table import Table

    w = c.workload
    targets = Table(
        title=f"Targets at {format_count(w.requests_per_day)} requests/day, "
        f"{w.input_tokens:,.0f} in / {w.output_tokens:,.0f} out tokens each",
        title_justify="left",
    )
    for col in (
        "target",
        "$/request",
        "$/1M out tokens",
        "busy s/request",
        "capacity req/day",
        "$/day [95% CI]",
        "quality vs reference",
    ):
        targets.add_column(col, justify="left" if col in ("target", "quality vs reference")
                           else "right")  # fmt: skip
    device_pairs = {p.device: p for p in c.pairs}
    quality = {d.name: c.floor.check(d.quality)[1] for d in c.devices}
    for name, pair in device_pairs.items():
        r, ci = pair.result, pair.device_cost_per_day_ci_usd
        day = format_usd(r.device_cost_per_day_usd)
        targets.add_row(
            f"device: {name}",
            format_usd(r.device_cost_per_request_usd),
            format_usd(r.device_cost_per_m_output_tokens_usd),
            f"{r.device_busy_s_per_request:.3g}",
            format_count(r.device_capacity_requests_per_day),
            f"{day} [{format_usd(ci[0])}–{format_usd(ci[1])}]" if ci else day,
            quality[name],
        )
    cloud_rows = {p.cloud: p.result for p in c.pairs}
    for name, r in cloud_rows.items():
        targets.add_row(
            f"cloud: {name}",
            format_usd(r.cloud_cost_per_request_usd),
            format_usd(r.cloud_cost_per_m_output_tokens_usd),
            "-",
            "-",
            format_usd(r.cloud_cost_per_day_usd),
            "not measured" + (" (taken to meet the floor)" if c.floor.active else ""),
        )
    return targets


def _break_even_table(c: Comparison) -> Table:
    from rich.table import Table

    verdicts = Table(title="Break-even", title_justify="left")
    for col in ("device", "cloud", "break-even req/day", "payback months", "saving $/day"):
        verdicts.add_column(
            col, justify="right" if "req" in col or "$" in col or "months" in col else "left"
        )
    for p in c.pairs:
        r = p.result
        verdicts.add_row(
            p.device,
            p.cloud,
            _be_cell(r.break_even_requests_per_day, r.break_even_status),
            "-" if r.payback_months is None else f"{r.payback_months:,.1f}",
            format_usd(r.saving_usd_per_day),
        )
    return verdicts


def _sensitivity_table(c: Comparison) -> Table:
    from rich.table import Table

    sens = Table(title="Sensitivity: break-even requests/day (± 50%)", title_justify="left")
    for col in ("device vs cloud", "parameter", "−50%", "as given", "+50%"):
        sens.add_column(col, justify="right" if "%" in col or col == "as given" else "left")
    for p in c.pairs:
        by = {
            (s.parameter, s.factor): (s.break_even_requests_per_day, s.break_even_status)
            for s in p.sensitivity
        }
        base = (p.result.break_even_requests_per_day, p.result.break_even_status)
        for param in ("electricity_usd_per_kwh", "lifetime_years", "cloud_price"):
            cells = [by[param, 0.5], base, by[param, 1.5]]
            sens.add_row(f"{p.device} vs {p.cloud}", param, *(_be_cell(*v) for v in cells))
    return sens


def _be_cell(value: float | None, status: str) -> str:
    if value is None:
        return "none"
    return format_count(value) + ("" if status == "ok" else " ✗")
