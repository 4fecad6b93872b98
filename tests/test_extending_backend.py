"""docs/extending.md's backend example, run as the doc says: a plugin found through its entry
point, profiled end to end into a database, its settings checked by edgeprof."""

from __future__ import annotations

import json
import shutil
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

import edgeprof.plugins
from edgeprof.analysis.summary import summarize_run
from edgeprof.backends import (
    BackendOptions,
    backend_class,
    backend_names,
    create_backend,
    unregister_backend,
)
from edgeprof.errors import UsageError
from edgeprof.measure.runner import RunConfig, profile
from edgeprof.store import open_store

EXAMPLE = Path(__file__).parents[1] / "docs" / "examples" / "backend_plugin.py"


@pytest.fixture
def echo_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The example installed as a plugin: its module on sys.path and a dist-info declaring the
    `edgeprof.plugins` entry point, which is how pip leaves a plugin package."""
    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(EXAMPLE, site / "edgeprof_echo.py")
    dist = site / "edgeprof_echo-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: edgeprof-echo\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[edgeprof.plugins]\necho = edgeprof_echo\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv(edgeprof.plugins.LOAD_PLUGINS_ENV, "echo")  # the suite loads none else
    monkeypatch.setattr(edgeprof.plugins, "_loaded", False)
    yield
    unregister_backend("echo")
    sys.modules.pop("edgeprof_echo", None)


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.jsonl"
    lines = [
        {"name": "short", "prompt": "say three words"},
        {"name": "long", "prompt": " ".join(f"w{i}" for i in range(40))},
    ]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def test_the_plugin_is_found_through_its_entry_point(echo_installed: None) -> None:
    assert "edgeprof_echo" not in sys.modules
    assert "echo" in backend_names()  # nothing imported the module: only the entry point can
    assert backend_class("echo").kind == "device"


def test_the_example_profiles_end_to_end(
    echo_installed: None, prompts: Path, tmp_path: Path
) -> None:
    db = tmp_path / "p.db"
    config = RunConfig(
        backend="echo", prompts=str(prompts), repetitions=2, warmup=1, max_tokens=16,
        idle_seconds=0, hz=50, db=db, settings={"words_per_s": 500},
    )  # fmt: skip
    run_id = profile(config)
    with open_store(db) as store:
        run = store.runs([run_id])[0]
        rows = store.requests(run_id)
        summary = summarize_run(store, run_id)
    assert run["status"] == "complete" and run["target_kind"] == "device"
    assert run["params"]["words_per_s"] == 500
    assert len(rows) == 1 + 2 * 2 and sum(r["warmup"] for r in rows) == 1
    by_prompt = {r["output_tokens"] for r in rows if not r["warmup"]}
    assert by_prompt == {3, 16}  # "say three words" whole; the 40-word prompt cut at 16
    # 500 words/s: decode speed near it (sleep only overshoots), and device energy attributed.
    assert summary.decode_tps_mean is not None and 150 < summary.decode_tps_mean <= 520
    assert all(r["energy_j"] is not None and r["energy_j"] > 0 for r in rows)
    assert summary.energy_method is not None


def test_settings_are_checked_from_the_dataclass(echo_installed: None) -> None:
    with pytest.raises(UsageError, match="echo backend does not take speed; it takes words_per_s"):
        create_backend("echo", BackendOptions(settings={"speed": 3}))
    with pytest.raises(UsageError, match="`words_per_s` must be float"):
        create_backend("echo", BackendOptions(settings={"words_per_s": "fast"}))
    with pytest.raises(UsageError, match="`words_per_s` must be > 0"):
        create_backend("echo", BackendOptions(settings={"words_per_s": 0}))
    assert (
        create_backend("echo", BackendOptions(settings={"words_per_s": 7})).settings.words_per_s
        == 7.0
    )


def test_the_cli_runs_a_plugin_backend(echo_installed: None, prompts: Path, tmp_path: Path) -> None:
    from edgeprof.cli import app

    db = tmp_path / "cli.db"
    args = ["run", "--backend", "echo", "--prompts", str(prompts), "--repetitions", "1",
            "--warmup", "0", "--idle-seconds", "0", "--db", str(db), "--json"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    with sqlite3.connect(db) as conn:
        kinds = conn.execute("SELECT backend, target_kind, status FROM runs").fetchall()
    assert kinds == [("echo", "device", "complete")]


def test_the_doc_shows_the_example_as_it_is() -> None:
    doc = (EXAMPLE.parents[1] / "extending.md").read_text()
    assert EXAMPLE.read_text().strip() in doc
