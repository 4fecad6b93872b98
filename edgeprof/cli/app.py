"""The typer app and the one place library errors become one-line messages."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console

if TYPE_CHECKING:
    from rich.progress import Progress

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


def progress_bar(disable: bool = False) -> Progress:
    """The bar long commands (convert, merge) show on stderr; gone when the work is done."""
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=disable,
    )


def debug_enabled() -> bool:
    return bool(os.environ.get("EDGEPROF_DEBUG"))
