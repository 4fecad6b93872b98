"""`edgeprof quality`: perplexity and divergence from a reference, stored beside the runs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from edgeprof.cli.app import app, err, out, progress_bar

if TYPE_CHECKING:
    from edgeprof.store.rows import QualityRow


@app.command("quality")
def quality_command(
    targets: list[str] = typer.Argument(
        ..., help="GGUF models or ONNX exports to score (a name under models/, or `demo`)."
    ),
    reference: str | None = typer.Option(
        None,
        "--reference",
        help="The model the targets are variants of (F32/F16, or the F32 `edgeprof quantize` "
        "writes): adds KL divergence, top-1 agreement and Δ perplexity against it.",
    ),
    text: Path | None = typer.Option(
        None,
        "--text",
        help="A UTF-8 text in your feature's domain (default: the bundled evaluation text).",
    ),
    ctx: int = typer.Option(512, "--ctx", help="Tokens per chunk; the second half is scored."),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads (default: all)."),
    db: Path | None = typer.Option(
        None, "--db", help="Profile database (default: $EDGEPROF_DB or profiles/edgeprof.db)."
    ),
    fresh: bool = typer.Option(False, "--fresh", help="Measure again even if stored."),
    as_json: bool = typer.Option(False, "--json", help="Print the rows as JSON."),
) -> None:
    """How much each target loses: perplexity on a text (llama-perplexity's convention) and,
    against a reference, KL divergence, top-1 agreement and Δ perplexity."""
    from edgeprof.models.files import resolve_model
    from edgeprof.quality.store import assess, load_text
    from edgeprof.store.db import open_store

    paths = [_resolve(t, resolve_model) for t in targets]
    ref = _resolve(reference, resolve_model) if reference else None
    quality_text = load_text(text)
    bar = progress_bar()
    task = bar.add_task("scoring", total=None)

    def progress(what: str, done: int, total: int) -> None:
        if not bar.live.is_started:  # only once scoring starts: bad input fails bar-free
            bar.start()
        bar.update(task, completed=done, total=total, description=f"scoring {what}")

    try:
        with open_store(db) as store:
            outcomes = assess(
                store, paths, reference=ref, text=quality_text, ctx=ctx, threads=threads,
                fresh=fresh, progress=progress,
            )  # fmt: skip
    except KeyboardInterrupt:
        err.print("edgeprof: interrupted; finished evaluations kept", highlight=False)
        raise typer.Exit(130) from None
    finally:
        if bar.live.is_started:
            bar.stop()
    rows = [o.row for o in outcomes]
    if as_json:
        print(json.dumps([{**o.row, "reused": o.reused} for o in outcomes], indent=2))
        return
    out.print(quality_table(rows, {o.row["id"] for o in outcomes if o.reused}))
    first = rows[0]
    out.print(
        f"text: {first['text_name']} ({first['text_tokens']:,} tokens; {first['n_chunks']} "
        f"chunks of {first['ctx']}, {first['n_scored']:,} positions scored)",
        highlight=False,
    )
    note = next((r["reference_note"] for r in rows if r.get("reference_note")), None)
    if note:
        out.print(note, highlight=False)


def _resolve(name: str, resolve: Any) -> Path:
    return resolve(name, suffixes=(".gguf", ".onnx"))


def quality_table(rows: list[QualityRow], reused: set[str]) -> Any:
    from rich.table import Table

    from edgeprof.report.formatting import DASH, mib

    table = Table(title="quality", title_justify="left")
    for name in ("target", "backend", "quant", "size MiB", "PPL", "Δ PPL", "KLD mean",
                 "KLD p99", "top-1", ""):  # fmt: skip
        if name == "target":  # the name tells variants apart: fold it, never cut it
            table.add_column(name, overflow="fold", min_width=24)
            continue
        left = name in ("backend", "quant")
        # "11.597 ± 0.476" may wrap at its spaces; a bare number never
        wraps = name in ("PPL", "Δ PPL")
        table.add_column(name, justify="left" if left else "right", no_wrap=not wraps)

    for r in rows:

        def num(key: str, fmt: str, r: Mapping[str, Any] = r) -> str:
            return DASH if r.get(key) is None else format(r[key], fmt)

        ppl = f"{r['ppl']:.3f} ± {r['ppl_se']:.3f}"
        delta = DASH
        if r.get("delta_ppl_pct") is not None:
            delta = f"{r['delta_ppl_pct']:+.2f}% ± {r['delta_ppl_pct_se']:.2f}"
        elif r.get("reference_sha256") is None and any(x.get("reference") == r["target"]
                                                      for x in rows):  # fmt: skip
            delta = "reference"
        top1 = DASH if r.get("top1_agreement") is None else f"{r['top1_agreement']:.1%}"
        table.add_row(
            r["target"], r["backend"], r.get("quant") or DASH, mib(r.get("size_bytes")), ppl,
            delta, num("kld_mean", ".5f"), num("kld_p99", ".4f"), top1,
            "reused" if r["id"] in reused else "",
        )  # fmt: skip
    return table
