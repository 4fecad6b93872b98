"""Shared fixtures: the real demo model, and one real profile of it reused across tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgeprof.models import demo_model_path


def edgeprof_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 600):
    """Run the real command line (`python -m edgeprof`) in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "edgeprof", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "EDGEPROF_DEBUG": "", **(env or {})},
        check=False,
    )


@pytest.fixture(scope="session")
def demo_model() -> Path:
    return demo_model_path()


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """`edgeprof run --max-tokens 32 --repetitions 2 --json` on the demo model, once."""
    db = tmp_path_factory.mktemp("demo") / "p.db"
    result = edgeprof_cli(
        "run", "--max-tokens", "32", "--repetitions", "2", "--idle-seconds", "0.5",
        "--db", str(db), "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return db, json.loads(result.stdout)
