"""Hostile and broken input finds one-line errors, never a traceback.

Property tests (hypothesis) over what users hand edgeprof: prompt files, GGUF headers, profile
databases and numbers on the command line. An `EdgeprofError` is the one-line message the CLI
prints; anything else would be a traceback.
"""

from __future__ import annotations

import functools
import json
import struct
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tests.fakes  # noqa: F401 - registers the "fake" backend
from edgeprof.errors import EdgeprofError
from edgeprof.measure.workload import load_suite
from edgeprof.store import open_store
from tests.builders import add_run, cli, device_row

FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
prompt_lines = st.one_of(
    st.text(max_size=60),  # anything at all
    json_values.map(json.dumps),  # valid JSON of the wrong shape
    st.fixed_dictionaries(
        {},
        optional={
            "name": json_values,
            "prompt": st.text(max_size=30) | json_values,
            "system": json_values,
            "messages": st.lists(
                st.dictionaries(st.sampled_from(["role", "content", "x"]), json_values),
                max_size=3,
            )
            | json_values,
        },
    ).map(json.dumps),
)


@FUZZ
@given(lines=st.lists(prompt_lines, max_size=5), raw=st.binary(max_size=40))
def test_prompt_files(lines: list[str], raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.jsonl"
        path.write_bytes("\n".join(lines).encode("utf-8", "surrogatepass") + raw)
        try:
            prompts = load_suite(str(path))
        except EdgeprofError as e:
            assert "\n" not in str(e)
            return
        assert prompts and all(p.messages for p in prompts)


def _gguf_header(version: int, n_tensors: int, n_kv: int, tail: bytes) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv) + tail


@FUZZ
@given(
    version=st.sampled_from([0, 1, 2, 3, 4, 2**32 - 1]),
    n_tensors=st.integers(0, 2**64 - 1),
    n_kv=st.integers(0, 2**64 - 1),
    tail=st.binary(max_size=200),
    cut=st.integers(0, 240),
)
def test_gguf_headers(version: int, n_tensors: int, n_kv: int, tail: bytes, cut: int) -> None:
    from edgeprof.convert.gguf_read import open_gguf, read_hparams

    data = _gguf_header(version, n_tensors, n_kv, tail)[:cut]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.gguf"
        path.write_bytes(data)
        try:
            read_hparams(open_gguf(path))
        except EdgeprofError as e:
            assert "\n" not in str(e)


@functools.cache
def _profile_bytes() -> bytes:
    """One real profile database, its write-ahead log folded in, as bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "good.db"
        with open_store(db) as store:
            add_run(store, device_row("box"), n_samples=5)
        with open_store(db) as store:
            store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return db.read_bytes()


@FUZZ
@given(data=st.data())
def test_profile_databases(data: st.DataObject) -> None:
    """A real profile with bytes overwritten or cut: refused with a message, or read."""
    good = _profile_bytes()
    start = data.draw(st.integers(0, len(good) - 1))
    junk = data.draw(st.binary(min_size=1, max_size=64))
    cut = data.draw(st.booleans())
    bad = good[:start] if cut else good[:start] + junk + good[start + len(junk) :]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bad.db"
        path.write_bytes(bad)
        commands: list[list[str | Path]] = [
            ["report", path, "--json"],
            ["export", path, "-o", Path(tmp) / "x"],
        ]
        for args in commands:
            done = cli(*args)
            assert done.exit_code in (0, 2), (args, done.output, done.exception)
            if done.exit_code == 2:
                assert done.stderr.startswith("edgeprof: error: "), done.output
                assert len(done.stderr.strip().splitlines()) == 1, done.stderr


numbers = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["", "1e400", "-0", "0x10", "1_000", " 3", "nan", "1,5"]),
)
RUN_FLAGS = ["--repetitions", "--warmup", "--max-tokens", "--threads", "--ctx", "--hz",
             "--idle-seconds", "--tdp-w", "--concurrency"]  # fmt: skip


@FUZZ
@given(flag=st.sampled_from(RUN_FLAGS), value=numbers)
def test_numbers_on_the_command_line(tmp_path: Path, flag: str, value: str) -> None:
    """A bad number is refused before anything runs; no value reaches a traceback.

    The backend named does not exist, so a number that passes the checks ends at that error,
    the next one in line, instead of starting a run of its size."""
    db = tmp_path / "p.db"
    done = cli("run", "--backend", "no-such-backend", "--db", db, flag, value)
    assert isinstance(done.exception, SystemExit) and done.exit_code == 2, done.exception
    if "Invalid value" in done.stderr:  # not a number at all: typer's usage error, in its box
        return
    line = done.stderr.strip()
    assert line.startswith("edgeprof: error: ") and "\n" not in line, done.stderr
    assert flag in line or "unknown backend 'no-such-backend'" in line
    assert not db.exists()  # refused before the database was touched


@pytest.mark.parametrize("flag", ["--price-in", "--device-price", "--electricity"])
@pytest.mark.parametrize("value", ["-1", "nan", "inf"])
def test_numbers_for_compare(tmp_path: Path, flag: str, value: str) -> None:
    db = tmp_path / "p.db"
    with open_store(db) as store:
        add_run(store, device_row("box"))
    given = {"--requests-per-day": "100", "--device-price": "80", "--lifetime-years": "3",
             "--electricity": "0.3", "--price-in": "1", "--price-out": "2"}  # fmt: skip
    given[flag] = value
    done = cli("compare", db, *(x for pair in given.items() for x in pair))
    assert done.exit_code == 2, done.output
    assert done.stderr.startswith("edgeprof: error: ") and flag in done.stderr, done.stderr
