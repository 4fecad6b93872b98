"""Device backends in a worker process of their own (edgeprof.measure.isolation): a crash
there is a failed run with its reason, trace and log, and this process goes on; memory is the
worker's; token times taken there land inside the windows measured here."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgeprof.analysis.summary import summarize_run
from edgeprof.backends import register_backend, unregister_backend
from edgeprof.errors import ModelLoadError, WorkerCrashed
from edgeprof.measure.isolation import IN_PROCESS_ENV, crash_message, signal_name, tail
from edgeprof.measure.runner import RunConfig, profile
from edgeprof.store import Store
from tests.builders import cli, write_prompts
from tests.crashy import MIB, CrashBackend

RATE = 400.0  # the fake's decode tok/s


@pytest.fixture(autouse=True)
def crashy() -> Iterator[None]:
    register_backend("crashy", CrashBackend)
    yield
    unregister_backend("crashy")


@pytest.fixture()
def prompts(tmp_path: Path) -> Path:
    return write_prompts(tmp_path / "p.jsonl", ["Say hello to everyone.", "Name three colours."])


def _config(tmp_path: Path, prompts: Path, **settings: Any) -> RunConfig:
    return RunConfig(backend="crashy", prompts=str(prompts), db=tmp_path / "p.db",
                     repetitions=2, warmup=1, max_tokens=16, idle_seconds=0, hz=50,
                     settings={"tokens_per_s": RATE, "ttft_s": 0.005, **settings})  # fmt: skip


def _run_row(db: Path) -> dict[str, Any]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    (row,) = conn.execute("SELECT * FROM runs").fetchall()
    return dict(row)


def _n_requests(db: Path) -> int:
    return int(sqlite3.connect(db).execute("SELECT count(*) FROM requests").fetchone()[0])


# -- crashes are results -------------------------------------------------------------------


@pytest.mark.parametrize(("how", "signal"), [("segv", "SIGSEGV"), ("abort", "SIGABRT")])
def test_a_crash_while_loading_fails_the_run_naming_signal_and_phase(
    tmp_path: Path, prompts: Path, how: str, signal: str
) -> None:
    config = _config(tmp_path, prompts, crash_in="load", crash_how=how)
    with pytest.raises(WorkerCrashed) as caught:
        profile(config)
    run = _run_row(tmp_path / "p.db")
    assert run["status"] == "failed"
    assert run["error"].startswith(f"crashy engine crashed ({signal}) while loading the model")
    assert run["error"] == str(caught.value)
    # faulthandler's trace (this test backend's frame in it) and the worker's stderr
    assert (
        f"Fatal Python error: {'Segmentation fault' if how == 'segv' else 'Aborted'}"
        in (run["worker_trace"])
    )
    assert "tests/crashy.py" in run["worker_trace"] and "in load" in run["worker_trace"]
    assert run["worker_log"].startswith("crashy: loading, pid ")
    files = Path(run["worker_files"])
    assert files == tmp_path / "crashes" / run["id"] and str(files) in run["error"]
    assert (files / "faulthandler.txt").read_text().strip() == run["worker_trace"]
    assert _n_requests(tmp_path / "p.db") == 0


def test_a_crash_importing_the_native_library_is_named_before_any_run(
    tmp_path: Path, prompts: Path
) -> None:
    from tests.crashy import ImportCrashBackend

    register_backend("crashy", ImportCrashBackend)
    with pytest.raises(WorkerCrashed) as caught:
        profile(_config(tmp_path, prompts))
    message = str(caught.value)
    assert message.startswith(
        "crashy engine crashed (SIGSEGV) while starting (importing tests.segv_on_import); "
        "its trace and last log lines are in "
    )
    files = Path(message.rsplit(" are in ", 1)[1])
    assert "segv_on_import.py" in (files / "faulthandler.txt").read_text()
    assert not (tmp_path / "p.db").exists() or _n_runs(tmp_path / "p.db") == 0


def _n_runs(db: Path) -> int:
    return int(sqlite3.connect(db).execute("SELECT count(*) FROM runs").fetchone()[0])


def test_killed_mid_request_keeps_the_finished_requests_and_says_out_of_memory(
    tmp_path: Path, prompts: Path
) -> None:
    # the warm-up and the first measured request finish; the second measured one is killed
    config = _config(tmp_path, prompts, crash_in="request", crash_at=3, crash_how="kill",
                     alloc_mib=64)  # fmt: skip
    with pytest.raises(WorkerCrashed, match=r"killed \(SIGKILL\) while answering a request"):
        profile(config)
    run = _run_row(tmp_path / "p.db")
    assert run["status"] == "failed"
    peak_mib = float(run["error"].split("peak RSS ")[1].split(" of ")[0].replace(",", ""))
    assert "likely out of memory" in run["error"] and peak_mib >= 64
    assert run["worker_trace"] is None  # SIGKILL leaves no trace, only the log
    assert run["worker_log"].startswith("crashy: loading")
    assert _n_requests(tmp_path / "p.db") == 2


def test_an_unexpected_exit_is_named_as_such(tmp_path: Path, prompts: Path) -> None:
    config = _config(tmp_path, prompts, crash_in="request", crash_at=1, crash_how="exit")
    with pytest.raises(WorkerCrashed, match=r"exited unexpectedly \(exit status 3\) while"):
        profile(config)
    assert _run_row(tmp_path / "p.db")["status"] == "failed"


def test_the_cli_prints_one_line_and_exits_normally(tmp_path: Path, prompts: Path) -> None:
    res = cli("run", "--backend", "crashy", "--prompts", prompts, "--db", tmp_path / "p.db",
              "--idle-seconds", "0", "--set", "crash_in=load", "--max-tokens", "4")  # fmt: skip
    assert res.exit_code == 2, res.stderr  # edgeprof's error exit, not a dead interpreter
    (line,) = [ln for ln in res.stderr.splitlines() if "crashed" in ln]
    assert "crashy engine crashed (SIGSEGV) while loading the model" in line
    report = cli("report", tmp_path / "p.db")
    words = " ".join((report.stdout + report.stderr).split())  # rich wraps long lines
    assert "failed after 0 of" in words and "while loading the model" in words
    assert "its trace and last log lines are in" in words


def test_an_exception_in_the_worker_reads_as_it_would_in_process(
    tmp_path: Path, prompts: Path
) -> None:
    config = _config(tmp_path, prompts, fail_at_request=2)
    with pytest.raises(RuntimeError, match="fake backend crashed at request 2"):
        profile(config)
    run = _run_row(tmp_path / "p.db")
    assert run["error"] == "RuntimeError: fake backend crashed at request 2"
    assert run["worker_trace"] is None and _n_requests(tmp_path / "p.db") == 1


# -- the worker runs the model, measured from here -----------------------------------------


def test_the_model_runs_in_the_worker_and_its_tokens_land_in_our_windows(
    tmp_path: Path, prompts: Path
) -> None:
    run_id = profile(_config(tmp_path, prompts))
    with Store(tmp_path / "p.db") as store:
        run = store.runs([run_id])[0]
        rows = store.requests(run_id)
        s = summarize_run(store, run_id)
    assert run["params"]["model_pid"] != os.getpid()
    # params() as the loaded backend says them: the worker's, not this process's copy's
    assert run["params"]["params_pid"] == run["params"]["model_pid"]
    assert not (tmp_path / "crashes").exists()
    # the worker's perf_counter_ns and ours are one clock: TTFT is at least the fake's wait,
    # and decode runs at the fake's rate (a skewed clock would move both far off)
    for r in rows:
        ttft_s, e2e_s = r["ttft_s"], r["e2e_s"]
        assert ttft_s is not None and e2e_s is not None and 0.005 <= ttft_s < e2e_s
        assert r["output_tokens"] == 16
    assert s.decode_tps_mean is not None and 0.8 * RATE < s.decode_tps_mean <= RATE * 1.01


def test_in_process_escape_hatch(
    tmp_path: Path, prompts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(IN_PROCESS_ENV, "1")
    run_id = profile(_config(tmp_path, prompts))
    with Store(tmp_path / "p.db") as store:
        assert store.runs([run_id])[0]["params"]["model_pid"] == os.getpid()


def test_peak_rss_is_the_workers_not_the_profilers(tmp_path: Path, prompts: Path) -> None:
    """The profiler holds 400 MiB, the model 48 MiB: the worker's peak counts the 48 and not
    the 400; in-process (the wrong answer) both would count."""
    held_here = bytearray(b"\1" * (400 * MIB))
    isolated = profile(_config(tmp_path, prompts, alloc_mib=48))
    config = _config(tmp_path, prompts, alloc_mib=48)
    config.in_process = True
    together = profile(config)
    with Store(tmp_path / "p.db") as store:
        worker_peak = summarize_run(store, isolated).peak_rss_bytes
        in_process_peak = summarize_run(store, together).peak_rss_bytes
    assert worker_peak is not None and in_process_peak is not None
    assert 48 * MIB <= worker_peak < 400 * MIB
    assert in_process_peak >= 400 * MIB
    del held_here


# -- pieces ------------------------------------------------------------------------------


def test_crash_messages() -> None:
    assert signal_name(-11) == "SIGSEGV" and signal_name(3) is None
    assert crash_message("llama.cpp", -11, "loading the model") == (
        "llama.cpp crashed (SIGSEGV) while loading the model"
    )
    assert crash_message("llama.cpp", -6, "x") == "llama.cpp crashed (SIGABRT) while x"
    killed = crash_message("llama.cpp", -9, "loading the model", 3 * 2**30)
    assert killed.startswith("llama.cpp was killed (SIGKILL) while loading the model, likely")
    assert "peak RSS 3,072 of " in killed and killed.endswith(" MiB")
    assert "exit status 1" in crash_message("llama.cpp", 1, "x")


def test_tail_keeps_the_last_whole_lines(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_text("".join(f"line {i}\n" for i in range(1000)))
    text = tail(log, 100)
    assert text.endswith("line 999") and text.startswith("line ") and len(text) <= 100
    assert text.splitlines()[0] in {f"line {i}" for i in range(1000)}  # no partial first line
    assert tail(tmp_path / "absent") == ""


def test_a_missing_dependency_of_llama_cpp_is_named_not_called_not_installed() -> None:
    """llama-cpp-python present, `diskcache` (which it imports) missing: the ImportError's own
    message and its fix, not "llama-cpp-python is not installed"."""
    code = (
        "import sys; sys.modules['diskcache'] = None\n"
        "from edgeprof.backends.llamacpp import import_llama_cpp\n"
        "try:\n    import_llama_cpp()\nexcept Exception as e:\n    print(type(e).__name__, e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    assert out.startswith(ModelLoadError.__name__)
    assert "llama-cpp-python is installed but could not be imported" in out
    assert "diskcache" in out and "pip install diskcache" in out
    assert "is not installed" not in out


def test_a_missing_llama_cpp_is_called_not_installed() -> None:
    code = (
        "import sys; sys.modules['llama_cpp'] = None\n"
        "from edgeprof.backends.llamacpp import import_llama_cpp\n"
        "try:\n    import_llama_cpp()\nexcept Exception as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    assert out.startswith("llama-cpp-python is not installed; run `pip install llama-cpp-python`")


@pytest.mark.model
@pytest.mark.slow
def test_decide_goes_on_past_a_crashed_target_and_names_it(tmp_path: Path) -> None:
    """Real llama.cpp, in its worker: one request at a time measures; decoding two at once
    segfaults (tests.crashy.ServeCrashLlama). decide compares what it measured and says which
    target crashed, in the verdict and the notes; the failed run keeps its trace."""
    from edgeprof.backends import backend_class
    from tests.crashy import ServeCrashLlama

    db = tmp_path / "p.db"
    four = Path(__file__).parent / "data" / "four_prompts.jsonl"
    original = backend_class("llamacpp")
    register_backend("llamacpp", ServeCrashLlama)
    try:
        res = cli("decide", "--requests-per-day", "2000", "--db", db, "--max-tokens", "8",
                  "--repetitions", "1", "--warmup", "0", "--idle-seconds", "0.2",
                  "--prompts", four, "--device", "rpi5-8gb", "--no-onnx",
                  "--concurrency", "1,2", "--json")  # fmt: skip
    finally:
        register_backend("llamacpp", original)
    assert res.exit_code == 0, res.stderr
    d = json.loads(res.stdout)
    assert [r["target"] for r in d["runs"]] == ["llama.cpp"]
    assert (
        "Not compared: llama.cpp ×2 crashed (SIGSEGV, serving 4 requests 2 at a time)"
        in (d["verdict"])
    )
    (note,) = [n for n in d["notes"] if "left out" in n]
    assert note.startswith("llama.cpp ×2 left out: llama.cpp crashed (SIGSEGV) while serving")
    rows = (
        sqlite3.connect(db)
        .execute("SELECT status, worker_trace FROM runs ORDER BY started_at")
        .fetchall()
    )
    assert [r[0] for r in rows] == ["complete", "failed"]
    assert rows[0][1] is None and "Segmentation fault" in rows[1][1]


def test_worker_and_profiler_share_one_system_wide_clock() -> None:
    from edgeprof.errors import UsageError
    from edgeprof.measure.isolation import GLOBAL_CLOCKS, check_clock

    here = time.get_clock_info("perf_counter").implementation
    assert here in GLOBAL_CLOCKS
    check_clock(here)
    with pytest.raises(UsageError, match=r"not one system-wide clock.*--in-process"):
        check_clock("time()")


def test_probe_says_where_the_model_will_run(monkeypatch: pytest.MonkeyPatch) -> None:
    found = json.loads(cli("probe", "--json", "--no-bandwidth").stdout)
    assert found["model_process"].startswith("llama.cpp and ONNX Runtime in a worker process")
    monkeypatch.setenv(IN_PROCESS_ENV, "1")
    found = json.loads(cli("probe", "--json", "--no-bandwidth").stdout)
    assert found["model_process"].startswith("in edgeprof's own process")


def test_closing_mid_request_stops_the_worker_at_once(tmp_path: Path) -> None:
    """Ctrl-C between two tokens leaves a request in flight: close() must not wait for it."""
    from edgeprof.backends import BackendOptions, Request
    from edgeprof.measure.isolation import WorkerBackend

    worker = WorkerBackend(CrashBackend(BackendOptions(), CrashBackend.Settings(tokens_per_s=5)))
    worker.start()
    worker.load()
    gen = worker.generate(Request("p", ({"role": "user", "content": "hi"},), max_tokens=1000))
    next(gen)  # the first token; 999 more would take 200 s
    t0 = time.perf_counter()
    worker.close()
    assert time.perf_counter() - t0 < 5 and worker.proc is not None
    assert worker.proc.returncode is not None
    assert not worker.dir.exists()  # no crash: no folder kept


def test_a_close_that_fails_still_ends_the_worker_at_once() -> None:
    from edgeprof.backends import BackendOptions
    from edgeprof.measure.isolation import CLOSE_WAIT_S, WorkerBackend

    options = BackendOptions(settings={"crash_in": "close"})  # what the worker builds from
    worker = WorkerBackend(CrashBackend(options, CrashBackend.Settings(crash_in="close")))
    worker.load()
    t0 = time.perf_counter()
    worker.close()
    assert time.perf_counter() - t0 < CLOSE_WAIT_S / 2  # exited, not waited for and killed
    assert worker.proc is not None and worker.proc.returncode == 0


@pytest.mark.model
def test_answer_signals_come_back_from_the_worker(demo_model: Path) -> None:
    """The worker pickles each Generation back: its signals (backends/signals.py) arrive as
    the backend read them in-process, one request alone and served in a batch."""
    from edgeprof.backends import BackendOptions, Generation, Request
    from edgeprof.backends.llamacpp import LlamaCppBackend
    from edgeprof.measure.isolation import WorkerBackend

    options = BackendOptions(model=str(demo_model), threads=1, ctx=1024)
    request = Request("p", ({"role": "user", "content": "Name three colours."},), max_tokens=12)

    def answer(backend: Any) -> Generation:
        gen = backend.generate(request)
        while True:
            try:
                next(gen)
            except StopIteration as stop:
                return stop.value

    here = LlamaCppBackend(options)
    here.load()
    try:
        expected = answer(here)
    finally:
        here.close()
    worker = WorkerBackend(LlamaCppBackend(options))
    worker.start()
    worker.load()
    try:
        alone = answer(worker)
        ((_, served),) = list(worker.serve([request], 1))
    finally:
        worker.close()
    assert expected.signals is not None and expected.signals.tokens == expected.output_tokens
    assert alone.signals == expected.signals
    assert served.generation.text == expected.text
    assert served.generation.signals is not None
    assert served.generation.signals.tokens == expected.output_tokens
    assert served.generation.signals.logprob_mean == pytest.approx(expected.signals.logprob_mean)
