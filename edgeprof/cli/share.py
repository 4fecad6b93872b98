"""edgeprof share commands: merge, export, datasette-metadata."""

from __future__ import annotations

from pathlib import Path

import typer

from edgeprof.cli.app import app, err, progress_bar


@app.command("merge")
def merge_cmd(
    sources: list[Path] = typer.Argument(
        ..., help="Profile databases to merge in.", metavar="SRC.db..."
    ),
    output: Path = typer.Option(
        ..., "--output", "-o", help="Destination database (created if absent)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Merge profile databases; runs already present are not copied twice."""

    from edgeprof.store.share import merge

    with progress_bar(disable=quiet or not err.is_terminal) as bar:
        task = bar.add_task("checking sources", total=None)

        def progress(what: str, done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, description=what)

        result = merge(sources, output, progress=progress)
    added = ", ".join(f"{n} {t}" for t, n in result.added.items() if n)
    extra = f"; {result.runs_replaced} unfinished run(s) replaced" if result.runs_replaced else ""
    err.print(f"merged {len(sources)} file(s) into {output}: {added or 'nothing new'}{extra}")
    for run_id, source in result.in_progress:
        err.print(
            f"note: run {run_id} was still running in {source}: merged as it stood; merge "
            "again when it ends to bring in the rest",
            highlight=False,
        )


@app.command("export")
def export_cmd(
    db: Path = typer.Argument(..., help="Profile database to export."),
    fmt: str = typer.Option(
        "csv",
        "--format",
        "-f",
        help="csv, jsonl or parquet (a folder per table, partitioned by device: docs/fleet.md).",
    ),
    output: Path = typer.Option(
        ...,
        "--output",
        "-o",
        help="Directory for the tables; parquet exports of many databases can share one.",
    ),
    anonymize: bool = typer.Option(
        False, "--anonymize", help="Drop hostnames, user names and local paths (labels kept)."
    ),
) -> None:
    """Export every table of a profile database to files (parquet: re-exporting a device
    replaces its partition)."""
    from edgeprof.store.export import export

    files = export(db, fmt, output, anonymize=anonymize)
    for table, path in files.items():
        err.print(f"{table:9} -> {path}")


@app.command("datasette-metadata")
def datasette_metadata_cmd(
    db: Path | None = typer.Argument(None, help="Profile database (names the database key)."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write here, not stdout."),
) -> None:
    """Print column descriptions and units for `datasette DB -m metadata.json`."""
    import json

    from edgeprof.store.datasette import metadata
    from edgeprof.store.db import default_db_path

    text = json.dumps(metadata((db or default_db_path()).stem), indent=2) + "\n"
    if output is None:
        typer.echo(text, nl=False)  # plain: rich would wrap long lines and break the JSON
        return
    output.write_text(text, encoding="utf-8")
    err.print(f"wrote {output}; browse with: datasette {db or default_db_path()} -m {output}")
