"""edgeprof convert commands (registered on the app when this module is imported)."""

from __future__ import annotations

from edgeprof.cli.app import app  # noqa: F401
