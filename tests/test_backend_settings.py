"""Backend settings: one dataclass per backend, checked in one place (backends/settings.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeprof.backends import BackendOptions, backend_class, backend_names, create_backend
from edgeprof.backends.settings import parse_settings, settings_from_strings
from edgeprof.errors import UsageError


@dataclass(frozen=True)
class Knobs:
    rate: float = 1.0
    count: int = 2
    flag: bool = False
    path: Path | None = None
    name: str | None = None


def test_values_are_checked_by_type_and_coerced_where_lossless() -> None:
    k = parse_settings(Knobs, {"rate": 3, "count": 5, "flag": True, "path": "a/b"}, owner="x")
    assert k == Knobs(rate=3.0, count=5, flag=True, path=Path("a/b"))
    assert isinstance(k.rate, float)
    assert parse_settings(Knobs, {"name": None}, owner="x") == Knobs()  # None: not given


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"count": True}, "`count` must be int, got True"),  # a bool is an int to Python only
        ({"flag": 1}, "`flag` must be bool"),
        ({"count": 2.5}, "`count` must be int"),
        ({"rate": "fast"}, "`rate` must be float"),
        ({"colour": "red"}, "x does not take colour; it takes count, flag, name, path, rate"),
    ],
)
def test_bad_settings_name_the_setting(given: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_settings(Knobs, given, owner="x")


def test_command_line_strings_become_typed_values() -> None:
    got = settings_from_strings(
        Knobs, ["rate=2.5", "count=7", "flag=yes", "path=/m/x.gguf", "name=none"], owner="x"
    )
    assert got == {"rate": 2.5, "count": 7, "flag": True, "path": "/m/x.gguf", "name": None}
    assert parse_settings(Knobs, got, owner="x").path == Path("/m/x.gguf")
    with pytest.raises(UsageError, match="`count` must be int, got 'many'"):
        settings_from_strings(Knobs, ["count=many"], owner="x")
    with pytest.raises(UsageError, match="`set` takes NAME=VALUE"):
        settings_from_strings(Knobs, ["count"], owner="x")


def test_every_builtin_backend_declares_its_kind_and_settings() -> None:
    kinds = {name: backend_class(name).kind for name in backend_names()}
    assert kinds["llamacpp"] == kinds["onnx"] == "device"
    assert kinds["openai"] == kinds["anthropic"] == "remote"
    llama = create_backend("llamacpp", BackendOptions(settings={"n_batch": 128}))
    assert llama.settings.n_batch == 128 and llama.settings.flash_attn is False


def test_the_cli_sets_backend_settings_and_maps_errors_to_flags(tmp_path: Path) -> None:
    from edgeprof.cli import app

    db = str(tmp_path / "p.db")
    runner = CliRunner()
    bad = runner.invoke(app, ["run", "--set", "n_batch=0", "--db", db])
    assert bad.exit_code == 2
    assert "edgeprof: error: llamacpp: `n_batch` must be at least 1, got 0" in bad.output
    usage = runner.invoke(app, ["run", "--max-tokens", "0", "--db", db])
    assert usage.exit_code == 2
    assert "edgeprof: error: --max-tokens must be between 1 and 1000000" in usage.output
    assert not (tmp_path / "p.db").exists()  # refused before anything was written
