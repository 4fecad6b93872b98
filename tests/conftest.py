"""Shared fixtures: the real demo model, one real profile of it reused across tests, and (as a
plugin) the cloud servers of tests/cloud_fixtures.py. Helpers live in tests/builders.py."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# rich fixes a console's width when it is created if COLUMNS is set then (pytest-xdist's workers
# have it): the CLI's consoles must read the width each test's command gives, so none is set
# while they are created.
os.environ.pop("COLUMNS", None)
os.environ.pop("LINES", None)

from edgeprof.models.files import demo_model_path
from tests.builders import edgeprof_subprocess
from tests.markers import mark_items

# Installed plugins stay out of the tests (and of the commands they start): one could replace
# or add a backend and change what a test measures. Tests of the plugin path opt in by name.
os.environ["EDGEPROF_LOAD_PLUGINS"] = ""

# The cloud fixtures (cloud_server, keyed_server, llama_server) reach every test by name.
pytest_plugins = ["tests.cloud_fixtures"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses the demo model or the server (tests/markers.py)."""
    mark_items(items)


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The session's own XDG cache (exports of the demo model land there, as in a user's
    ~/.cache), inherited by the commands tests start: nothing is written to the real one."""
    before = os.environ.get("XDG_CACHE_HOME")
    cache = tmp_path_factory.mktemp("xdg-cache")
    os.environ["XDG_CACHE_HOME"] = str(cache)
    yield cache
    if before is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = before


@pytest.fixture(scope="session")
def demo_model() -> Path:
    return demo_model_path()


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """`edgeprof run --max-tokens 32 --repetitions 2 --json` on the demo model, once, as a real
    subprocess: the console path end to end, with llama.cpp's native threads in their own
    process."""
    db = tmp_path_factory.mktemp("demo") / "p.db"
    result = edgeprof_subprocess(
        "run", "--max-tokens", "32", "--repetitions", "2", "--idle-seconds", "0.5",
        "--db", db, "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary: dict[str, Any] = json.loads(result.stdout)
    return db, summary
