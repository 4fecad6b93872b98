"""Test data shared by the test modules: synthetic profile rows that follow the schema, prompt
files, and the command line run in-process or as a real subprocess.

Test modules import from here (and from tests.fakes, tests.cloud_fixtures, tests.cloudserver);
never from one another or from conftest.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from typer.testing import CliRunner, Result

from edgeprof.backends.base import Backend, Generation, Request
from edgeprof.backends.signals import AnswerSignals
from edgeprof.store import Store
from edgeprof.store.ids import ulid
from edgeprof.store.rows import QualityRow

Row = dict[str, Any]


def loose(rows: Iterable[Mapping[str, Any]]) -> list[Row]:
    """Stored rows as plain dicts, for tests that assert on figures they know are set (the
    library reads them through `edgeprof.store.rows`' types, which say what may be None)."""
    return [dict(r) for r in rows]


# -- profile rows -------------------------------------------------------------------------


def device_row(hostname: str, label: str | None = None, cpu: str = "Test CPU 4-core") -> Row:
    return {
        "id": hashlib.sha256(f"{hostname}|{cpu}".encode()).hexdigest()[:32],
        "label": label or hostname,
        "hostname": hostname,
        "cpu_model": cpu,
        "cores": 4,
        "threads": 8,
        "ram_bytes": 8 << 30,
        "os": "Linux 6.1",
        "arch": "x86_64",
        "accelerators": [],
        "mem_bandwidth_gbs": None,
    }


def prompt_row(text: str, suite: str = "demo") -> Row:
    return {"id": hashlib.sha256(text.encode()).hexdigest(), "suite": suite, "name": text[:12],
            "text": text}  # fmt: skip


def request_row(run_id: str, seq: int, **fields: Any) -> Row:
    """A measured request row (`warmup` 0) 1 s apart from its neighbours; `fields` override."""
    t0 = seq * 1_000_000_000
    row: Row = {
        "id": ulid(),
        "run_id": run_id,
        "prompt_id": None,
        "seq": seq,
        "repetition": seq,
        "warmup": 0,
        "input_tokens": 20,
        "output_tokens": 16,
        "token_count_method": "tokenizer",
        "t_start_ns": t0,
        "t_end_ns": t0 + 800_000_000,
        "ttft_s": 0.05,
        "prefill_tps": 400.0,
        "decode_tps": 50.0,
        "e2e_s": 0.8,
        "itl_p50_s": 0.02,
        "itl_p90_s": 0.025,
        "itl_p99_s": 0.03,
        "finish_reason": "length",
        "energy_j": 12.0,
        "energy_net_j": 8.0,
        "energy_method": "estimated",
        "avg_power_w": 15.0,
        "peak_rss_bytes": 200_000_000,
        "cost_usd": None,
        "output_text": "Hello there, how can I help?",
        "error": None,
        "cached_input_tokens": None,
        # how sure the model was (m011): NULL unless a test sets them
        "signal_source": None,
        "signal_tokens": None,
        "logprob_mean": None,
        "logprob_min": None,
        "entropy_mean": None,
        "first_margin": None,
    }
    unknown = set(fields) - set(row)
    if unknown:
        raise KeyError(f"request_row has no field {sorted(unknown)}")
    row.update(fields)
    return row


def check_signal_columns(
    row: Mapping[str, Any], output_tokens: int, source: str = "logits"
) -> Mapping[str, Any]:
    """A request row's signal columns (store m011), or `AnswerSignals.row()`: over exactly the
    answer's tokens, each figure in its range."""
    assert row["signal_source"] == source, row
    assert row["signal_tokens"] == output_tokens > 0
    assert row["logprob_min"] <= row["logprob_mean"] <= 0.0
    assert row["entropy_mean"] is not None and row["entropy_mean"] >= 0.0
    assert row["first_margin"] is not None and row["first_margin"] >= 0.0
    return row


def generation(backend: Backend, request: Request) -> Generation:
    """One request's whole answer from a loaded backend, its token events drained."""
    gen = backend.generate(request)
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        return cast(Generation, stop.value)


def check_signals(g: Generation) -> AnswerSignals:
    """An answer's signals, present and over exactly its tokens."""
    assert g.signals is not None
    check_signal_columns(g.signals.row(), g.output_tokens)
    return g.signals


def answers_without_signals(
    off: Backend, requests: Sequence[Request], concurrency: int
) -> tuple[list[Generation], dict[int, Generation]]:
    """`off`, a backend built with signals off: each request alone, then all of them served
    `concurrency` at a time (by `id` of the request); none carries signals. Closed after."""
    off.load()
    try:
        alone = [generation(off, r) for r in requests]
        batched = {id(r): res.generation for r, res in off.serve(requests, concurrency)}
    finally:
        off.close()
    assert all(g.signals is None for g in [*alone, *batched.values()])
    return alone, batched


def add_run(
    store: Store,
    device: Row,
    *,
    run_id: str | None = None,
    status: str = "complete",
    n_requests: int = 3,
    n_samples: int = 40,
    backend: str = "llamacpp",
    decode_tps: float = 50.0,
    power_w: float = 15.0,
    label: str | None = "baseline",
    model_path: str = "/opt/models/smollm2.gguf",
    params: Row | None = None,
    environment: Row | None = None,
) -> str:
    """One run with its requests (the first a warm-up), sensors and samples, written the way
    the runner writes them. Request `seq` has decode tok/s `decode_tps + seq`."""
    store.upsert_device(device)
    prompts = [prompt_row("Say hello."), prompt_row("Name three colours.")]
    store.insert_prompts(prompts)
    run_id = run_id or ulid()
    store.insert_run(
        {
            "id": run_id,
            "device_id": device["id"],
            "backend": backend,
            "target": Path(model_path).name,
            "model_path": model_path,
            "model_sha256": "ab" * 32,
            "model_size_bytes": 98_000_000,
            "quant": "Q4_1",
            "label": label,
            "prompt_suite": "demo",
            "params": params or {"threads": 4, "max_tokens": 16},
            "environment": environment or {"python": "3.11.7", "llama_cpp": "0.3.36"},
            "edgeprof_version": "0.1.0",
            "started_at": "2026-05-01T10:00:00Z",
            "ended_at": None if status == "running" else "2026-05-01T10:01:00Z",
            "status": status,
            "idle_power_w": 5.0,
            "idle_method": "measured",
            "load_s": 0.4,
            "load_energy_j": 6.0,
            "recorder_hz": 10.0,
            "recorder_cpu_s_per_s": 0.002,
            "t0_ns": 123_456_789,
        }
    )
    store.insert_sensors(
        [
            {"run_id": run_id, "sensor": "estimate", "metric": "power_w", "domain": "package",
             "unit": "W", "method": "estimated", "detail": "TDP x CPU load"},
            {"run_id": run_id, "sensor": "process", "metric": "rss_bytes", "domain": "process",
             "unit": "B", "method": "measured", "detail": "/proc/self/status"},
        ]
    )  # fmt: skip
    for seq in range(n_requests):
        store.insert_request(
            request_row(
                run_id,
                seq,
                prompt_id=prompts[seq % 2]["id"],
                warmup=int(seq == 0),
                decode_tps=decode_tps + seq,
                energy_j=power_w * 0.8,
                energy_net_j=(power_w - 5.0) * 0.8,
                avg_power_w=power_w,
            )
        )
    step_ns = 100_000_000
    store.insert_samples(
        [(run_id, i * step_ns, "estimate", "power_w", power_w + (i % 5)) for i in range(n_samples)]
        + [(run_id, i * step_ns, "process", "rss_bytes", 2e8 + i) for i in range(n_samples // 2)]
    )
    return run_id


def measured_on(store: Store, run_id: str, sensor: str, domain: str) -> None:
    """Make a run's energy measured by one sensor of `domain` (builders' runs are estimated)."""
    store.db.execute("DELETE FROM sensors WHERE run_id = ? AND metric = 'power_w'", [run_id])
    store.insert_sensors(
        [{"run_id": run_id, "sensor": sensor, "metric": "power_w", "domain": domain,
          "unit": "W", "method": "measured", "detail": "test"}]
    )  # fmt: skip
    store.db.execute("UPDATE requests SET energy_method = 'measured' WHERE run_id = ?", [run_id])
    store.db.conn.commit()


# -- prompt suites ------------------------------------------------------------------------


def write_prompts(path: Path, prompts: Iterable[str | Mapping[str, Any]]) -> Path:
    """A .jsonl prompt suite: a string becomes {"name": "p<i>", "prompt": text}; a mapping is
    written as given (`system`, `messages`, ...)."""
    lines = [
        json.dumps({"name": f"p{i}", "prompt": p} if isinstance(p, str) else dict(p))
        for i, p in enumerate(prompts)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# -- the command line ---------------------------------------------------------------------

# Wide enough that rich never wraps a table cell or a help line; no debug tracebacks.
CLI_ENV: dict[str, str | None] = {"COLUMNS": "200", "NO_COLOR": "1", "EDGEPROF_DEBUG": None}


def cli(*args: str | Path, env: Mapping[str, str | None] | None = None) -> Result:
    """`edgeprof ARGS` in this process (typer's CliRunner): `.stdout` and `.stderr` apart,
    `.exit_code`. Library errors become the same one-line message as the real command."""
    from edgeprof.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], env={**CLI_ENV, **(env or {})})


def interruptible() -> None:
    """`preexec_fn` for a process a test will Ctrl-C: SIGINT back to its default, so Python
    installs its KeyboardInterrupt handler even when the test suite itself runs with SIGINT
    ignored (a background job of a non-interactive shell inherits SIG_IGN, and Python leaves
    an ignored SIGINT ignored, as a user's `edgeprof run &` should)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def edgeprof_subprocess(
    *args: str | Path, env: Mapping[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """`python -m edgeprof ARGS` in a real subprocess: for what only a process shows (the
    entry point, signals, a fresh interpreter)."""
    return subprocess.run(
        [sys.executable, "-m", "edgeprof", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "EDGEPROF_DEBUG": "", **(env or {})},
        check=False,
    )


def quality_row(run: Mapping[str, Any], *, kld_mean: float, delta_ppl_pct: float = 1.0,
                top1: float = 0.95) -> QualityRow:  # fmt: skip
    """A hand-made `edgeprof quality` row for the target `run` measured (same model_sha256,
    backend and quant), against a made-up F32 reference."""
    return cast(QualityRow, {
        "id": ulid(), "target": run.get("target"), "backend": run["backend"],
        "quant": run.get("quant"), "model_sha256": run.get("model_sha256"),
        "file_sha256": "cd" * 32, "reference": "model.F32.gguf", "reference_sha256": "ef" * 32,
        "reference_note": "reference: dequantized from Q4_1", "text_name": "bundled: eval.txt",
        "text_sha256": "01" * 32, "ctx": 512, "ppl": 20.0 * (1 + delta_ppl_pct / 100),
        "ref_ppl": 20.0, "delta_ppl_pct": delta_ppl_pct, "kld_mean": kld_mean,
        "kld_p99": kld_mean * 8, "top1_agreement": top1,
    })  # fmt: skip


def graded(store: Store, run_id: str, suite: str) -> None:
    """Expectations for the run's first prompt (under `suite`) and a rule grade of its first
    answer: rows for the `expectations` and `grades` tables."""
    from edgeprof.grading.assertions import Assertion
    from edgeprof.grading.grades import RULE, Grade
    from edgeprof.grading.records import replace_grades, save_expectations
    from edgeprof.measure.prompt import Prompt

    first = store.requests(run_id)[0]
    prompt = Prompt(str(first["prompt_id"]), suite, "p0", (),
                    assertions=(Assertion("icontains", value="t0"),))  # fmt: skip
    save_expectations(store, [prompt])
    grade = Grade(run_id, str(first["id"]), prompt.id, 0, "icontains", RULE, True, 1.0,
                  "contains 't0'", expectations_sha256=prompt.expectations_sha256())  # fmt: skip
    replace_grades(store, [str(first["id"])], [RULE], [grade])


def bundled_tasks(path: Path, names: Sequence[str]) -> Path:
    """The bundled `tasks` suite's prompts named `names`, written to `path`."""
    from importlib import resources

    text = resources.files("edgeprof.data").joinpath("tasks.jsonl").read_text("utf-8")
    lines = [line for line in text.splitlines() if json.loads(line)["name"] in names]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
