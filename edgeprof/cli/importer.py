"""`edgeprof import`: llama-bench results into the profile database (edgeprof.store.llama_bench)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from edgeprof.cli.app import app, err, out


@app.command("import")
def import_command(
    file: Path = typer.Argument(..., help="llama-bench's output: `-o json` or `-o jsonl`."),
    db: Path | None = typer.Option(
        None, "--db", help="Profile database (default: $EDGEPROF_DB or profiles/edgeprof.db)."
    ),
    model: list[str] | None = typer.Option(
        None,
        "--model",
        help="The GGUF llama-bench ran, to record its sha256 (repeatable; matched by size). "
        "Without it the file the JSON names is hashed if it exists as written, else the "
        "hash is recorded as unknown.",
    ),
    device_label: str | None = typer.Option(
        None,
        "--device-label",
        help="Name of the machine llama-bench ran on (default: its cpu_info and gpu_info).",
    ),
    here: bool = typer.Option(
        False,
        "--here",
        help="llama-bench ran on this machine: record the results on this device.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print what was imported as JSON."),
) -> None:
    """Import llama-bench results as runs of their own (backend llama-bench): its pp and tg
    speeds per repetition, with its definitions; no TTFT, no energy."""
    from edgeprof.models.files import resolve_model
    from edgeprof.store.llama_bench import import_llama_bench

    models = [resolve_model(m) for m in model or []]
    result = import_llama_bench(file, db, models=models, device_label=device_label, here=here)
    payload = result.to_dict()
    if as_json:
        out.print_json(json.dumps(payload))
        return
    out.print(_table(payload))
    added, present = payload["runs_added"], payload["runs_present"]
    err.print(
        f"imported {added} run(s), {payload['requests_added']} repetition(s), into {result.db} "
        f"on device {result.device_label!r}"
        + (f"; {present} already there" if present else "")
        + (
            f", {payload['model_hashes_added']} given their model's sha256"
            if payload["model_hashes_added"]
            else ""
        )
        + f"; see them with `edgeprof report {result.db}`",
        highlight=False,
    )
    for note in result.notes:
        err.print(f"note: {note}", highlight=False)
    if any(t["model_sha256"] is None for t in payload["tests"]):
        err.print("note: model sha256 unknown; pass --model PATH to record it", highlight=False)


def _table(payload: dict[str, Any]) -> object:
    from rich.table import Table

    from edgeprof.report.formatting import mean_sd

    table = Table(title=f"llama-bench results imported into {payload['db']}", title_justify="left")
    for name in ("run", "test", "reps", "llama-bench t/s", "model sha256", ""):
        table.add_column(name, justify="right" if name in ("reps", "llama-bench t/s") else "left")
    for t in payload["tests"]:
        sha = t["model_sha256"]
        table.add_row(
            t["run_id"][-8:], t["test"], str(t["repetitions"]),
            mean_sd(t["avg_ts"], t["stddev_ts"]), sha[:12] if sha else "unknown",
            "new" if t["new"] else "already there",
        )  # fmt: skip
    return table
