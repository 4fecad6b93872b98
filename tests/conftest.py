"""Shared fixtures: the real demo model, one real profile of it reused across tests, and (as a
plugin) the cloud servers of tests/cloud_fixtures.py. Helpers live in tests/builders.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from edgeprof.models import demo_model_path
from tests.builders import edgeprof_subprocess

# The cloud fixtures (cloud_server, keyed_server, llama_server) reach every test by name.
pytest_plugins = ["tests.cloud_fixtures"]


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
