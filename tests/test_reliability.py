"""Losing nothing: many writers on one database, killed runs, full disks, unwritable paths.

Every test here runs real processes against a real SQLite file; the figures they produce are
in docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

import tests.fakes  # noqa: F401 - registers the "fake" backend, as a plugin would
from edgeprof.measure.workload import load_suite
from edgeprof.store import open_store
from edgeprof.store.liveness import STALE_AFTER_S, host_id, orphan_reason
from tests.builders import add_run, cli, device_row, write_prompts
from tests.cloudserver import CloudServer

REPO = Path(__file__).parents[1]
# The real command line with the test backend registered, as a plugin would be.
FAKE_MAIN = (
    "import sys, tests.fakes; from edgeprof.cli import main; sys.argv[0] = 'edgeprof'; main()"
)


def fake_run(db: Path, label: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-c", FAKE_MAIN, "run", "--backend", "fake", "--db", str(db),
        "--label", label, "--idle-seconds", "0", "--sensors", "estimate", "--hz", "50",
        *extra,
    ]  # fmt: skip


def popen(
    command: list[str], preexec_fn: Callable[[], object] | None = None
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        env={**os.environ, "EDGEPROF_DEBUG": ""}, preexec_fn=preexec_fn,
    )  # fmt: skip


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    # closing(): a sqlite3 connection's own context manager commits but does not close, and
    # the polling loops below would leave one open connection per poll
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute(sql).fetchall()


@pytest.mark.slow
def test_many_writers_on_one_database_lose_nothing(tmp_path: Path) -> None:
    """Six runs start together on one new file: every request and every final status lands.

    Before the fix one run in six, on average, lost its last rows and stayed `running`: the
    database file was opened outside SQLite and closed, which drops the process's POSIX locks.
    """
    db = tmp_path / "shared.db"
    writers = 6
    procs = [
        popen(fake_run(db, f"W{i}", "--repetitions", "3", "--warmup", "1", "--max-tokens", "16",
                       "--set", "tokens_per_s=3000"))
        for i in range(writers)
    ]  # fmt: skip
    outcomes = [p.communicate(timeout=300) for p in procs]
    for p, (_, stderr) in zip(procs, outcomes, strict=True):
        assert p.returncode == 0, stderr
    runs = rows(db, "SELECT label, status FROM runs ORDER BY label")
    assert runs == [(f"W{i}", "complete") for i in range(writers)]
    per_run = rows(
        db, "SELECT r.label, count(q.id) FROM runs r JOIN requests q ON q.run_id = r.id "
        "GROUP BY r.label ORDER BY r.label",
    )  # fmt: skip
    n_prompts = len(rows(db, "SELECT DISTINCT prompt_id FROM requests"))
    assert per_run == [(f"W{i}", 1 + 3 * n_prompts) for i in range(writers)]
    assert rows(db, "PRAGMA integrity_check") == [("ok",)]


@pytest.mark.slow
def test_a_killed_run_is_marked_aborted_with_what_it_measured(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    proc = popen(fake_run(db, "K", "--repetitions", "200", "--max-tokens", "64"))
    deadline = time.monotonic() + 120
    n = n_samples = 0
    # Samples reach the file once a second: wait for both, then kill without warning.
    while (n < 5 or n_samples == 0) and time.monotonic() < deadline:
        time.sleep(0.2)
        try:
            n = rows(db, "SELECT count(*) FROM requests WHERE warmup = 0")[0][0]
            n_samples = rows(db, "SELECT count(*) FROM samples")[0][0]
        except sqlite3.OperationalError:
            n = 0  # tables not created yet
    assert n >= 5 and n_samples > 0, proc.stderr.read() if proc.stderr else ""
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert rows(db, "SELECT status FROM runs") == [("running",)]  # nobody could say otherwise

    done = cli("report", db, "--json")
    assert done.exit_code == 0, done.output
    (run,) = json.loads(done.stdout)
    assert run["status"] == "aborted"
    assert "killed or crashed" in run["error"] and "pid" in run["error"]
    assert run["n_requests"] >= n and run["planned_requests"] > run["n_requests"]
    assert "is now marked aborted" in done.stderr
    assert rows(db, "SELECT count(*) FROM samples")[0][0] == n_samples or n_samples > 0


def test_orphan_rules() -> None:
    now = 1_000_000.0
    here = host_id()
    base = {"pid": 123, "started_at": "2026-01-01T00:00:00+00:00"}
    assert orphan_reason({**base, "host_id": here}, this_host=here, now_unix_s=now,
                         alive=lambda pid, t: True) is None  # fmt: skip
    gone = orphan_reason({**base, "host_id": here}, this_host=here, now_unix_s=now,
                         alive=lambda pid, t: False)  # fmt: skip
    assert gone is not None and "pid 123" in gone
    other = {**base, "host_id": "elsewhere"}
    fresh = {**other, "heartbeat_unix_s": now - 5}
    stale = {**other, "heartbeat_unix_s": now - STALE_AFTER_S - 1}
    assert orphan_reason(fresh, this_host=here, now_unix_s=now) is None
    assert "no heartbeat" in str(orphan_reason(stale, this_host=here, now_unix_s=now))
    # Runs recorded before writers were recorded carry nothing to judge by: left alone.
    assert orphan_reason({"pid": None, "host_id": None}, this_host=here, now_unix_s=now) is None


def test_a_live_run_is_left_alone(tmp_path: Path) -> None:
    """The reaper must never touch a run whose process is alive: this one is ours."""
    db = tmp_path / "p.db"
    with open_store(db) as store:
        store.upsert_device({"id": "d", "label": "x"})
        store.insert_run({"id": "r1", "device_id": "d", "backend": "fake", "status": "running",
                          "started_at": datetime.now(timezone.utc).isoformat(),
                          "pid": os.getpid(),
                          "host_id": host_id(), "heartbeat_unix_s": time.time()})  # fmt: skip
    with open_store(db) as store:
        assert store.reaped == []
        assert store.runs(["r1"])[0]["status"] == "running"


def _limit_file_size() -> None:
    # Python ignores SIGXFSZ, so a write past the limit fails with EFBIG: a full disk, for
    # SQLite's purposes, without filling one. The limit leaves room for a new database: its
    # migrations and vacuum pass through the write-ahead log, which nears 300 KiB since m011,
    # so at 300 KiB the run's first row already failed and the test saw no run at all.
    resource.setrlimit(resource.RLIMIT_FSIZE, (FULL_AT_BYTES, FULL_AT_BYTES))


FULL_AT_BYTES = 600 * 1024


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_the_database_stays_intact(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    prompts = write_prompts(tmp_path / "long.jsonl", [" ".join(["word"] * 400)] * 4)
    proc = popen(
        fake_run(db, "F", "--repetitions", "100", "--max-tokens", "400", "--prompts",
                 str(prompts), "--hz", "200"),
        preexec_fn=_limit_file_size,
    )  # fmt: skip
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode != 0
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert lines[-1].startswith("edgeprof: error: "), stderr
    assert "Traceback" not in stderr
    assert str(db) in lines[-1] and "space" in lines[-1]
    assert rows(db, "PRAGMA integrity_check") == [("ok",)]
    status = rows(db, "SELECT status, error FROM runs")
    assert status and status[0][0] in ("failed", "running")
    if status[0][0] == "running":  # the status could not be written either; the next open says
        with open_store(db) as store:
            assert store.reaped and store.runs()[0]["status"] == "aborted"


def test_an_unwritable_path_is_one_line() -> None:
    done = cli("run", "--backend", "fake", "--idle-seconds", "0", "--repetitions", "1",
               "--sensors", "estimate", "--db", "/proc/nope/x.db")  # fmt: skip
    assert done.exit_code == 2
    assert done.stderr.startswith("edgeprof: error: cannot create /proc/nope"), done.output
    assert "--db" in done.stderr and len(done.stderr.strip().splitlines()) == 1


@pytest.mark.model
def test_a_context_too_small_names_the_value_given(tmp_path: Path) -> None:
    """llama.cpp raises a tiny context to its minimum; the error says both numbers."""
    done = cli("run", "--ctx", "16", "--max-tokens", "300", "--repetitions", "1",
               "--warmup", "0", "--idle-seconds", "0", "--db", tmp_path / "p.db")  # fmt: skip
    assert done.exit_code == 2, done.output
    line = done.stderr.strip().splitlines()[-1]  # after the progress bar's last state
    assert line.startswith("edgeprof: error: ")
    assert "--ctx 16" in line and "raise --ctx" in line


def test_a_rate_limited_request_shows_its_attempts_and_wait(
    cloud_server: CloudServer, tmp_path: Path
) -> None:
    """The tests' own server refuses the first attempt with 429 and Retry-After: 1."""
    import uuid

    db = tmp_path / "p.db"
    prompts = write_prompts(tmp_path / "p.jsonl", ["one", "two"])
    model = f"fail=429&retry_after=1&chunks=4&id={uuid.uuid4().hex}"
    done = cli("run", "--backend", "openai", "--model", model, "--base-url",
               cloud_server.base_url, "--price-in", "1", "--price-out", "2", "--prompts", prompts,
               "--repetitions", "1", "--warmup", "0", "--db", db, "--remote")  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "refused (429/5xx) and retried" in done.stderr  # the run's own table says so

    report = cli("report", db, "--json", "--requests")
    (run,) = json.loads(report.stdout)
    first, second = run["requests"]
    assert first["attempts"] == 2 and first["retry_wait_s"] == pytest.approx(1.0, abs=0.05)
    assert second["attempts"] == 1 and second["retry_wait_s"] == 0
    # TTFT as felt includes the wait; from the answering attempt it does not.
    assert first["ttft_s"] >= 1.0 > first["ttft_final_attempt_s"]
    assert second["ttft_final_attempt_s"] == pytest.approx(second["ttft_s"], abs=0.01)
    assert run["retried_requests"] == 1 and run["retry_wait_s_total"] == pytest.approx(
        1.0, abs=0.05
    )


@pytest.mark.slow
def test_merging_a_database_that_a_profile_is_writing(tmp_path: Path) -> None:
    """From it: a consistent snapshot, said to be in progress. Into it: refused, untouched."""
    live = tmp_path / "live.db"
    proc = popen(fake_run(live, "L", "--repetitions", "400", "--max-tokens", "32"))
    try:
        # The run is still going when merged: it has 400 passes to make. The bound only keeps
        # a broken run from hanging the suite, and running out of it fails the test.
        deadline = time.monotonic() + 120
        n = 0
        while n < 5 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
            with contextlib.suppress(sqlite3.OperationalError, IndexError):
                n = rows(live, "SELECT count(*) FROM requests")[0][0]
        assert n >= 5 and proc.poll() is None, "the profile never wrote 5 requests while running"
        pooled = tmp_path / "pooled.db"
        done = cli("merge", live, "-o", pooled)
        assert done.exit_code == 0, done.output
        assert "was still running in live.db" in done.stderr
        assert rows(pooled, "SELECT status FROM runs") == [("running",)]
        # Whole requests only: every copied row has its measurements.
        copied = rows(pooled, "SELECT ttft_s, e2e_s, output_tokens FROM requests")
        assert copied and all(None not in r for r in copied)

        into = cli("merge", pooled, "-o", live)
        assert into.exit_code == 2 and "open in another process" in into.stderr
        assert rows(live, "SELECT count(*) FROM runs")[0][0] == 1  # nothing merged into it
    finally:
        proc.kill()
        proc.wait(timeout=30)


@pytest.mark.parametrize(
    "ddl",
    [
        "CREATE TRIGGER sneaky AFTER INSERT ON runs BEGIN DELETE FROM requests; END",
        "CREATE VIEW innocent AS SELECT * FROM runs",
    ],
)
def test_a_database_with_triggers_or_views_is_refused_by_name(ddl: str, tmp_path: Path) -> None:
    theirs = tmp_path / "theirs.db"
    with open_store(theirs) as store:
        add_run(store, device_row("their-box"))
    with sqlite3.connect(theirs) as conn:
        conn.execute(ddl)
    name = ddl.split()[2]
    mine = tmp_path / "mine.db"
    with open_store(mine) as store:
        add_run(store, device_row("my-box"))
    before = mine.read_bytes()

    commands: list[list[str | Path]] = [
        ["merge", theirs, "-o", mine],
        ["report", theirs],
        ["export", theirs, "-o", tmp_path / "out"],
        ["report", theirs, "--html", tmp_path / "r.html"],
    ]
    for args in commands:
        done = cli(*args)
        assert done.exit_code == 2, (args, done.output)
        assert name in done.stderr and "never creates" in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    assert mine.read_bytes() == before  # the merge left the destination as it was


def test_the_html_report_escapes_every_string_from_the_database(tmp_path: Path) -> None:
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    db = tmp_path / "p.db"
    with open_store(db) as store:
        run_id = add_run(store, device_row("box", label=evil), label=evil,
                         model_path=f"/m/{evil}.gguf")  # fmt: skip
        store.db.execute("UPDATE requests SET output_text = ?", [evil])
        store.db.execute("UPDATE prompts SET text = ?, name = ?", [evil, evil])
        store.db.execute("UPDATE runs SET quant = ?, error = ? WHERE id = ?", [evil, evil, run_id])
    out = tmp_path / "r.html"
    done = cli("report", db, "--html", out)
    assert done.exit_code == 0, done.output
    page = out.read_text()
    assert "<script" not in page.lower() and "<img src=x" not in page
    assert "&lt;script&gt;" in page  # shown as text, not run


@pytest.mark.model
@pytest.mark.slow
def test_two_demo_profiles_into_one_database_at_once(tmp_path: Path) -> None:
    """The reported case: two real runs of the demo model started together on one file."""
    db = tmp_path / "c.db"
    args = ["--max-tokens", "16", "--repetitions", "1", "--warmup", "0", "--idle-seconds", "0",
            "--threads", "1", "--db", str(db)]  # fmt: skip
    procs = [
        popen([sys.executable, "-m", "edgeprof", "run", *args, "--label", label])
        for label in ("A", "B")
    ]
    for p in procs:
        _, stderr = p.communicate(timeout=900)
        assert p.returncode == 0, stderr
    per_run = rows(
        db,
        "SELECT r.label, r.status, count(q.id) FROM runs r JOIN requests q ON q.run_id = r.id "
        "GROUP BY r.id ORDER BY r.label",
    )
    n = len(load_suite(None))
    assert per_run == [("A", "complete", n), ("B", "complete", n)]
