"""`edgeprof run`, `report` and `probe` on the command line: in-process through typer's
CliRunner, on the fake backend and on the real demo model; as a real process only where the
process itself is under test (the entry points, Ctrl-C, a fresh interpreter)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from edgeprof.measure.workload import load_suite
from tests.builders import (
    check_signal_columns,
    cli,
    edgeprof_subprocess,
    interruptible,
    write_prompts,
)

REPO = Path(__file__).resolve().parent.parent
DemoRun = tuple[Path, dict[str, Any]]


def one_error_line(stderr: str) -> str:
    """The single `edgeprof: error: ...` line a library error becomes, with no traceback."""
    (line,) = stderr.strip().splitlines()
    assert line.startswith("edgeprof: error: "), line
    return line


# -- the real demo model -------------------------------------------------------------------


@pytest.mark.model
def test_run_json_has_real_figures(demo_run: DemoRun) -> None:
    _, summary = demo_run
    assert summary["status"] == "complete"
    assert summary["backend"] == "llamacpp" and summary["quant"] == "Q4_1"
    assert summary["decode_tps_mean"] > 0 and summary["ttft_p50_s"] > 0
    assert summary["n_requests"] == 2 * len(load_suite()) and summary["n_warmup"] == 1
    # The demo run does not pick its sensors: a machine with RAPL measures, a VM estimates.
    assert summary["energy_method"] in ("measured", "estimated")


@pytest.mark.model
def test_run_fills_every_table(demo_run: DemoRun) -> None:
    db, summary = demo_run
    conn = sqlite3.connect(db)
    count = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
             for t in ("runs", "requests", "samples", "sensors", "devices", "prompts")}  # fmt: skip
    assert count["runs"] == 1 and count["devices"] == 1
    assert count["prompts"] == len(load_suite())
    assert count["requests"] == summary["n_requests"] + 1
    assert count["samples"] > 10 and count["sensors"] >= 2
    warm = conn.execute("SELECT count(*) FROM requests WHERE warmup = 1").fetchone()[0]
    assert warm == 1
    rows = conn.execute(
        "SELECT input_tokens, output_tokens, finish_reason, ttft_s, decode_tps, energy_j, "
        "energy_method FROM requests WHERE warmup = 0"
    ).fetchall()
    for inp, outp, finish, ttft, decode, energy_j, method in rows:
        assert inp > 0 and ttft > 0
        assert decode > 0 if outp > 1 else decode is None
        assert outp == 32 if finish == "length" else 0 < outp <= 32
        assert energy_j > 0 and method == summary["energy_method"]
    run = conn.execute(
        "SELECT status, load_s, idle_power_w, recorder_cpu_s_per_s FROM runs"
    ).fetchone()
    assert run[0] == "complete" and run[1] > 0 and run[2] > 0 and 0 <= run[3] < 0.5


@pytest.mark.model
def test_every_answer_stores_its_signals(demo_run: DemoRun) -> None:
    """The model ran in its worker process (as `edgeprof run` runs it): the signals it read
    there came back with each answer and are in every request row (store m011)."""
    db, summary = demo_run
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    rows = [dict(r) for r in conn.execute("SELECT * FROM requests")]
    assert len(rows) == summary["n_requests"] + 1
    for row in rows:
        check_signal_columns(row, row["output_tokens"])
    run = conn.execute("SELECT params FROM runs").fetchone()
    assert json.loads(run["params"])["settings"]["signals"] is True


@pytest.mark.model
def test_exact_token_counts_match_the_tokenizer(demo_run: DemoRun, demo_model: Path) -> None:
    from llama_cpp import Llama

    from edgeprof.backends.llamacpp import prompt_tokens

    db, _ = demo_run
    llm = Llama(model_path=str(demo_model), vocab_only=True, verbose=False)
    expected = {p.id: len(prompt_tokens(llm, p.messages)) for p in load_suite()}
    conn = sqlite3.connect(db)
    for prompt_id, n in conn.execute("SELECT prompt_id, input_tokens FROM requests"):
        assert n == expected[prompt_id]


@pytest.mark.model
def test_report_json_returns_the_same_figures(demo_run: DemoRun) -> None:
    db, summary = demo_run
    result = cli("report", db, "--json")
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    for key in ("run_id", "decode_tps_mean", "ttft_p50_s", "j_per_output_token", "energy_method"):
        assert row[key] == summary[key]
    table = cli("report", db, "--requests")
    assert table.exit_code == 0, table.output
    assert "decode tok/s" in table.stdout and f"requests of run {summary['run_id']}" in table.stdout


# -- in-process, on the fake backend ---------------------------------------------------------


@pytest.fixture()
def suite(tmp_path: Path) -> Path:
    return write_prompts(tmp_path / "suite.jsonl", ["Say hello.", "Name three colours now."])


def test_run_on_the_fake_backend_prints_the_json_summary(suite: Path, tmp_path: Path) -> None:
    import tests.fakes  # noqa: F401 - registers the `fake` backend

    db = tmp_path / "p.db"
    done = cli("run", "--backend", "fake", "--prompts", suite, "--db", db, "--max-tokens", "8",
               "--repetitions", "2", "--idle-seconds", "0", "--sensors", "estimate",
               "--label", "cli", "--json")  # fmt: skip
    assert done.exit_code == 0, done.output
    summary = json.loads(done.stdout)  # stdout holds only the JSON; progress went to stderr
    conn = sqlite3.connect(db)
    run_id, backend, label, status = conn.execute(
        "SELECT id, backend, label, status FROM runs"
    ).fetchone()
    assert (summary["run_id"], summary["backend"], summary["label"]) == (run_id, backend, label)
    assert (backend, label, status) == ("fake", "cli", "complete")
    outputs = [r[0] for r in conn.execute("SELECT output_tokens FROM requests WHERE warmup = 0")]
    assert outputs == [8] * 4 and summary["n_requests"] == 4
    assert summary["output_tokens_total"] == sum(outputs)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--max-tokens", "0"), "--max-tokens must be between 1 and 1000000"),
        (("--concurrency", "0"), "--concurrency takes counts of 1 or more"),
        (("--price-in", "1"), "--price-in"),
        (("--backend", "no-such-backend"), "unknown backend 'no-such-backend'"),
    ],
)
def test_bad_run_options_are_one_line_naming_the_flag(
    args: tuple[str, ...], needle: str, tmp_path: Path
) -> None:
    db = tmp_path / "x.db"
    done = cli("run", *args, "--db", db)
    assert done.exit_code == 2, done.output
    assert needle in one_error_line(done.stderr)
    assert not db.exists()  # refused before anything was written


def test_bad_model_path_is_one_line(tmp_path: Path) -> None:
    done = cli("run", "--model", tmp_path / "nope.gguf", "--db", tmp_path / "x.db")
    assert done.exit_code == 2, done.output
    assert one_error_line(done.stderr).startswith("edgeprof: error: model file")


def test_non_gguf_file_is_one_line(tmp_path: Path) -> None:
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 this is a zip, not a model")
    done = cli("run", "--model", fake, "--db", tmp_path / "x.db")
    assert done.exit_code == 2, done.output
    assert "is not a GGUF file" in one_error_line(done.stderr)


def test_malformed_prompt_file_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "fine"}\nnot json\n')
    done = cli("run", "--prompts", bad, "--db", tmp_path / "x.db")
    assert done.exit_code == 2, done.output
    assert f"{bad}, line 2" in one_error_line(done.stderr)


def test_probe_json_lists_sources_with_reasons() -> None:
    done = cli("probe", "--json", "--no-bandwidth")
    assert done.exit_code == 0, done.output
    data = json.loads(done.stdout)
    assert data["device"]["cores"] >= 1 and data["device"]["ram_bytes"] > 0
    sources = {p["source"]: p for p in data["power_sources"]}
    assert {"rapl", "hwmon", "battery", "estimate"} <= set(sources)
    for p in data["power_sources"]:
        assert p["available"] or p["reason"], p
    assert sources["estimate"]["method"] == "estimated"


def test_report_of_a_missing_database_is_one_line(tmp_path: Path) -> None:
    done = cli("report", tmp_path / "none.db")
    assert done.exit_code == 2, done.output
    assert "does not exist" in one_error_line(done.stderr)


# -- real processes ------------------------------------------------------------------------


def test_help_does_not_import_heavy_libraries() -> None:
    # A fresh interpreter: this test process has imported them all long ago.
    code = (
        "import sys; from edgeprof.cli import app; "
        "heavy = [m for m in ('llama_cpp', 'onnxruntime', 'pynvml', 'matplotlib', 'openai', "
        "'anthropic', 'numpy') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_entry_points_print_one_line_errors(tmp_path: Path) -> None:
    """`python -m edgeprof` and the `edgeprof` console script: help, and a library error as one
    line with exit status 2."""
    missing = tmp_path / "none.db"
    done = edgeprof_subprocess("--help")
    assert done.returncode == 0 and "run" in done.stdout and "report" in done.stdout
    done = edgeprof_subprocess("report", missing)
    assert done.returncode == 2 and "does not exist" in one_error_line(done.stderr)
    script = Path(sys.executable).parent / "edgeprof"
    env = {**os.environ, "EDGEPROF_DEBUG": ""}
    done2 = subprocess.run(
        [script, "report", missing], capture_output=True, text=True, env=env, check=False
    )
    assert done2.returncode == 2 and one_error_line(done2.stderr) == one_error_line(done.stderr)


# The fake backend in a real process: registered the way a plugin registers, then the real
# entry point. The demo model case exercises llama.cpp's own interrupted decode.
FAKE_MAIN = (
    "import sys, tests.fakes; from edgeprof.cli import main; sys.argv[0] = 'edgeprof'; main()"
)


@pytest.mark.parametrize(
    "backend",
    [
        pytest.param("fake"),
        pytest.param("llamacpp", marks=[pytest.mark.model, pytest.mark.slow]),
    ],
)
def test_ctrl_c_keeps_rows_as_aborted(backend: str, tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    args = ["run", "--backend", backend, "--max-tokens", "64", "--repetitions", "50",
            "--idle-seconds", "0", "--db", str(db)]  # fmt: skip
    if backend == "fake":
        # ~0.07 s per request at the fake's default 1000 tok/s
        command = [sys.executable, "-c", FAKE_MAIN, *args, "--sensors", "estimate"]
    else:
        command = [sys.executable, "-m", "edgeprof", *args]
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        env={**os.environ, "EDGEPROF_DEBUG": ""}, preexec_fn=interruptible,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        n = 0
        while time.monotonic() < deadline and n < 3 and proc.poll() is None:
            time.sleep(0.2)
            if db.exists():
                try:
                    n = sqlite3.connect(db).execute("SELECT count(*) FROM requests").fetchone()[0]
                except sqlite3.OperationalError:
                    n = 0  # tables not created yet
        why = proc.stderr.read() if proc.stderr and proc.poll() is not None else ""
        assert n >= 3, f"the run never got going: {proc.poll()} {why}"
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 130, stderr
        assert "kept as aborted" in stderr
    finally:  # a failed assertion or a timeout must not leave the run decoding for minutes
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    conn = sqlite3.connect(db)
    status, ended = conn.execute("SELECT status, ended_at FROM runs").fetchone()
    assert status == "aborted" and ended
    assert conn.execute("SELECT count(*) FROM requests").fetchone()[0] >= n
    assert conn.execute("SELECT count(*) FROM samples").fetchone()[0] > 0
