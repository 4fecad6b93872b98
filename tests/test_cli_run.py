"""End to end on the real demo model through the real command line."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time

from edgeprof.workload import load_suite
from tests.conftest import edgeprof_cli


def test_run_json_has_real_figures(demo_run):
    _, summary = demo_run
    assert summary["status"] == "complete"
    assert summary["backend"] == "llamacpp" and summary["quant"] == "Q4_1"
    assert summary["decode_tps_mean"] > 0 and summary["ttft_p50_s"] > 0
    assert summary["n_requests"] == 2 * len(load_suite()) and summary["n_warmup"] == 1
    assert summary["energy_method"] == "estimated"  # no power sensor on a VM


def test_run_fills_every_table(demo_run):
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
        assert energy_j > 0 and method == "estimated"
    sensor = conn.execute(
        "SELECT method, detail FROM sensors WHERE sensor = 'estimate:cpu'"
    ).fetchone()
    assert sensor[0] == "estimated" and "TDP" in sensor[1]
    run = conn.execute(
        "SELECT status, load_s, idle_power_w, recorder_cpu_s_per_s FROM runs"
    ).fetchone()
    assert run[0] == "complete" and run[1] > 0 and run[2] > 0 and 0 <= run[3] < 0.5


def test_exact_token_counts_match_the_tokenizer(demo_run, demo_model):
    from llama_cpp import Llama

    from edgeprof.backends.llamacpp import prompt_tokens

    db, _ = demo_run
    llm = Llama(model_path=str(demo_model), vocab_only=True, verbose=False)
    expected = {p.id: len(prompt_tokens(llm, p.messages)) for p in load_suite()}
    conn = sqlite3.connect(db)
    for prompt_id, n in conn.execute("SELECT prompt_id, input_tokens FROM requests"):
        assert n == expected[prompt_id]


def test_report_json_returns_the_same_figures(demo_run):
    db, summary = demo_run
    result = edgeprof_cli("report", str(db), "--json")
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)
    for key in ("run_id", "decode_tps_mean", "ttft_p50_s", "j_per_output_token", "energy_method"):
        assert row[key] == summary[key]
    table = edgeprof_cli("report", str(db), "--requests")
    assert table.returncode == 0 and "decode tok/s" in table.stdout


def test_probe_json_lists_sources_with_reasons():
    result = edgeprof_cli("probe", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["device"]["cores"] >= 1 and data["device"]["ram_bytes"] > 0
    sources = {p["source"]: p for p in data["power_sources"]}
    assert {"rapl", "hwmon", "battery", "estimate"} <= set(sources)
    for p in data["power_sources"]:
        assert p["available"] or p["reason"], p
    assert sources["estimate"]["method"] == "estimated"


def test_bad_model_path_is_one_line(tmp_path):
    result = edgeprof_cli(
        "run", "--model", str(tmp_path / "nope.gguf"), "--db", str(tmp_path / "x.db")
    )
    assert result.returncode == 2
    assert (
        result.stderr.startswith("edgeprof: error: model file") and "Traceback" not in result.stderr
    )
    assert len(result.stderr.strip().splitlines()) == 1


def test_non_gguf_file_is_one_line(tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 this is a zip, not a model")
    result = edgeprof_cli("run", "--model", str(fake), "--db", str(tmp_path / "x.db"))
    assert result.returncode == 2
    assert "is not a GGUF file" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_malformed_prompt_file_is_one_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "fine"}\nnot json\n')
    result = edgeprof_cli("run", "--prompts", str(bad), "--db", str(tmp_path / "x.db"))
    assert result.returncode == 2
    assert f"{bad}, line 2" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_help_does_not_import_heavy_libraries():
    code = (
        "import sys; from edgeprof.cli import app; "
        "heavy = [m for m in ('llama_cpp', 'onnxruntime', 'pynvml', 'matplotlib', 'openai', "
        "'anthropic', 'numpy') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert edgeprof_cli("--help").returncode == 0


def test_ctrl_c_keeps_rows_as_aborted(tmp_path):
    db = tmp_path / "p.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgeprof", "run", "--max-tokens", "64", "--repetitions", "50",
         "--idle-seconds", "0", "--db", str(db)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 240
    n = 0
    while time.monotonic() < deadline and n < 3:
        time.sleep(0.5)
        if db.exists():
            try:
                n = sqlite3.connect(db).execute("SELECT count(*) FROM requests").fetchone()[0]
            except sqlite3.OperationalError:
                n = 0  # tables not created yet
    assert n >= 3, "the run never got going"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "kept as aborted" in stderr
    conn = sqlite3.connect(db)
    status, ended = conn.execute("SELECT status, ended_at FROM runs").fetchone()
    assert status == "aborted" and ended
    assert conn.execute("SELECT count(*) FROM requests").fetchone()[0] >= n
    assert conn.execute("SELECT count(*) FROM samples").fetchone()[0] > 0
