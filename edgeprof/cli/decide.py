"""`edgeprof decide`: profile, price and compare in one command; the verdict first."""

from __future__ import annotations

import json
from collections.abc import Callable
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
from edgeprof.cli.prompt_options import CHAT_TEMPLATE_HELP, RAW_HELP, prompt_settings
from edgeprof.cli.task_options import MIN_PASS_RATE, task_table
from edgeprof.decision.verdict import SIDES
from edgeprof.errors import UsageError
from edgeprof.report.formatting import figure_value, format_count, format_usd
from edgeprof.samplers import sampler_sources

if TYPE_CHECKING:
    from rich.table import Table

    from edgeprof.decision.compare import Figure
    from edgeprof.decision.orchestrate import Decision, StepEvent


@app.command("decide")
def decide_command(
    requests_per_day: float = typer.Option(
        ..., "--requests-per-day", help="The feature's volume: requests per day."
    ),
    model: str | None = typer.Option(
        None, "--model", help="A GGUF file or a name under models/ (default: the demo model)."
    ),
    prompts: str | None = typer.Option(
        None,
        "--prompts",
        help="A bundled suite (default, tasks) or a file (JSONL, promptfooconfig.yaml, OpenAI "
        "evals JSONL); with checks, answers are graded and --min-pass-rate applies.",
    ),
    deployment: str = typer.Option(
        "dedicated",
        "--deployment",
        help="dedicated (bought for this feature: capital + idle draw all day), owned (on "
        "anyway: marginal energy only) or user-device (the users' own hardware).",
    ),
    device: str | None = typer.Option(
        None, "--device", help="A device preset for price, lifetime and power (edgeprof devices)."
    ),
    device_price: float | None = typer.Option(None, "--device-price", help="Device price, USD."),
    lifetime_years: float | None = typer.Option(
        None, "--lifetime-years", help="Years the device serves (default: the preset's, or 3)."
    ),
    electricity: float | None = typer.Option(
        None, "--electricity", help="Electricity, USD per kWh (default 0.17)."
    ),
    utilization: float | None = typer.Option(
        None, "--utilization", help="Share of the day a device may spend serving (0-1]."
    ),
    input_tokens: float | None = typer.Option(
        None, "--input-tokens", help="Input tokens a request (default: as measured)."
    ),
    output_tokens: float | None = typer.Option(
        None, "--output-tokens", help="Output tokens a request (default: as measured)."
    ),
    owned_devices: int = typer.Option(
        1, "--owned-devices", help="owned: how many devices you already have."
    ),
    battery_wh: float | None = typer.Option(
        None, "--battery-wh", help="user-device: battery capacity (default: preset or sysfs)."
    ),
    cloud: list[str] | None = typer.Option(
        None, "--cloud", help="Cloud model to compare, provider:model (repeatable)."
    ),
    price_in: float | None = typer.Option(
        None, "--price-in", help="An explicit cloud price: input USD per 1M tokens."
    ),
    price_out: float | None = typer.Option(
        None, "--price-out", help="An explicit cloud price: output USD per 1M tokens."
    ),
    base_url: str | None = typer.Option(
        None, "--base-url", help="Profile the --cloud models live at this endpoint."
    ),
    api_key_env: str | None = typer.Option(
        None, "--api-key-env", help="The environment variable holding the endpoint's key."
    ),
    device_target: list[str] | None = typer.Option(
        None,
        "--device-target",
        metavar="BACKEND:MODEL[@URL]",
        help="A model server on this machine profiled as a device target (repeatable): "
        "ollama:llama3.2:1b (Ollama at 127.0.0.1:11434), openai:MODEL@http://127.0.0.1:PORT/v1 "
        "(llama-server, LM Studio, vLLM; default 127.0.0.1:8080). Without --model it stands "
        "instead of llama.cpp and ONNX Runtime, with --model beside them.",
    ),
    on_device: bool = typer.Option(
        False,
        "--on-device",
        help="The --device-target servers run on this machine though their URL is not loopback.",
    ),
    max_ttft_s: float | None = typer.Option(
        None,
        "--max-ttft-s",
        help="Latency requirement: time to first token at p95, seconds (the same p95 picks the "
        "capacity from a throughput curve).",
    ),
    max_kld: float | None = MAX_KLD,
    max_ppl_increase: float | None = MAX_PPL_INCREASE,
    min_top1: float | None = MIN_TOP1,
    shared_prefix_tokens: float = SHARED_PREFIX,
    device_cache: bool = CACHE_DEVICE,
    cloud_cache: bool = CACHE_CLOUD,
    onnx: bool = typer.Option(
        True, "--onnx/--no-onnx", help="Also profile ONNX Runtime on an int4 export."
    ),
    fresh: bool = typer.Option(False, "--fresh", help="Profile again; reuse no earlier run."),
    db: Path | None = typer.Option(
        None, "--db", help="Profile database (default: $EDGEPROF_DB or profiles/edgeprof.db)."
    ),
    html: Path | None = typer.Option(None, "--html", help="Write the report, verdict on top."),
    as_json: bool = typer.Option(
        False, "--json", help="Print every figure, with its provenance, as JSON."
    ),
    max_tokens: int = typer.Option(128, "--max-tokens", help="Tokens generated per request."),
    repetitions: int = typer.Option(3, "--repetitions", help="Measured passes over the suite."),
    warmup: int = typer.Option(1, "--warmup", help="Warm-up requests, recorded, not counted."),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads (default: all)."),
    ctx: int = typer.Option(4096, "--ctx", help="Context size in tokens, per request."),
    concurrency: str = typer.Option(
        "1",
        "--concurrency",
        help="llama.cpp at each level, e.g. 1,2,4,8 (requests decoded together): the "
        "throughput curve; capacity is the highest level whose p95 TTFT meets --max-ttft-s "
        "(default 2 s).",
    ),
    sensors: str | None = typer.Option(
        None,
        "--sensors",
        help=f"Comma-separated power sources: {', '.join(sampler_sources('power'))}.",
    ),
    tdp_w: float | None = typer.Option(
        None, "--tdp-w", help="CPU TDP for the power estimate where no sensor reads."
    ),
    idle_seconds: float = typer.Option(
        3.0, "--idle-seconds", help="Idle baseline before each model load (charged as idle draw)."
    ),
    min_pass_rate: float | None = MIN_PASS_RATE,
    chat_template: str | None = typer.Option(
        None, "--chat-template", metavar="NAME|FILE", help=CHAT_TEMPLATE_HELP
    ),
    raw: bool = typer.Option(False, "--raw", help=RAW_HELP),
    hybrid: bool = HYBRID,
    hybrid_folds: int = HYBRID_FOLDS,
    plot: Path | None = typer.Option(
        None,
        "--plot",
        help="With --hybrid: write $/day against pass rate for every policy and threshold to "
        "this PNG (one file per device × cloud pair after the first: NAME-2.png, ...).",
    ),
) -> None:
    """Should this feature run on the device or in the cloud? Profiles llama.cpp and ONNX
    Runtime here (or a local server: --device-target), prices cloud models at the measured
    token counts, and says which wins."""
    from edgeprof.cli.run import parse_levels
    from edgeprof.decision.orchestrate import DecideConfig, decide
    from edgeprof.quality.floor import QualityFloor

    config = DecideConfig(
        requests_per_day=requests_per_day, model=model, prompts=prompts, deployment=deployment,
        device=device, device_price_usd=device_price, lifetime_years=lifetime_years,
        electricity_usd_per_kwh=electricity, utilization=utilization, battery_wh=battery_wh,
        input_tokens=input_tokens, output_tokens=output_tokens, owned_devices=owned_devices,
        clouds=cloud or (), price_in_usd_per_m=price_in, price_out_usd_per_m=price_out,
        base_url=base_url, api_key_env=api_key_env, max_ttft_s=max_ttft_s, onnx=onnx,
        floor=QualityFloor(max_kld, max_ppl_increase, min_top1),
        shared_prefix_tokens=shared_prefix_tokens, cache_device=device_cache,
        cache_cloud=cloud_cache,
        fresh=fresh, db=db, max_tokens=max_tokens, repetitions=repetitions, warmup=warmup,
        threads=threads, ctx=ctx, concurrency=tuple(parse_levels(concurrency)),
        sensors=[s.strip() for s in sensors.split(",") if s.strip()] if sensors else None,
        tdp_w=tdp_w, idle_seconds=idle_seconds, min_pass_rate=min_pass_rate,
        chat_template=chat_template, raw=raw, device_targets=device_target or (),
        on_device=on_device, hybrid=hybrid, hybrid_folds=hybrid_folds,
    )  # fmt: skip
    if plot is not None and not hybrid:
        raise UsageError("--plot draws the hybrid policies: add --hybrid (or use --html FILE)")
    prompt_settings("llamacpp", chat_template, raw, {})  # refused here, before any profiling
    # said when the first step starts (every input checked by then), above the step list
    steps = _Steps(intro=None if as_json else lambda: _announce_format(config))
    try:
        with steps:
            decision = decide(config, on_step=steps.update)
    except KeyboardInterrupt:
        kept = ", ".join(steps.finished) or "none"
        err.print(f"edgeprof: interrupted; finished runs kept: {kept}", highlight=False)
        raise typer.Exit(130) from None
    if html is not None:
        _write_html(decision, html)
    if plot is not None:
        _write_plots(decision, plot, min_pass_rate)
    if as_json:
        print(json.dumps(decision.to_dict(), indent=2, default=str))
        return
    _render(decision)


def _announce_format(config: Any) -> None:
    """The prompt format the device targets will get, and a loud line for a maybe-base model."""
    from rich.markup import escape

    from edgeprof.cli.prompt_options import format_warning
    from edgeprof.errors import EdgeprofError

    settings = {"chat_template": config.chat_template, "raw": config.raw}
    try:
        described, warning = format_warning(config.model, settings)
    except (EdgeprofError, ValueError):
        return  # a bad --model is refused, with its fix, by decide itself
    err.print(f"prompt format: {escape(described)}", highlight=False)
    if warning:
        err.print(f"[bold red]warning:[/] {escape(warning)}", highlight=False)


def _write_html(decision: Decision, path: Path) -> None:
    from edgeprof.report.decision_section import DecisionView
    from edgeprof.report.html import write_html_report
    from edgeprof.store.db import Store

    c = decision.comparison
    max_ttft = next((x.value for x in decision.inputs if x.name == "max_ttft_s"), None)
    view = DecisionView(
        c,
        verdict=decision.verdict,
        names=_names(decision),
        rows=decision.rows,
        max_ttft_s=None if max_ttft is None else float(max_ttft),
        notes=decision.notes,
        task_quality=decision.task_quality,
        hybrids=decision.hybrids,
        min_pass_rate=decision.task_quality.floor.min_pass_rate if decision.task_quality else None,
    )
    with Store(Path(c.db_path)) as store:
        write_html_report(store, path, [r.run_id for r in decision.runs], compare=view)
    err.print(f"wrote {path}")


def _write_plots(decision: Decision, path: Path, min_pass_rate: float | None) -> None:
    from edgeprof.report.hybrid_chart import frontier_chart, plot_frontier

    if not decision.hybrids:
        err.print("no hybrid pair was evaluated (see the notes): no plot written")
    for i, h in enumerate(decision.hybrids):
        target = path if i == 0 else path.with_name(f"{path.stem}-{i + 1}{path.suffix}")
        plot_frontier(frontier_chart(h.report, min_pass_rate), target)
        err.print(f"wrote {target} ({h.name})")


def _render(decision: Decision) -> None:
    from rich.markup import escape
    from rich.panel import Panel

    out.print(Panel(decision.verdict, title="verdict", title_align="left"), highlight=False)
    for line in decision.warnings:
        err.print(f"[bold red]warning:[/] {escape(line)}", highlight=False)
    for run in decision.runs:
        how = "reused" if run.reused else "profiled"
        out.print(f"{run.target}: {how}: {run.description}", style="dim", highlight=False)
    task = task_table(decision.task_quality) if decision.task_quality else None
    hybrids = hybrid_table(decision.hybrids)
    tables = (_targets_table(decision), task, hybrids, _pairs_table(decision),
              _inputs_table(decision))  # fmt: skip
    for table in tables:
        if table is not None:
            out.print(table)
    print_curves(decision.hybrids)
    out.print(
        "every input above, with its provenance: --json; the report with charts: --html FILE",
        style="dim",
    )
    for line in caching_lines(decision.comparison):
        out.print(line, highlight=False)
    for note in [*decision.notes, *_comparability(decision), *floor_lines(decision.comparison)]:
        err.print(f"note: {note}", highlight=False)
    # the last word is the answer: long tables above must not bury it
    volume = format_count(decision.comparison.workload.requests_per_day)
    answer = (
        f"{decision.winner} is the cheapest option at {volume} requests/day"
        if decision.winner != "none"
        else f"no target meets the latency requirement at {volume} requests/day"
    )
    if any(w.startswith(f"{decision.winner}:") and "degenerate" in w for w in decision.warnings):
        answer += " [bold red](but its answers look degenerate: see the warning)[/]"
    out.print(
        f"[bold]verdict:[/] {answer} ({decision.deployment}); the paragraph at the top says "
        "by how much, and how sure.",
        highlight=False,
    )


def _comparability(decision: Decision) -> list[str]:
    """What differs between the device runs the verdict sets side by side (threads, build,
    provider, offload), as `report` and `compare` say it."""
    from edgeprof.analysis.comparability import comparability_notes
    from edgeprof.analysis.summary import summarize
    from edgeprof.store.db import Store

    ids = [d.run_id for d in decision.comparison.devices]
    if len(ids) < 2:
        return []
    with Store(decision.comparison.db_path) as store:
        summaries = summarize(store, ids)
    names = _names(decision)
    by_run = {d.run_id: names.get(d.name, d.name) for d in decision.comparison.devices}
    return comparability_notes(summaries, id_of=lambda run_id: by_run.get(run_id, run_id[:8]))


def _names(decision: Decision) -> dict[str, str]:
    from edgeprof.decision.verdict import target_names

    return target_names(decision.comparison, decision.runs)


def _figure_value(f: Figure) -> str:
    return figure_value(f.value, f.unit)  # the HTML report's inputs table says it the same way


def _seconds(v: float | None) -> str:
    return "–" if v is None else f"{v:.2g} s"


def _targets_table(decision: Decision) -> Table:
    from rich.table import Table

    c, names = decision.comparison, _names(decision)
    user = decision.deployment == "user-device"
    table = Table(
        title=f"Targets at {format_count(c.workload.requests_per_day)} requests/day "
        f"({decision.deployment})",
        title_justify="left",
    )
    cost_head = "user J/req" if user else "$/day"
    table.add_column("target", overflow="fold")
    for col in (cost_head, "TTFT p50", "TTFT p99", "answer p50", "tok/s"):
        table.add_column(col, justify="right", no_wrap=True)
    seen: set[str] = set()
    for side in SIDES:
        for row in decision.rows:
            f = row.side(side)
            if f.key in seen:
                continue
            seen.add(f.key)
            if side == "device" and user:
                cost = f"{row.device_energy_net_j_per_request:,.3g}"
            else:
                cost = format_usd(f.cost_per_day_usd)
            table.add_row(
                f"{side}: {names.get(f.key, f.key)}",
                cost,
                _seconds(f.ttft_p50_s),
                _seconds(f.ttft_p99_s),
                _seconds(f.e2e_p50_s),
                "–" if f.decode_tps is None else f"{f.decode_tps:,.0f}",
            )
    return table


def _pairs_table(decision: Decision) -> Table:
    from rich.table import Table

    names = _names(decision)
    table = Table(
        title="Break-even (requests/day), device against each cloud", title_justify="left"
    )
    table.add_column("device", overflow="fold")
    table.add_column("cloud", overflow="fold")
    for col in ("break-even", "payback mo", "capacity", "devices"):
        table.add_column(col, justify="right", no_wrap=True)
    for row in decision.rows:
        be, status = row.break_even_requests_per_day, row.break_even_status
        pb = row.payback_months
        table.add_row(
            names.get(row.device, row.device),
            names.get(row.cloud, row.cloud),
            "none" if be is None else format_count(be) + ("" if status == "ok" else " ✗"),
            "–" if pb is None else f"{pb:,.1f}",
            format_count(row.device_capacity_requests_per_day),
            str(row.devices_needed),
        )
    return table


def _inputs_table(decision: Decision) -> Table:
    from rich.table import Table

    table = Table(title="Inputs (measured, estimated or assumed)", title_justify="left")
    for col in ("input", "value", "kind", "source"):
        table.add_column(col, overflow="fold")
    for f in decision.inputs:
        table.add_row(f.name, _figure_value(f), f.provenance, f.source)
    return table


_LABELS = {
    "probe": "probe this device",
    "convert": "int4 export for ONNX Runtime",
    "verify": "verify the export against llama.cpp",
    "compare": "price and compare",
    "quantize": "quantize (llama.cpp)",
    "quality": "score quality against the reference",
}


class _Steps:
    """A rich step list on stderr: one line per step, a bar while it counts."""

    def __init__(self, intro: Callable[[], None] | None = None) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )
        from rich.table import Column

        self.intro = intro  # lines to print above the list as the first step starts
        self.progress = Progress(
            TextColumn("{task.fields[mark]}"),
            TextColumn("{task.description}", table_column=Column(no_wrap=True, min_width=30)),
            BarColumn(bar_width=20),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn(
                "{task.fields[detail]}",
                style="dim",
                table_column=Column(no_wrap=True, overflow="ellipsis"),
            ),
            console=err,
        )
        self.tasks: dict[str, Any] = {}
        self.finished: list[str] = []

    def __enter__(self) -> _Steps:
        return self  # the list appears with the first step: bad input fails before any of it

    def __exit__(self, *exc: object) -> None:
        if self.progress.live.is_started:
            self.progress.stop()

    def update(self, e: StepEvent) -> None:
        if not self.progress.live.is_started:
            if self.intro is not None:
                self.intro()
            self.progress.start()
        task = self.tasks.get(e.step)
        if task is None:
            label = _LABELS.get(e.step, f"profile {e.step}")
            task = self.progress.add_task(label, total=None, mark="…", detail="")
            self.tasks[e.step] = task
        fields: dict[str, Any] = {}
        if e.total:
            fields.update(total=e.total, completed=e.done)
        if e.state in ("done", "reused", "skipped"):
            mark = {"done": "✓", "reused": "↺", "skipped": "–"}[e.state]
            total = fields.get("total") or self._total(task)
            fields.update(mark=mark, total=total, completed=total)
            if e.run_id:
                self.finished.append(e.run_id)
        if e.detail and e.state != "progress":
            fields["detail"] = _short(e.detail)
        self.progress.update(task, **fields)

    def _total(self, task: Any) -> float:
        return next((t.total for t in self.progress.tasks if t.id == task and t.total), 1.0)


def _short(text: str, limit: int = 90) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
