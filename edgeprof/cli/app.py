"""The typer app and the one place library errors become one-line messages."""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import sys
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from rich.console import Console
from typer.core import TyperGroup

from edgeprof.errors import EdgeprofError

# As edgeprof.store.trust.DB_ERRORS, without importing the store (and sqlite-utils) for --help.
DB_ERRORS = (sqlite3.DatabaseError, UnicodeDecodeError)

if TYPE_CHECKING:
    from rich.progress import Progress

# Library settings whose CLI flag is not simply the name with dashes.
FLAG_ALIASES = {
    "price_in_usd_per_m": "--price-in",
    "price_out_usd_per_m": "--price-out",
    "db_path": "--db",
    "device_price_usd": "--device-price",
    "electricity_usd_per_kwh": "--electricity",
    "cloud_models": "--cloud",
    "set": "--set",
}


class _Group(TyperGroup):
    """Library errors become `edgeprof: error: <message>` (exit 2) for every way the app is
    invoked: the console script, `python -m edgeprof` and typer's CliRunner in the tests."""

    def invoke(self, ctx: Any) -> Any:  # typer vendors its own click: its Context type
        try:
            return super().invoke(ctx)
        except EdgeprofError as e:
            if debug_enabled():
                raise
            fail(cli_message(str(e), ctx))
        except DB_ERRORS as e:  # damage found where no store method could name the file
            if debug_enabled():
                raise
            text = " ".join(str(e).split())[:160]
            fail(f"a profile database is damaged ({text}); restore it from a copy")


def cli_message(message: str, ctx: Any = None) -> str:
    """The library names parameters as `name`; on the command line they are flags. The
    command that failed decides first, then any other command's flag of that name."""
    root = ctx.find_root() if ctx is not None else None
    group = root.command if root is not None else typer.main.get_command(app)
    commands = list(getattr(group, "commands", {}).values())
    current = ctx.invoked_subcommand if ctx is not None else None
    commands.sort(key=lambda c: c.name == current)  # the failing command's flags win
    flags = dict(FLAG_ALIASES)
    for command in commands:
        for param in command.params:
            longs = [o for o in param.opts if o.startswith("--")]
            if param.name and longs:
                flags[param.name] = longs[0]
    # Names that are no flag at all (a backend setting, say) stay as written.
    return re.sub(r"`([a-z][a-z0-9_]*)`", lambda m: flags.get(m.group(1), m.group(0)), message)


app = typer.Typer(
    cls=_Group,
    name="edgeprof",
    help="Should this AI feature run on the device or in the cloud? Measure it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _options(
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Show the libraries' own log lines (INFO and up)."
    ),
) -> None:
    quiet_library_logs(verbose)


def quiet_library_logs(verbose: bool = False) -> None:
    """Libraries log to the root logger, and one of them (ONNX Runtime's MatMulNBits quantizer)
    calls `logging.basicConfig(level=INFO)` when imported, which would print every INFO line
    (gguf's writer, onnx-ir) before a verdict. A handler installed first makes that call a
    no-op: warnings and errors still show; INFO only with --verbose."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(name)s: %(levelname)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.WARNING)


# Tables and progress go to stderr so that `--json` output on stdout stays parseable.
out = Console()
err = Console(stderr=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print `edgeprof: error: <message>` on one line and exit."""
    print(f"edgeprof: error: {one_line(message)}", file=sys.stderr)
    raise typer.Exit(code)


def one_line(message: str) -> str:
    """Line breaks and control characters (a damaged file's bytes, quoted by SQLite) folded
    to spaces: an error is one line, whatever it quotes."""
    return " ".join(re.sub(r"[\x00-\x1f\x7f]", " ", message).split())


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
