"""llama-bench results (`llama-bench -o json` or `-o jsonl`) as runs in the profile database.

A user's llama-bench history then sits beside edgeprof's own runs, in `report`, `merge` and
`export`. Choices, and why:

- One run per llama-bench test entry (one line of its table: pp512, tg128, pp512+tg128, each
  at a depth). An entry is one measurement with its own repetitions; a run holding a pp and a
  tg entry would mix two kinds of request in one mean.
- Each repetition (`samples_ns`) is one request row: a pp test fills `input_tokens` and
  `prefill_tps`, a tg test `output_tokens` and `decode_tps`, both `e2e_s`; TTFT, ITL and
  energy stay NULL (llama-bench measures none of them). n, mean ± sd and intervals then come
  from the same summary as edgeprof's runs, and the mean equals llama-bench's `avg_ts` (the
  mean of its `samples_ts`, which are these rows' speeds). A pp+tg test's speed is prompt and
  generated tokens over both together, neither prefill nor decode: its rows carry `e2e_s`
  only, and the run its llama-bench figure (`params.imported.avg_ts`).
- The figures keep llama-bench's definitions, written into each run
  (`params.imported.definitions`); `backend` is "llama-bench", never "llamacpp", so no
  comparison or reuse takes them for edgeprof's measurements.
- The device: llama-bench's JSON names the CPU and GPUs (`cpu_info`, `gpu_info`) but not the
  machine. Only the user knows whether it ran here: `here` records the runs on this
  machine's fingerprint (as `edgeprof run` would); otherwise a device row of its own is built
  from cpu_info/gpu_info, labelled `device_label` (default "llama-bench: <cpu_info>"), its id
  a hash of the label and both strings. Two machines with one CPU string and no label share
  that row: a label tells them apart.
- The model's sha256 is known only when its file is at hand (`model` paths, or the file the
  JSON names, when it exists as written) and its tensors add up to llama-bench's
  `model_size`; otherwise the run says it is unknown.
- Ids come from each entry's content (a ULID of its `test_time` and a hash of the entry), so
  importing a file twice, or the same results as JSON and as JSONL, adds nothing the second
  time; the rows are written in one transaction that takes the write lock first.

Parsing and planning are pure (`parse_llama_bench`, `plan_import`); `model_file`, this
device's fingerprint and `write_import` are the I/O at the edges; `import_llama_bench` is all
of it.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgeprof.errors import EdgeprofError, UsageError
from edgeprof.store.ids import stable_ulid

TOOL = "llama-bench"
BACKEND = "llama-bench"
SUITE = "llama-bench"
TOKEN_COUNT_METHOD = "llama-bench"  # the token ids llama-bench fed: exact by construction
FIX = "run llama-bench with -o json or -o jsonl"
DEFINITIONS = (
    "llama-bench's own, not edgeprof's: "
    "pp: n_prompt random tokens decoded in n_batch chunks from a cache holding n_depth tokens "
    "(empty at depth 0), over the time of those decodes (no tokenizing, sampling or first "
    "token: not prompt tokens / TTFT); "
    "tg: n_gen single-token decodes from a cache holding n_depth tokens, n_gen over their "
    "time (edgeprof decodes after the prompt, so its decode runs at depth = prompt length); "
    "pp+tg: (n_prompt + n_gen) over the time of both; "
    "each repetition after llama-bench's own warm-up, which is not recorded; "
    "no TTFT, no inter-token latency, no energy, no memory"
)
# What llama-bench computed from the samples, not a setting of the test.
TIMING_FIELDS = ("test_time", "avg_ns", "stddev_ns", "avg_ts", "stddev_ts", "samples_ns",
                 "samples_ts")  # fmt: skip
# llama-bench's settings under the names edgeprof's llamacpp backend records them by.
SETTING_NAMES = {
    "n_batch": "n_batch", "n_ubatch": "n_ubatch", "n_gpu_layers": "n_gpu_layers",
    "flash_attn": "flash_attn", "split_mode": "split_mode", "main_gpu": "main_gpu",
    "type_k": "type_k", "type_v": "type_v", "no_kv_offload": "no_kv_offload",
}  # fmt: skip
# llama.cpp's llama_model_ftype_name() sizes, as quant names are written (Q4_K_M).
FTYPE_SIZES = {"Small": "S", "Medium": "M", "Large": "L"}


class NotLlamaBench(UsageError):
    """A file that is not llama-bench's JSON or JSONL output."""

    def __init__(self, source: str, why: str) -> None:
        super().__init__(f"{source} is not llama-bench JSON: {why} ({FIX})")


# -- pure: parsing ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchTest:
    """One llama-bench test entry, checked."""

    entry: dict[str, Any]
    digest: str  # sha256 of the entry as canonical JSON: the same results give the same runs
    name: str  # as llama-bench's table names it: "pp64", "tg16", "pp32+tg8 @ d16"
    started_at: datetime  # llama-bench's test_time: when the test (its warm-up first) began

    @property
    def n_prompt(self) -> int:
        return int(self.entry["n_prompt"])

    @property
    def n_gen(self) -> int:
        return int(self.entry["n_gen"])

    @property
    def samples_ns(self) -> list[int]:
        return [int(ns) for ns in self.entry["samples_ns"]]


def parse_llama_bench(text: str, source: str = "the file") -> tuple[list[BenchTest], str]:
    """The test entries of llama-bench's `-o json` (one array) or `-o jsonl` (one object a
    line) output, and which of the two it was. Anything else is a `NotLlamaBench` naming why."""
    stripped = text.strip()
    if not stripped:
        raise NotLlamaBench(source, "it is empty")
    if stripped.startswith("["):
        fmt, entries = "json", _json_array(stripped, source)
    elif stripped.startswith("{"):
        fmt, entries = "jsonl", _json_lines(stripped, source)
    else:
        raise NotLlamaBench(source, f"it starts with {stripped[:20]!r}")
    if not entries:
        raise NotLlamaBench(source, "it holds no test")
    return [check_entry(e, f"{source}: test {i + 1}") for i, e in enumerate(entries)], fmt


def _json_array(text: str, source: str) -> list[Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        # llama-bench prints each test as it finishes: a stopped run leaves no closing "]".
        raise NotLlamaBench(source, f"{e.msg} at line {e.lineno}, was llama-bench stopped?") from e
    if not isinstance(value, list):
        raise NotLlamaBench(source, "its JSON is not an array of tests")
    return value


def _json_lines(text: str, source: str) -> list[Any]:
    entries = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise NotLlamaBench(source, f"line {n}: {e.msg}") from e
    return entries


def check_entry(entry: Any, where: str) -> BenchTest:
    """One test entry with what an import needs, or `NotLlamaBench` naming what is missing."""
    if not isinstance(entry, dict):
        raise NotLlamaBench(where, "a test is not a JSON object")
    for name in ("n_prompt", "n_gen"):
        value = entry.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise NotLlamaBench(where, f"no {name} count")
    if entry["n_prompt"] == 0 and entry["n_gen"] == 0:
        raise NotLlamaBench(where, "n_prompt and n_gen are both 0")
    samples = entry.get("samples_ns")
    if not isinstance(samples, list) or not samples:
        raise NotLlamaBench(where, "no samples_ns (llama-bench before mid-2024 lacks them)")
    if not all(isinstance(ns, int) and not isinstance(ns, bool) and ns > 0 for ns in samples):
        raise NotLlamaBench(where, "samples_ns holds a value that is not a positive integer")
    if not isinstance(entry.get("model_filename"), str):
        raise NotLlamaBench(where, "no model_filename")
    return BenchTest(entry, _digest(entry), bench_name(entry), _test_time(entry, where))


def _digest(entry: dict[str, Any]) -> str:
    canonical = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _test_time(entry: dict[str, Any], where: str) -> datetime:
    try:
        when = datetime.fromisoformat(str(entry.get("test_time")).replace("Z", "+00:00"))
    except ValueError:
        raise NotLlamaBench(where, f"test_time {entry.get('test_time')!r} is not a time") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def bench_name(entry: dict[str, Any]) -> str:
    """llama-bench's name for a test: "pp512", "tg128", "pp512+tg128", "tg128 @ d4096"."""
    parts = [f"{kind}{n}" for kind, n in (("pp", entry["n_prompt"]), ("tg", entry["n_gen"])) if n]
    depth = int(entry.get("n_depth") or 0)
    return "+".join(parts) + (f" @ d{depth}" if depth else "")


def quant_from_model_type(model_type: Any) -> str | None:
    """The weight format in llama-bench's `model_type` ("llama 7B Q4_K - Medium" -> "Q4_K_M",
    "llama 256M Q4_1" -> "Q4_1"), as edgeprof's llamacpp runs name it."""
    words = str(model_type or "").split(" ", 2)
    if len(words) < 3:
        return None
    ftype = words[2].replace("(guessed)", "").strip()
    base, _, size = (part.strip() for part in ftype.partition(" - "))
    if base == "Q2_K" and size == "Medium":  # llama.cpp calls plain Q2_K "Q2_K - Medium"
        return base
    return f"{base}_{FTYPE_SIZES[size]}" if size in FTYPE_SIZES else base or None


# -- pure: what gets written -----------------------------------------------------------------


@dataclass(frozen=True)
class ModelFile:
    """A model file at hand, to match against the entries (by llama-bench's `model_size`,
    the bytes of its tensors) and give them its sha256."""

    path: Path
    sha256: str
    size_bytes: int
    tensor_bytes: int
    quant: str | None


@dataclass(frozen=True)
class ImportPlan:
    """The rows an import writes; `tests[i]` made `runs[i]`."""

    device: dict[str, Any]
    prompts: list[dict[str, Any]]
    runs: list[dict[str, Any]]
    requests: list[dict[str, Any]]
    tests: list[BenchTest]
    source: str  # the file's name
    fmt: str  # "json" | "jsonl"


def plan_import(
    tests: Sequence[BenchTest],
    device: dict[str, Any],
    *,
    models: Sequence[ModelFile] = (),
    source: str = "",
    fmt: str = "json",
    edgeprof_version: str = "",
) -> ImportPlan:
    """The device, prompt, run and request rows for `tests` on `device` (a fingerprint, or
    `device_from_bench`). Deterministic: the same tests give the same rows."""
    runs, requests, prompts = [], [], {}
    for test in tests:
        model = match_model(test, models)
        run = run_row(test, str(device["id"]), model, source=source, fmt=fmt,
                      edgeprof_version=edgeprof_version)  # fmt: skip
        prompt = prompt_row(test)
        prompts[prompt["id"]] = prompt
        runs.append(run)
        requests += request_rows(test, run["id"], prompt["id"])
    return ImportPlan(device, list(prompts.values()), runs, requests, list(tests), source, fmt)


def device_from_bench(tests: Sequence[BenchTest], label: str | None = None) -> dict[str, Any]:
    """A device row for results from a machine that is not (known to be) this one: what
    llama-bench says of its hardware, nothing guessed. All tests must name one CPU and GPU set."""
    machines = {(str(t.entry.get("cpu_info") or ""), str(t.entry.get("gpu_info") or ""))
                for t in tests}  # fmt: skip
    if len(machines) > 1:
        named = "; ".join(f"{cpu or '?'} / {gpu or 'no GPU'}" for cpu, gpu in sorted(machines))
        raise UsageError(
            f"the file holds results from {len(machines)} machines ({named}); import each "
            "machine's results from a file of its own, with its own `device_label`"
        )
    ((cpu, gpu),) = machines
    label = label or f"llama-bench: {cpu or 'unknown CPU'}" + (f" + {gpu}" if gpu else "")
    digest = hashlib.sha256(f"edgeprof-imported-device\0{label}\0{cpu}\0{gpu}".encode())
    return {
        "id": digest.hexdigest()[:24],
        "label": label,
        "hostname": None,
        "cpu_model": cpu or None,
        "cores": None,
        "threads": None,
        "ram_bytes": None,
        "os": None,
        "arch": None,
        "accelerators": [{"kind": "gpu", "name": g.strip()} for g in gpu.split(",") if g.strip()],
        "mem_bandwidth_gbs": None,
    }


def match_model(test: BenchTest, models: Sequence[ModelFile]) -> ModelFile | None:
    """The file among `models` whose tensors are the `model_size` llama-bench loaded; of
    several, the one with the file name the entry names."""
    size = test.entry.get("model_size")
    same = [m for m in models if m.tensor_bytes == size]
    named = [m for m in same if m.path.name == Path(str(test.entry["model_filename"])).name]
    picked = named or same
    return picked[0] if picked else None


def prompt_row(test: BenchTest) -> dict[str, Any]:
    """llama-bench feeds random token ids, not text: one prompt row per test shape, so that
    `report --requests` names what each request was."""
    e = test.entry
    text = (f"llama-bench {test.name}: {e['n_prompt']} random prompt tokens, {e['n_gen']} "
            f"generated, at depth {int(e.get('n_depth') or 0)}; no text")  # fmt: skip
    key = hashlib.sha256(f"{SUITE}\0{test.name}".encode()).hexdigest()
    return {"id": key, "suite": SUITE, "name": test.name, "text": text}


def run_row(
    test: BenchTest,
    device_id: str,
    model: ModelFile | None,
    *,
    source: str = "",
    fmt: str = "json",
    edgeprof_version: str = "",
) -> dict[str, Any]:
    e = test.entry
    return {
        "id": stable_ulid(test.started_at, test.digest),
        "device_id": device_id,
        "backend": BACKEND,
        "target_kind": "device",  # it ran on a machine's own hardware, as llamacpp runs do
        "target": Path(str(e["model_filename"])).name,
        "model_path": str(model.path) if model else None,
        "model_sha256": model.sha256 if model else None,
        "model_size_bytes": model.size_bytes if model else None,
        "quant": (model.quant if model else None) or quant_from_model_type(e.get("model_type")),
        "label": test.name,
        "prompt_suite": SUITE,
        "params": run_params(test, model, source=source, fmt=fmt),
        "environment": {TOOL: _build(e)},
        "edgeprof_version": edgeprof_version,
        "started_at": test.started_at.isoformat(timespec="milliseconds"),
        "ended_at": None,  # llama-bench does not say; its warm-up ran between its samples' runs
        "status": "complete",
        "t0_ns": 0,
    }


def run_params(
    test: BenchTest, model: ModelFile | None, *, source: str = "", fmt: str = "json"
) -> dict[str, Any]:
    e = test.entry
    n = len(test.samples_ns)
    settings = {ours: e[theirs] for theirs, ours in SETTING_NAMES.items() if theirs in e}
    return {
        "imported": {
            "tool": TOOL,
            "test": test.name,
            "definitions": DEFINITIONS,
            "source_file": source,
            "format": fmt,
            "entry_sha256": test.digest,
            "avg_ts": e.get("avg_ts"),
            "stddev_ts": e.get("stddev_ts"),
            "model_sha256": model.sha256 if model else "unknown: pass --model PATH to hash it",
        },
        "threads": e.get("n_threads"),
        "max_tokens": test.n_gen,
        "n_prompt": test.n_prompt,
        "n_depth": int(e.get("n_depth") or 0),
        "repetitions": n,
        "warmup": 0,
        "concurrency": 1,
        "planned_requests": n,
        "settings": settings,
        "llama_bench": {k: v for k, v in e.items() if k not in TIMING_FIELDS},
        "provenance": provenance(e),
    }


def provenance(entry: dict[str, Any]) -> dict[str, Any]:
    """`params.provenance` in the keys llamacpp runs use, from what llama-bench records. Its
    JSON lists no CPU features (AVX2, NEON ...): `build_features` is left out, not guessed."""
    backends = str(entry.get("backends") or "")
    devices = [{"type": "cpu", "description": entry.get("cpu_info") or None}]
    devices += [{"type": "gpu", "description": g.strip()}
                for g in str(entry.get("gpu_info") or "").split(",") if g.strip()]  # fmt: skip
    return {
        "runtime": "llama.cpp",
        "tool": TOOL,
        "llama_cpp_commit": entry.get("build_commit"),
        "llama_cpp_build_number": entry.get("build_number"),
        "backends": [b.strip() for b in backends.split(",") if b.strip()],
        "gpu_layers_requested": entry.get("n_gpu_layers"),
        "devices": devices,
    }


def cpu_mismatch(tests: Sequence[BenchTest], cpu_model: str) -> list[str]:
    """With `here`: a note when llama-bench's cpu_info names a CPU this machine's does not
    (its words are not all in this machine's model name): the results may be from elsewhere."""
    words = set(cpu_model.lower().split())
    named = {str(t.entry.get("cpu_info") or "") for t in tests}
    other = sorted(c for c in named if c and not set(c.lower().split()) <= words)
    return [
        f"llama-bench's cpu_info {c!r} is not this machine's CPU ({cpu_model!r}); if the "
        "results come from elsewhere, import them with --device-label instead of --here"
        for c in other
    ]


def _build(entry: dict[str, Any]) -> str:
    return f"build {entry.get('build_number', '?')} ({entry.get('build_commit', '?')})"


def request_rows(test: BenchTest, run_id: str, prompt_id: str) -> list[dict[str, Any]]:
    """One row per repetition, back to back from the run's t0 (llama-bench keeps no gaps)."""
    rows, t_ns = [], 0
    pp_only, tg_only = test.n_gen == 0, test.n_prompt == 0
    for i, ns in enumerate(test.samples_ns):
        rows.append({
            "id": stable_ulid(test.started_at, hashlib.sha256(f"{test.digest}\0{i}".encode())
                              .hexdigest()),
            "run_id": run_id,
            "prompt_id": prompt_id,
            "seq": i,
            "repetition": i,
            "warmup": 0,
            "input_tokens": test.n_prompt,
            "output_tokens": test.n_gen,
            "token_count_method": TOKEN_COUNT_METHOD,
            "t_start_ns": t_ns,
            "t_end_ns": t_ns + ns,
            # llama-bench's own arithmetic (1e9 * tokens / ns), so the mean is its avg_ts.
            "prefill_tps": 1e9 * test.n_prompt / ns if pp_only else None,
            "decode_tps": 1e9 * test.n_gen / ns if tg_only else None,
            "e2e_s": ns / 1e9,
        })  # fmt: skip
        t_ns += ns
    return rows


# -- I/O at the edges -------------------------------------------------------------------------


def read_llama_bench(path: Path) -> tuple[list[BenchTest], str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path} not found; pass the file llama-bench wrote ({FIX})") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a directory; pass llama-bench's output file") from None
    except UnicodeDecodeError:
        raise NotLlamaBench(str(path), "it is not text") from None
    except OSError as e:
        raise UsageError(f"cannot read {path} ({e.strerror}); check its permissions") from e
    return parse_llama_bench(text, str(path))


def model_file(path: Path) -> ModelFile:
    """A GGUF at hand: its sha256, size, the bytes of its tensors and its quantization."""
    from edgeprof.models.files import check_gguf, sha256_file
    from edgeprof.models.gguf_header import FILE_TYPE_KEY, quant_name, read_gguf_header

    check_gguf(path)
    header = read_gguf_header(path)
    quant = quant_name(header.metadata.get(FILE_TYPE_KEY))
    return ModelFile(
        path=path.resolve(),
        sha256=sha256_file(path),
        size_bytes=path.stat().st_size,
        tensor_bytes=sum(t.n_bytes for t in header.tensors),
        quant=quant,
    )


def find_models(tests: Sequence[BenchTest], given: Sequence[Path]) -> list[ModelFile]:
    """The `model` files given, each of which must be a model the file names; then the files
    the entries name that exist as written (llama-bench's own path) and match too."""
    models = [model_file(p) for p in given]
    sizes = {t.entry.get("model_size") for t in tests}
    recorded = ", ".join(f"{s:,}" for s in sorted(s for s in sizes if isinstance(s, int)))
    for m in models:
        if m.tensor_bytes not in sizes:
            raise UsageError(
                f"`model` {m.path} is not a model these results measured: its tensors are "
                f"{m.tensor_bytes:,} bytes, llama-bench's model_size "
                f"{recorded or 'is not recorded'}; pass the GGUF llama-bench ran"
            )
    for name in sorted({str(t.entry["model_filename"]) for t in tests}):
        path = Path(name)
        if path.is_file() and not any(m.path == path.resolve() for m in models):
            try:
                found = model_file(path)
            except (EdgeprofError, OSError, ValueError):  # shares the name only: hash unknown
                continue
            if found.tensor_bytes in sizes:
                models.append(found)
    return models


@dataclass
class Written:
    """What `write_import` did, run ids in the plan's order."""

    added: list[str] = field(default_factory=list)  # runs written now
    present: list[str] = field(default_factory=list)  # runs an earlier import wrote
    hashed: list[str] = field(default_factory=list)  # present runs given their model's sha256
    requests_added: int = 0
    model_sha256: dict[str, str | None] = field(default_factory=dict)  # as stored now


@dataclass
class ImportResult:
    db: Path
    device_id: str
    device_label: str
    plan: ImportPlan
    written: Written
    notes: list[str] = field(default_factory=list)  # what the user should check

    @property
    def added(self) -> list[str]:
        return self.written.added

    @property
    def present(self) -> list[str]:
        return self.written.present

    def to_dict(self) -> dict[str, Any]:
        w = self.written
        return {
            "db": str(self.db),
            "device_id": self.device_id,
            "device_label": self.device_label,
            "runs_added": len(w.added),
            "runs_present": len(w.present),
            "model_hashes_added": len(w.hashed),
            "requests_added": w.requests_added,
            "notes": self.notes,
            "tests": [
                {"run_id": r["id"], "test": t.name, "repetitions": len(t.samples_ns),
                 "avg_ts": t.entry.get("avg_ts"), "stddev_ts": t.entry.get("stddev_ts"),
                 "model_sha256": w.model_sha256.get(r["id"]), "new": r["id"] in w.added}
                for t, r in zip(self.plan.tests, self.plan.runs, strict=True)
            ],
        }  # fmt: skip


def write_import(store: Any, plan: ImportPlan) -> Written:
    """Write `plan` in one transaction, taking the write lock first (BEGIN IMMEDIATE, waiting
    out other writers). Runs already there (an earlier import of the same results) are left
    as they are, except that one recorded without its model's sha256 gets it now."""
    from edgeprof.store.db import cannot_write

    conn: sqlite3.Connection = store.db.conn
    store.settle()
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            written = _write(conn, plan)
        except BaseException:
            conn.rollback()
            raise
        conn.commit()
    except sqlite3.OperationalError as e:
        raise cannot_write(store.path, e) from e
    return written


def _write(conn: sqlite3.Connection, plan: ImportPlan) -> Written:
    ids = [r["id"] for r in plan.runs]
    stored = _stored_hashes(conn, ids)
    device = {**plan.device, "accelerators": json.dumps(plan.device.get("accelerators") or [])}
    # A device already recorded (this machine, profiled before) keeps its row as it is.
    _insert(conn, "INSERT OR IGNORE", "devices", [device])
    _insert(conn, "INSERT OR IGNORE", "prompts", plan.prompts)
    new_runs = [
        {**r, "params": json.dumps(r["params"], sort_keys=True),
         "environment": json.dumps(r["environment"], sort_keys=True)}
        for r in plan.runs if r["id"] not in stored
    ]  # fmt: skip
    added = {r["id"] for r in new_runs}
    new_requests = [q for q in plan.requests if q["run_id"] in added]
    _insert(conn, "INSERT", "runs", new_runs)
    _insert(conn, "INSERT", "requests", new_requests)
    hashed = [r for r in plan.runs if r["id"] in stored and not stored[r["id"]]
              and r["model_sha256"]]  # fmt: skip
    for r in hashed:
        conn.execute(
            "UPDATE runs SET model_sha256 = ?, model_path = ?, model_size_bytes = ?, quant = ?, "
            "params = json_set(params, '$.imported.model_sha256', ?) WHERE id = ?",
            (r["model_sha256"], r["model_path"], r["model_size_bytes"], r["quant"],
             r["model_sha256"], r["id"]),
        )  # fmt: skip
    return Written(
        added=[i for i in ids if i in added],
        present=[i for i in ids if i in stored],
        hashed=[r["id"] for r in hashed],
        requests_added=len(new_requests),
        model_sha256=_stored_hashes(conn, ids),
    )


def _stored_hashes(conn: sqlite3.Connection, ids: list[str]) -> dict[str, str | None]:
    marks = ",".join("?" for _ in ids)
    rows = conn.execute(f"SELECT id, model_sha256 FROM runs WHERE id IN ({marks})", ids)
    return {str(i): sha for i, sha in rows}


def _insert(conn: sqlite3.Connection, verb: str, table: str, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    cols = list(rows[0])
    conn.executemany(
        f"{verb} INTO {table} ({', '.join(f'[{c}]' for c in cols)}) "
        f"VALUES ({', '.join('?' for _ in cols)})",
        [[row[c] for c in cols] for row in rows],
    )


def import_llama_bench(
    path: Path | str,
    db: Path | str | None = None,
    *,
    models: Sequence[Path | str] = (),
    device_label: str | None = None,
    here: bool = False,
) -> ImportResult:
    """Import llama-bench's JSON or JSONL output at `path` into the profile database `db`.

    `here`: the results were measured on this machine (its fingerprint, as `edgeprof run`
    records); otherwise a device of their own from llama-bench's cpu_info/gpu_info, labelled
    `device_label`. `models`: model files to hash (matched to the entries by size)."""
    from edgeprof import __version__
    from edgeprof.store.db import default_db_path, open_store

    if here and device_label:
        raise UsageError(
            "`here` records the results on this machine as `edgeprof probe` names it; drop "
            "`device_label`, or drop `here` for results from another machine"
        )
    source = Path(path)
    tests, fmt = read_llama_bench(source)
    notes: list[str] = []
    if here:
        from edgeprof.measure.device import fingerprint

        device = fingerprint()
        notes += cpu_mismatch(tests, str(device.get("cpu_model") or ""))
    else:
        device = device_from_bench(tests, device_label)
    found = find_models(tests, [Path(m).expanduser() for m in models])
    plan = plan_import(tests, device, models=found, source=source.name, fmt=fmt,
                       edgeprof_version=__version__)  # fmt: skip
    db_path = Path(db) if db is not None else default_db_path()
    with open_store(db_path) as store:
        written = write_import(store, plan)
    return ImportResult(db_path, str(device["id"]), str(device["label"]), plan, written, notes)
