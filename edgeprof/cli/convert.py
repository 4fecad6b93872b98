"""`edgeprof convert`: a llama-family GGUF to an ONNX decoder for `--backend onnx`."""

from __future__ import annotations

from pathlib import Path

import typer

from edgeprof.cli.app import app, out, progress_bar

_STAGES = {"dequantize": "reading GGUF tensors", "quantize": "quantizing", "write": "writing"}


@app.command("convert")
def convert_command(
    model: str = typer.Argument(..., help="A .gguf file, a name under models/, or `demo`."),
    output: Path = typer.Option(..., "-o", "--output", help="Where to write NAME.onnx."),
    weights: str = typer.Option(
        "fp32", help="fp32, int8 (ORT dynamic quantizer) or int4 (ORT MatMulNBits, block 32)."
    ),
    max_positions: int | None = typer.Option(
        None, help="Longest sequence the RoPE tables cover (default: the model's context)."
    ),
) -> None:
    """Export a GGUF to ONNX with its tokenizer and config beside it."""

    from rich.progress import TaskID

    from edgeprof.convert import convert_gguf
    from edgeprof.models import resolve_model

    src = resolve_model(model)
    with progress_bar() as bar:
        tasks: dict[str, TaskID] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(_STAGES.get(stage, stage), total=total)
            bar.update(tasks[stage], completed=done, total=total)

        result = convert_gguf(
            src, output, weights=weights, max_positions=max_positions, progress=progress
        )
    out.print(
        f"wrote {result.onnx_path} ({result.weights}, {result.size_bytes / 1e6:.0f} MB with "
        f"weights) in {result.seconds:.1f} s; run it with "
        f"`edgeprof run --backend onnx --model {result.onnx_path}`"
    )
    for path in result.files[1:]:
        out.print(f"  beside it: {path.name}")
