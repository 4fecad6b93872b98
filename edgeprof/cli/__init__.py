"""Command line: thin wrappers over the Python API, one module per command group.

Each module registers its commands on `app`; heavy libraries are imported inside the commands
so that `edgeprof --help` stays fast.
"""

from __future__ import annotations

import sys

from edgeprof.cli import (  # noqa: F401 - each module registers its commands
    backends,
    compare,
    convert,
    decide,
    devices,
    grade,
    importer,
    prices,
    probe,
    quality,
    quantize,
    report,
    route,
    run,
    share,
    sweep,
)
from edgeprof.cli.app import app, cli_message, debug_enabled, one_line
from edgeprof.errors import EdgeprofError


def main() -> None:
    try:
        app()
    except EdgeprofError as e:  # raised outside a command (the app's own group handles those)
        if debug_enabled():
            raise
        print(f"edgeprof: error: {one_line(cli_message(str(e)))}", file=sys.stderr)
        sys.exit(2)


__all__ = ["app", "main"]
