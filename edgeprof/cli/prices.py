"""`edgeprof prices [QUERY]`: the cloud prices edgeprof would charge, and where they come from."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import typer

from edgeprof.cli.app import app, out


def _usd(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


@app.command("prices")
def prices_command(
    query: str = typer.Argument(
        "", help="Part of a model or provider name (e.g. gpt-4o, claude, groq:llama)."
    ),
    date: str = typer.Option(
        None, "--date", help="Prices in effect on this day (YYYY-MM-DD); default today."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List models with input/output/cached-input USD per 1M tokens (from genai-prices)."""
    from edgeprof.decision.prices import search_prices
    from edgeprof.errors import UsageError

    when = None
    if date:
        try:
            when = datetime.strptime(date, "%Y-%m-%d").replace(tzinfo=timezone.utc)
        except ValueError as e:
            raise UsageError(f"--date must look like 2025-06-30, got {date!r}") from e
    found = search_prices(query, when=when)
    if as_json:
        print(json.dumps([p.__dict__ for p in found], indent=2))
        return
    if not found:
        out.print(
            f"No priced model matches {query!r}. Try a shorter name, or give prices to "
            "`edgeprof run` with --price-in/--price-out."
        )
        raise typer.Exit(1)

    from rich.table import Table

    first = found[0]
    table = Table(
        title=f"USD per 1M tokens · {first.source} · prices in effect {first.snapshot_date}"
    )
    table.add_column("provider")
    table.add_column("model")
    table.add_column("input", justify="right")
    table.add_column("output", justify="right")
    table.add_column("cached input", justify="right")
    for p in found:
        table.add_row(
            p.provider,
            p.model,
            _usd(p.input_usd_per_m),
            _usd(p.output_usd_per_m),
            _usd(p.cached_input_usd_per_m),
        )
    out.print(table)
