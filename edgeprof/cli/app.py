"""The typer app and the one place library errors become one-line messages."""

from __future__ import annotations

import os
import sys
from typing import NoReturn

import typer
from rich.console import Console

app = typer.Typer(
    name="edgeprof",
    help="Should this AI feature run on the device or in the cloud? Measure it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Tables and progress go to stderr so that `--json` output on stdout stays parseable.
out = Console()
err = Console(stderr=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print `edgeprof: error: <message>` on one line and exit."""
    print(f"edgeprof: error: {message}", file=sys.stderr)
    raise typer.Exit(code)


def debug_enabled() -> bool:
    return bool(os.environ.get("EDGEPROF_DEBUG"))
