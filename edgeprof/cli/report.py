"""`edgeprof report`: one row per run, as a table, JSON, a plot or an HTML page."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from edgeprof.cli.app import app, err, out

if TYPE_CHECKING:
    from edgeprof.analysis.summary import RunSummary
    from edgeprof.store.db import Store


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
    by: str | None = typer.Option(
        None,
        "--by",
        help="`device`: one row per device for each group of comparable runs (docs/fleet.md).",
    ),
    failures: bool = typer.Option(
        False, "--failures", help="List failing answers: an excerpt and why (docs/quality.md)."
    ),
) -> None:
    """Summarize the runs in a profile database."""
    from edgeprof.analysis.server_side import local_servers
    from edgeprof.analysis.summary import summarize
    from edgeprof.errors import ProfileDBError, UsageError
    from edgeprof.store import open_store
    from edgeprof.store.db import default_db_path

    if by not in (None, "device"):
        raise UsageError(f"`by` {by!r} is not known; use `device` or leave it out")
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
        _write_files(store, summaries, run_ids, plot, html)
        if by == "device":
            _by_device(store, summaries, as_json)
            return
        per_request = {s.run_id: store.requests(s.run_id) for s in summaries} if requests else {}
        soaks = _soaks(store, summaries)
        quality = _task_quality(store, summaries)
        failed = _failures(store, summaries) if failures else None
        servers = local_servers(store, [s.run_id for s in summaries])
    if as_json:
        _print_json(summaries, per_request, soaks, quality, failed, servers)
    else:
        _print_tables(summaries, per_request, soaks)
        print_servers(servers)
        _print_quality(summaries, quality, failed)


def _task_quality(store: Store, summaries: list[RunSummary]) -> dict[str, Any]:
    from edgeprof.grading.grade_runs import quality_of_runs

    return quality_of_runs(store, [s.run_id for s in summaries])


def _failures(store: Store, summaries: list[RunSummary]) -> list[dict[str, Any]]:
    from edgeprof.grading.grade_runs import failures

    return failures(store, [s.run_id for s in summaries])


def _print_quality(
    summaries: list[RunSummary], quality: dict[str, Any], failed: list[dict[str, Any]] | None
) -> None:
    from edgeprof.report.quality import failures_table, quality_table

    table = quality_table(summaries, quality)
    if table is not None:
        out.print(table)
    if failed is not None:
        out.print(failures_table(failed))


def print_servers(servers: dict[str, dict[str, Any]], console: Any = out) -> None:
    """Each local server's process and its figures beside edgeprof's (`run` prints them to
    stderr, `report` to stdout); a server not identified is a note."""
    from edgeprof.analysis.server_side import describe_process

    for run_id, found in servers.items():
        process = found["process"] or {}
        console.print(describe_process(run_id, process), highlight=False)
        if process.get("problem"):
            err.print(f"note: {process['problem']}", highlight=False)
        for line in found["timings"].lines():
            console.print(f"  {line}", highlight=False)


def _print_json(
    summaries: list[RunSummary],
    per_request: dict[str, Any],
    soaks: dict[str, Any],
    quality: dict[str, Any],
    failed: list[dict[str, Any]] | None,
    servers: dict[str, dict[str, Any]],
) -> None:
    payload = [
        {**s.to_dict(), "requests": per_request[s.run_id]} if s.run_id in per_request
        else s.to_dict()
        for s in summaries
    ]  # fmt: skip
    for row in payload:
        if row["run_id"] in soaks:
            row["soak"] = _soak_json(soaks[row["run_id"]])
        if row["run_id"] in servers:
            found = servers[row["run_id"]]
            row["server"] = {"process": found["process"], "timings": found["timings"].to_dict()}
        q = quality.get(row["run_id"])
        row["task_quality"] = q.to_dict() if q is not None and q.pass_rate else None
    if failed is not None:
        out.print_json(json.dumps({"runs": payload, "failures": failed}, default=str))
        return
    out.print_json(json.dumps(payload, default=str))


def _print_tables(
    summaries: list[RunSummary], per_request: dict[str, Any], soaks: dict[str, Any]
) -> None:
    from edgeprof.analysis.comparability import comparability_notes
    from edgeprof.analysis.summary import gpu_mem_notes
    from edgeprof.cli.render import print_warnings, run_notes, runs_table
    from edgeprof.report.soak_text import soak_lines

    out.print(runs_table(summaries, width=out.width))
    print_warnings(err, summaries)
    notes = [*run_notes(summaries), *gpu_mem_notes(summaries), *comparability_notes(summaries)]
    for note in notes:
        err.print(f"note: {note}", highlight=False)
    for run_id, soak in soaks.items():
        out.print(f"soak, run {run_id[-8:]}:", highlight=False)
        for line in soak_lines(soak):
            out.print(f"  {line}", highlight=False)
    for run_id, rows in per_request.items():
        out.print(_requests_table(run_id, rows))


def _write_files(
    store: Store,
    summaries: list[RunSummary],
    run_ids: list[str] | None,
    plot: Path | None,
    html: Path | None,
) -> None:
    if plot is not None:
        from edgeprof.report.plots import plot_run_timeline, plot_soak

        last = summaries[-1]
        # a soak is read over minutes (tok/s, W, temperature per window), not request by request
        draw = plot_soak if "duration_s" in last.passes else plot_run_timeline
        draw(store, last.run_id, plot)
        err.print(f"wrote {plot}")
    if html is not None:
        from edgeprof.report.html import write_html_report

        write_html_report(store, html, run_ids)
        err.print(f"wrote {html}")


def _soaks(store: Store, summaries: list[RunSummary]) -> dict[str, Any]:
    """The soak analysis of each soak run (`run --duration`) among the summaries."""
    from edgeprof.analysis.soak import load_soak

    found = {s.run_id: load_soak(store, s.run_id) for s in summaries if "duration_s" in s.passes}
    return {run_id: soak for run_id, soak in found.items() if soak is not None}


def _soak_json(soak: Any) -> dict[str, Any]:
    from dataclasses import asdict

    from edgeprof.report.soak_text import window_rows

    return {
        "windows": window_rows(soak),
        "events": [asdict(e) for e in soak.events],
        "sustained": asdict(soak.sustained) if soak.sustained else None,
        "first_vs_last": asdict(soak.first_last) if soak.first_last else None,
    }


def _by_device(store: Store, summaries: list[RunSummary], as_json: bool) -> None:
    """`--by device`: the pooled tables (or their JSON, shape in docs/fleet.md), notes after."""
    from edgeprof.analysis.pooled import pooled_report

    report = pooled_report(store, summaries=summaries)
    if as_json:
        out.print_json(json.dumps(report.to_dict(), default=str))
        return
    from edgeprof.cli.render import pooled_tables

    for table in pooled_tables(report):
        out.print(table)
    for g in report.groups:
        for note in g.notes:
            err.print(f"note: group {g.key.key_id}: {note}", highlight=False)
    for note in report.notes:
        err.print(f"note: {note}", highlight=False)


def _requests_table(run_id: str, rows: list[dict[str, object]]) -> object:
    from rich.table import Table

    from edgeprof.report.formatting import ms, num

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
