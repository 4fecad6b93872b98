"""`edgeprof sweep`: quantize, profile and score every variant; one table and a Pareto chart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from edgeprof.cli.app import app, err, out
from edgeprof.cli.prompt_options import CHAT_TEMPLATE_HELP, RAW_HELP, prompt_settings

if TYPE_CHECKING:
    from edgeprof.quality.sweep import SweepResult


@app.command("sweep")
def sweep_command(
    model: str = typer.Argument("demo", help="A .gguf file, a name under models/, or `demo`."),
    types: str = typer.Option(
        "Q8_0,Q6_K,Q4_K_M,Q4_0,Q3_K_M,Q2_K", "--types", help="llama.cpp quantization types."
    ),
    onnx: str = typer.Option("int4", "--onnx", help="ONNX exports too: int4,int8,fp32 or none."),
    out_dir: Path | None = typer.Option(
        None, "-o", "--out-dir", help="Where the quantized files go (default: models/NAME/)."
    ),
    plot: Path | None = typer.Option(
        None, "--plot", help="The Pareto chart's PNG (default: OUT_DIR/sweep.png)."
    ),
    text: Path | None = typer.Option(
        None, "--text", help="The quality text (default: the bundled evaluation text)."
    ),
    quality_ctx: int = typer.Option(512, "--quality-ctx", help="Tokens per perplexity chunk."),
    prompts: str | None = typer.Option(None, "--prompts", help="Prompt suite for the profiles."),
    max_tokens: int = typer.Option(64, "--max-tokens", help="Tokens generated per request."),
    repetitions: int = typer.Option(2, "--repetitions", help="Measured passes over the suite."),
    warmup: int = typer.Option(1, "--warmup", help="Warm-up requests, recorded, not counted."),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads (default: all)."),
    idle_seconds: float = typer.Option(
        1.0, "--idle-seconds", help="Idle baseline before each model load."
    ),
    tdp_w: float | None = typer.Option(
        None, "--tdp-w", help="CPU TDP for the power estimate where no sensor reads."
    ),
    db: Path | None = typer.Option(
        None, "--db", help="Profile database (default: $EDGEPROF_DB or profiles/edgeprof.db)."
    ),
    fresh: bool = typer.Option(False, "--fresh", help="Quantize, profile and score again."),
    chat_template: str | None = typer.Option(
        None, "--chat-template", metavar="NAME|FILE", help=CHAT_TEMPLATE_HELP
    ),
    raw: bool = typer.Option(False, "--raw", help=RAW_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print every row as JSON."),
) -> None:
    """Quantize a model to each type, profile every variant and score it against the F32
    reference: speed, J/token, memory and quality lost, in one table and one chart."""
    from edgeprof.cli.decide import _Steps
    from edgeprof.quality.sweep import SweepConfig, parse_onnx, sweep

    config = SweepConfig(
        model=model, types=tuple(t.strip() for t in types.split(",") if t.strip()),
        onnx=parse_onnx(onnx), out_dir=out_dir, db=db, text=text, quality_ctx=quality_ctx,
        prompts=prompts, max_tokens=max_tokens, repetitions=repetitions, warmup=warmup,
        threads=threads, idle_seconds=idle_seconds, tdp_w=tdp_w, fresh=fresh,
        chat_template=chat_template, raw=raw,
    )  # fmt: skip
    prompt_settings("llamacpp", chat_template, raw, {})  # a bad one fails before quantizing
    steps = _Steps()
    try:
        with steps:
            result = sweep(config, on_step=steps.update)
    except KeyboardInterrupt:
        err.print(
            "edgeprof: interrupted; the files, runs and scores finished so far are kept and "
            "the next sweep reuses them",
            highlight=False,
        )
        raise typer.Exit(130) from None
    chart = _chart(result, plot or (config.out_dir or _default_dir(result)) / "sweep.png")
    if as_json:
        print(json.dumps({**result.to_dict(), "chart": str(chart) if chart else None}, indent=2))
        return
    for table in sweep_tables(result, out.width):
        out.print(table)
    out.print(
        f"{result.reference_note}; quality on {result.text_name}; profiles in {result.db_path}",
        highlight=False,
    )
    if chart:
        out.print(f"chart: {chart}", highlight=False)
    for note in result.notes:
        err.print(f"note: {note}", highlight=False)


def _default_dir(result: SweepResult) -> Path:
    ref = Path(result.rows[0].path) if result.rows else Path(".")
    return ref.parent


def _chart(result: SweepResult, path: Path) -> Path | None:
    from edgeprof.report.plots import QualityPoint, plot_quality

    points = [
        QualityPoint(
            r.name,
            r.kld_mean,
            r.j_per_output_token,
            r.decode_tps,
            r.size_bytes,
            (r.energy_method or "") != "measured",
        )
        for r in result.rows
        if r.kld_mean is not None
    ]
    return plot_quality(points, path) if points else None


def sweep_tables(result: SweepResult, width: int) -> list[Any]:
    """One table when the terminal is wide enough; else cost and quality apart, each with the
    variant's name first, so nothing is cut to an ellipsis."""
    from rich.table import Table

    from edgeprof.report.formatting import DASH, mib

    def num(v: float | None, fmt: str) -> str:
        return DASH if v is None else format(v, fmt)

    cost: dict[str, Any] = {
        "size MiB": lambda r: mib(r.size_bytes),
        "bits/w": lambda r: num(r.bits_per_weight, ".2f"),
        "decode tok/s": lambda r: num(r.decode_tps, ".1f"),
        "prefill tok/s": lambda r: num(r.prefill_tps, ".0f"),
        "J/token": lambda r: (
            num(r.j_per_output_token, ".3f")
            + ("" if r.energy_method == "measured" or r.j_per_output_token is None else " est.")
        ),
        "peak RSS MiB": lambda r: mib(r.peak_rss_bytes),
    }
    quality: dict[str, Any] = {
        "PPL": lambda r: num(r.ppl, ".3f"),
        "Δ PPL": lambda r: "reference" if r.is_reference else num(r.delta_ppl_pct, "+.2f") + " %",
        "KLD mean": lambda r: num(r.kld_mean, ".5f"),
        "KLD p99": lambda r: num(r.kld_p99, ".4f"),
        "top-1": lambda r: DASH if r.top1_agreement is None else f"{r.top1_agreement:.1%}",
        "": lambda r: "reused" if r.run_reused and (r.quality_reused or r.is_reference) else "",
    }
    groups = [{**cost, **quality}] if width >= 150 else [cost, quality]
    titles = ["sweep: every variant, profiled and scored"] if len(groups) == 1 else [
        "sweep: speed, energy and memory", "sweep: quality against the reference"]  # fmt: skip
    tables = []
    for title, columns in zip(titles, groups, strict=True):
        table = Table(title=title, title_justify="left")
        table.add_column("variant")
        for head in columns:
            table.add_column(head, justify="right")
        for r in result.rows:
            table.add_row(r.name, *(cell(r) for cell in columns.values()))
        tables.append(table)
    return tables
