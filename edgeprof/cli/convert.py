"""`edgeprof convert`: a GGUF (llama, Qwen 2/3, Phi-3, Gemma 3) to ONNX for `--backend onnx`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from edgeprof.cli.app import app, err, out, progress_bar

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from edgeprof.convert.verify import Verification

_STAGES = {
    "dequantize": "reading GGUF tensors",
    "quantize": "quantizing",
    "write": "writing",
    "verify": "verifying against llama.cpp",
}
# An export that loads but disagrees with llama.cpp is worse than none: every profile of it
# would measure the speed of wrong answers. Distinct from 2 (bad arguments, unreadable files).
EXIT_VERIFY_FAILED = 1


@app.command("convert")
def convert_command(
    model: str = typer.Argument(..., help="A .gguf file, a name under models/, or `demo`."),
    # named dst, as convert_gguf's parameter, so library messages about `dst` show as --output
    dst: Path = typer.Option(..., "-o", "--output", help="Where to write NAME.onnx."),
    weights: str = typer.Option(
        "fp32",
        help="fp32, int8 (ORT MatMulNBits 8-bit, block 32) or int4 (MatMulNBits 4-bit, block 32).",
    ),
    max_positions: int | None = typer.Option(
        None, help="Longest sequence the RoPE tables cover (default: the model's context)."
    ),
    verify: bool = typer.Option(
        True,
        help="Afterwards decode two bundled prompts on the export and on llama.cpp and compare "
        f"the tokens; exit {EXIT_VERIFY_FAILED} if they disagree too often.",
    ),
) -> None:
    """Export a GGUF to ONNX with its tokenizer and config beside it."""

    from edgeprof.convert import convert_gguf, verify_export
    from edgeprof.models.files import resolve_model

    src = resolve_model(model)
    with progress_bar() as bar:
        result = convert_gguf(
            src, dst, weights=weights, max_positions=max_positions, progress=_stages(bar)
        )
    out.print(
        f"wrote {result.onnx_path} ({result.weights}, {result.size_bytes / 1e6:.0f} MB with "
        f"weights) in {result.seconds:.1f} s; run it with "
        f"`edgeprof run --backend onnx --model {result.onnx_path}`"
    )
    for path in result.files[1:]:
        out.print(f"  beside it: {path.name}")
    if not verify:
        return
    with progress_bar() as bar:
        check = verify_export(result.onnx_path, src, progress=_stages(bar))
    _report(check)
    if not check.passed:
        raise typer.Exit(EXIT_VERIFY_FAILED)


def _stages(bar: Progress) -> Callable[[str, int, int], None]:
    """One bar line per library stage, as the stage reports (done, total)."""
    tasks: dict[str, TaskID] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(_STAGES.get(stage, stage), total=total)
        bar.update(tasks[stage], completed=done, total=total)

    return progress


def _report(check: Verification) -> None:
    line = (
        f"top-1 agreement with llama.cpp: {check.top1:.0%} of {check.steps} greedy tokens "
        f"({check.prompts} bundled prompts; threshold {check.threshold:.0%}) in "
        f"{check.seconds:.1f} s"
    )
    if check.passed:
        out.print(f"verified: {line}", highlight=False)
        return
    # stderr, so that it is seen even when stdout goes to a file or a pipe
    err.print(
        f"[bold red]WARNING: this export does not compute what llama.cpp computes[/]\n"
        f"  {line}\n"
        f"  The files were written, but a profile of them would measure wrong answers. "
        f"ONNX Runtime's kernels depend on this CPU's instruction set; try another --weights "
        f"format, or keep the files anyway with --no-verify.",
        highlight=False,
    )
