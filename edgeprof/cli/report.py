"""`edgeprof report`: one row per run, as a table, JSON, a plot or an HTML page."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from edgeprof.cli.app import app, err, out


@app.command("report")
def report_command(
    db: Path | None = typer.Argument(
        None, help="Profile database (default: $EDGEPROF_DB or profiles/edgeprof.db)."
    ),
    run: list[str] | None = typer.Option(
        None, "--run", help="Run id or unique prefix (repeatable)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summaries as JSON."),
    requests: bool = typer.Option(False, "--requests", help="Also list every request."),
    plot: Path | None = typer.Option(
        None, help="Write a power and tok/s timeline of the (last) run to this PNG."
    ),
    html: Path | None = typer.Option(
        None,
        help="Write a self-contained HTML report here (`edgeprof compare --html` adds verdicts).",
    ),
) -> None:
    """Summarize the runs in a profile database."""
    from edgeprof.errors import ProfileDBError
    from edgeprof.store import open_store
    from edgeprof.store.db import default_db_path
    from edgeprof.summary import summarize

    path = db or default_db_path()
    if not path.exists():
        raise ProfileDBError(f"{path} does not exist; create it with `edgeprof run --db {path}`")
    with open_store(path) as store:
        for run_id, why in store.reaped:
            err.print(f"note: run {run_id} is now marked aborted: {why}", highlight=False)
        run_ids = [store.resolve_run_id(r) for r in run] if run else None
        summaries = summarize(store, run_ids)
        if not summaries:
            raise ProfileDBError(
                f"{path} holds no runs yet; add one with `edgeprof run --db {path}`"
            )
        if plot is not None:
            from edgeprof.plots import plot_run_timeline

            plot_run_timeline(store, summaries[-1].run_id, plot)
            err.print(f"wrote {plot}")
        if html is not None:
            from edgeprof.html import write_html_report

            write_html_report(store, html, run_ids)
            err.print(f"wrote {html}")
        per_request = {s.run_id: store.requests(s.run_id) for s in summaries} if requests else {}
    if as_json:
        payload = [
            {**s.to_dict(), "requests": per_request[s.run_id]} if requests else s.to_dict()
            for s in summaries
        ]
        out.print_json(json.dumps(payload, default=str))
        return
    from edgeprof.cli.render import run_notes, runs_table
    from edgeprof.comparability import comparability_notes
    from edgeprof.summary import gpu_mem_notes

    out.print(runs_table(summaries, width=out.width))
    notes = [*run_notes(summaries), *gpu_mem_notes(summaries), *comparability_notes(summaries)]
    for note in notes:
        err.print(f"note: {note}", highlight=False)
    for run_id, rows in per_request.items():
        out.print(_requests_table(run_id, rows))


def _requests_table(run_id: str, rows: list[dict[str, object]]) -> object:
    from rich.table import Table

    from edgeprof.formatting import ms, num

    table = Table(title=f"requests of run {run_id}", title_justify="left")
    for name in ("seq", "rep", "warm-up", "prompt", "in", "out", "TTFT ms", "prefill tok/s",
                 "decode tok/s", "e2e ms", "J", "error"):  # fmt: skip
        table.add_column(name)
    for r in rows:
        table.add_row(
            str(r["seq"]), str(r["repetition"]), "yes" if r["warmup"] else "",
            str(r["prompt_id"])[:8], str(r["input_tokens"]), str(r["output_tokens"]),
            ms(r["ttft_s"]), num(r["prefill_tps"]), num(r["decode_tps"]),  # type: ignore[arg-type]
            ms(r["e2e_s"]), num(r["energy_j"], 2), str(r["error"] or ""),  # type: ignore[arg-type]
        )  # fmt: skip
    return table
