"""`edgeprof devices`: the bundled device presets, each figure with its as-of date and source,
and whether this machine is one of them."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import typer

from edgeprof.cli.app import app, out

if TYPE_CHECKING:
    from rich.text import Text

    from edgeprof.decision.presets import DevicePreset, PresetFigure

# (field, column header, how the value is shown)
COLUMNS = (
    ("price_usd", "price", "${:,.0f}"),
    ("lifetime_years", "lifetime", "{:g} y"),
    ("idle_power_w", "idle", "{:g} W"),
    ("busy_power_w", "busy", "{:g} W"),
    ("battery_wh", "battery", "{:g} Wh"),
)


@app.command("devices")
def devices_command(
    as_json: bool = typer.Option(False, "--json", help="Print the presets as JSON."),
) -> None:
    """List the device presets (price, lifetime, power, battery, with sources) and say whether
    this machine matches one."""
    from edgeprof.decision.presets import load_presets, matching_presets

    presets = load_presets()
    device = this_device()
    matches = [p.id for p in matching_presets(device)]
    if as_json:
        keys = ("label", "cpu_model", "arch", "ram_bytes", "battery_wh", "battery_source")
        shown = {k: device.get(k) for k in keys}
        payload = {
            "presets": [p.to_dict() for p in presets],
            "this_device_matches": matches,
            "this_device": shown,
        }
        out.print_json(json.dumps(payload))
        return
    _print_table(presets)
    out.print(_verdict(device, matches), highlight=False, markup=False)


def this_device() -> dict[str, Any]:
    """The fingerprint, plus the battery it carries (the laptop preset asks for one)."""
    from edgeprof.measure.device import fingerprint
    from edgeprof.samplers.base import SensorEnv
    from edgeprof.samplers.battery import battery_capacity

    env = SensorEnv.from_environ()
    device = fingerprint(env.sys_root)
    capacity = battery_capacity(env)
    device["battery_wh"] = round(capacity.wh, 1) if capacity else None
    device["battery_source"] = capacity.source if capacity else None
    return device


def _print_table(presets: list[DevicePreset]) -> None:
    from rich.markup import escape
    from rich.table import Table

    sources: dict[str, int] = {}  # footnote number per distinct source, in order of use
    table = Table(
        title="device presets: value \\[source], as-of date", title_justify="left", show_lines=True
    )
    table.add_column("id / name", overflow="fold", min_width=14)
    for _, header, _ in COLUMNS:
        table.add_column(header, overflow="fold")
    for p in presets:
        cells = [_cell(getattr(p, name), fmt, sources) for name, _, fmt in COLUMNS]
        table.add_row(f"{p.id}\n[dim]{escape(p.name)}[/dim]", *cells)
    out.print(table)
    out.print("sources:", highlight=False)
    for source, n in sources.items():
        out.print(f"  [{n}] {source}", highlight=False, markup=False, overflow="fold")


def _cell(figure: PresetFigure | None, fmt: str, sources: dict[str, int]) -> Text:
    from rich.text import Text

    from edgeprof.report.formatting import DASH

    if figure is None:
        return Text(DASH)
    n = sources.setdefault(figure.source, len(sources) + 1)
    text = Text(f"{fmt.format(figure.value)} [{n}]\n")
    text.append(figure.as_of, style="dim")
    return text


def _verdict(device: dict[str, Any], matches: list[str]) -> str:
    ram = device.get("ram_bytes")
    parts = [repr(device.get("label")), str(device.get("cpu_model")), str(device.get("arch"))]
    if ram:
        parts.append(f"{ram / 2**30:.1f} GiB RAM")
    wh = device.get("battery_wh")
    parts.append(f"battery {wh:g} Wh ({device['battery_source']})" if wh else "no battery")
    what = f"matches {', '.join(matches)}" if matches else "matches no preset"
    return f"this machine ({', '.join(parts)}) {what}"
