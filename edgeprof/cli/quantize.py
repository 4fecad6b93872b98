"""`edgeprof quantize`: GGUF variants of one model through llama.cpp, with an F32 reference."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from edgeprof.cli.app import app, out, progress_bar
from edgeprof.quality.quantize import DEFAULT_TYPES, MANIFEST_NAME, QUANT_TYPES

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from edgeprof.quality.quantize import QuantizeResult

MIB = 1 << 20
SHORT_SHA = 12


@app.command("quantize")
def quantize_command(
    source: str = typer.Argument(..., help="A .gguf file, a name under models/, or `demo`."),
    types: str = typer.Option(
        ",".join(DEFAULT_TYPES),
        "--types",
        help=f"Comma-separated llama.cpp types, from {','.join(QUANT_TYPES)}.",
    ),
    # named out_dir, as quantize_model's parameter, so library messages show it as --output
    out_dir: Path | None = typer.Option(
        None,
        "-o",
        "--output",
        help="Folder for the files and the manifest (default: models/NAME/, NAME the source's "
        "file name without its quantization).",
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite files already there."),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads (default: all)."),
    as_json: bool = typer.Option(False, "--json", help=f"Print {MANIFEST_NAME} instead."),
) -> None:
    """Write each type from the unquantized weights (a quantized source is dequantized to an
    F32 reference first), with sha256 and bits per weight, and a manifest beside them."""
    from edgeprof.models.files import resolve_model
    from edgeprof.quality.quantize import default_out_dir, quantize_model

    src = resolve_model(source)
    folder = out_dir if out_dir is not None else default_out_dir(src)
    bar = progress_bar()
    tasks: dict[str, TaskID] = {}
    try:
        result = quantize_model(
            src, types.split(","), folder, force=force, threads=threads, progress=_steps(bar, tasks)
        )
    finally:
        if tasks:  # started: stopping a bar that never started prints a blank line
            bar.stop()
    if as_json:
        print(json.dumps(result.manifest, indent=2))
        return
    _report(result)


def _steps(bar: Progress, tasks: dict[str, TaskID]) -> Callable[[str, int, int], None]:
    """A line for dequantizing (per tensor), one for quantizing (per type, naming it). The bar
    starts with the work, so that a refusal is the error line alone."""

    def progress(stage: str, done: int, total: int) -> None:
        if not tasks:
            bar.start()
        kind, _, what = stage.partition(":")
        label = f"quantizing {what}" if what else "dequantizing to F32"
        if kind not in tasks:
            tasks[kind] = bar.add_task(label, total=total)
        bar.update(tasks[kind], completed=done, total=total, description=label)

    return progress


def _report(result: QuantizeResult) -> None:
    from rich.table import Table

    ref = result.reference
    table = Table(title=f"{result.source_path.name}: {ref.note}", title_justify="left")
    for name in ("type", "file", "size MiB", "bits/weight", "sha256", "seconds"):
        table.add_column(name, justify="left" if name in ("type", "file", "sha256") else "right")
    rows = [("reference", ref.path, ref.size_bytes, ref.sha256, ref.seconds)]
    rows += [(f.type, f.path, f.size_bytes, f.sha256, f.seconds) for f in result.files]
    for label, path, size, sha, seconds in rows:
        bits = size * 8 / result.n_params
        table.add_row(
            label, path.name, f"{size / MIB:.1f}", f"{bits:.2f}", sha[:SHORT_SHA], f"{seconds:.1f}"
        )
    out.print(table)
    # sha256sum's format, so that `sha256sum -c` can check the files later
    for _, path, _, sha, _ in rows:
        out.print(f"{sha}  {path}", highlight=False, soft_wrap=True)
    out.print(f"manifest: {result.manifest_path}", highlight=False, soft_wrap=True)
