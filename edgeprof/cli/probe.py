"""`edgeprof probe`: what this device is, and which power sources it can read."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import typer

from edgeprof.cli.app import app, out


@app.command("probe")
def probe_command(
    as_json: bool = typer.Option(False, "--json", help="Print the findings as JSON."),
    db: Path | None = typer.Option(
        None, help="Store the device here (default: $EDGEPROF_DB or profiles/edgeprof.db)."
    ),
    bandwidth: bool = typer.Option(
        True, help="Measure memory bandwidth (~1 s copy benchmark) for the decode roofline."
    ),
) -> None:
    """Show the device fingerprint, every known power source (available, or why not), the
    temperature, clock and throttling sensors, and the power setup (governor, AC/battery)."""
    from edgeprof.measure.device import fingerprint
    from edgeprof.samplers import SensorEnv, probe_all
    from edgeprof.store import open_store

    env = SensorEnv.from_environ()
    device = fingerprint(env.sys_root)
    if bandwidth:
        from edgeprof.measure.bandwidth import measure_bandwidth_gbs

        device["mem_bandwidth_gbs"] = round(measure_bandwidth_gbs().gbs, 2)
        with open_store(db) as store:
            store.upsert_device(device)
    sources = [asdict(p) for p in probe_all(env)]
    context = [asdict(p) for p in probe_all(env, role="resource") if p.source != "process"]
    from edgeprof.measure.power_setup import power_setup

    setup = power_setup(env)
    from edgeprof.backends.ort_providers import build_summary, summary_lines

    onnxruntime = build_summary()  # which execution providers this build has
    from edgeprof.backends.llama_build import describe, library_info

    llama_cpp = library_info()  # GPU offload, build features and ggml devices
    from edgeprof.measure.isolation import model_process_note

    if as_json:
        found = {"device": device, "power_sources": sources, "onnxruntime": onnxruntime}
        found["llama_cpp"] = llama_cpp
        found["context_sensors"] = context
        found["power_setup"] = setup
        found["model_process"] = model_process_note()
        out.print_json(json.dumps(found, default=str))
        return
    from rich.table import Table

    info = Table(title="device", show_header=False, title_justify="left")
    for key in ("label", "cpu_model", "cores", "threads", "ram_bytes", "os", "arch",
                "accelerators", "mem_bandwidth_gbs", "id"):  # fmt: skip
        value = device.get(key)
        if key == "ram_bytes" and value:
            value = f"{value / 2**30:.1f} GiB"
        info.add_row(key, str(value if value not in (None, []) else "–"))
    out.print(info)
    out.print("[bold]power sources[/bold]")
    _print_sources(sources)
    out.print("[bold]temperature, clocks, throttling[/bold]")
    _print_sources(context)
    out.print("[bold]power setup[/bold]")
    for key, value in setup.items():
        out.print(f"  {key}: {value}", highlight=False)
    if not setup:
        out.print("  [dim]nothing readable (no cpufreq governor, power supply or profile)[/dim]")
    for line in summary_lines(onnxruntime):
        out.print(line, highlight=False)
    out.print("[bold]llama.cpp[/bold]")
    for line in describe(llama_cpp):
        out.print(f"  {line}", highlight=False)
    out.print("[bold]model process[/bold]")
    out.print(f"  {model_process_note()}", highlight=False)
    from edgeprof.plugins import failures

    for plugin, why in failures.items():
        out.print(f"[red]plugin {plugin} did not load:[/red] {why}", highlight=False)


def _print_sources(sources: list[dict[str, Any]]) -> None:
    for p in sources:
        if p["available"]:
            out.print(
                f"  [green]✓[/green] {p['sensor']} [dim]({p['source']}, {p['domain']}, "
                f"{p['method']})[/dim] {p['reason']}"
            )
        else:
            fix = f"\n      fix: {p['fix']}" if p["fix"] else ""
            out.print(f"  [red]✗[/red] {p['source']}: {p['reason']}{fix}")
