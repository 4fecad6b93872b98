"""`edgeprof backends`: every registered backend, its kind and the settings `--set` takes."""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any

import typer

from edgeprof.cli.app import app, out


@app.command("backends")
def backends_command(
    as_json: bool = typer.Option(False, "--json", help="Print the list as JSON."),
) -> None:
    """List the backends `edgeprof run --backend` takes, plugins' included."""
    from edgeprof.backends import backend_class, backend_names
    from edgeprof.plugins import failures

    rows: list[dict[str, Any]] = []
    for name in backend_names():
        cls = backend_class(name)
        rows.append(
            {
                "name": name,
                "kind": cls.kind,
                "class": f"{cls.__module__}.{cls.__qualname__}",
                "settings": _settings(cls.Settings),
            }
        )
    if as_json:
        out.print_json(json.dumps({"backends": rows, "plugin_failures": failures}))
        return
    from rich.table import Table

    table = Table(title="backends", title_justify="left")
    for col in ("name", "kind", "settings (--set NAME=VALUE)", "class"):
        table.add_column(col, overflow="fold")
    for r in rows:
        settings = "\n".join(f"{s['name']}={s['default']} ({s['type']})" for s in r["settings"])
        table.add_row(r["name"], r["kind"], settings or "–", r["class"])
    out.print(table)
    for plugin, why in failures.items():
        out.print(f"[red]plugin {plugin} did not load:[/red] {why}", highlight=False)


def _settings(cls: type[Any]) -> list[dict[str, Any]]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else None
        hint = hints[f.name]
        kind = hint.__name__ if isinstance(hint, type) else str(hint).replace("pathlib.", "")
        out.append({"name": f.name, "type": kind, "default": default})
    return out
