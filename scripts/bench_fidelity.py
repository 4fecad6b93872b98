"""Fidelity: edgeprof's prompt and generation tok/s against llama.cpp's own llama-bench.

llama-bench is built from the llama.cpp source vendored in the llama-cpp-python sdist of the
installed version (so both run the same llama.cpp), cached under .cache/llama-bench/. Run:

    flock /tmp/edgeprof-bench.lock .venv/bin/python scripts/bench_fidelity.py --threads 1

Like with like:
- prompt: llama-bench pp512 times one llama_decode of 512 random tokens from an empty cache.
  edgeprof's prefill tok/s is input tokens / TTFT of a chat prompt rendered to exactly 512
  tokens, from an empty KV cache, so it also pays the template render, tokenization and the
  first argmax.
- generation: llama-bench tg128 decodes 128 tokens one at a time from an EMPTY context with no
  sampling. edgeprof decodes its 128 tokens right after its 512-token prompt, so its attention
  spans 512-640 positions; the like-with-like reference is llama-bench `-n 128 -d 512`
  (tg128 at depth 512). tg128 at depth 0 is printed too, as the issue's command gives it.
  edgeprof's decode tok/s = (128 - 1) / (last token - first token), with EOG ignored
  (`ignore_eos`) so every repetition generates exactly 128 tokens.
- the same threads, flash attention off in both (llama-cpp-python's default; llama-bench's is
  auto), batch 512, a KV cache cleared before every repetition, one warm-up each.
edgeprof runs through the real profiler (`edgeprof.measure.runner.profile`, recorder at 10 Hz),
the model in its worker process, with its answer signals on (the default) and off. The tools
alternate for `--rounds` rounds so a change in background load hits all of them, and every
round starts fresh processes: two processes running identical code differ by a few percent on
a VM (`bench_decode_loop.py` measures it), so the ratio is read over rounds (the median of
the per-round ratios, with their range), not over the repetitions of one process.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "llama-bench"
N_PROMPT, N_GEN = 512, 128
FILLER = (
    "The harbour town woke slowly. Fishing boats came back with the tide, gulls argued over "
    "the nets, and the baker on the corner opened her shutters to the smell of bread. "
)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def installed_version() -> str:
    from importlib.metadata import version

    return version("llama-cpp-python")


def ensure_llama_bench(version: str, jobs: int, shared: bool = False) -> Path:
    """Download the sdist, extract vendor/llama.cpp and build llama-bench once (niced).

    `shared`: build it as llama-cpp-python builds its library (shared libraries, hence
    position-independent code), so that the two differ only in the code that calls
    llama_decode; otherwise llama.cpp's own default, a static binary."""
    suffix = "-shared" if shared else ""
    binary = CACHE / f"build-{version}{suffix}" / "bin" / "llama-bench"
    if binary.exists():
        return binary
    CACHE.mkdir(parents=True, exist_ok=True)
    src = CACHE / f"src-{version}"
    if not src.exists():
        sdist = CACHE / f"llama_cpp_python-{version}.tar.gz"
        if not sdist.exists():
            log(f"downloading the llama-cpp-python {version} sdist ...")
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
                 f"llama-cpp-python=={version}", "-d", str(CACHE)],
                check=True,
            )  # fmt: skip
        prefix = f"llama_cpp_python-{version}/vendor/llama.cpp/"
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp, tarfile.open(sdist) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(prefix)]
            tar.extractall(tmp, members=members, filter="data")
            shutil.move(str(Path(tmp) / prefix), src)
    build = CACHE / f"build-{version}{suffix}"
    nice = ["nice", "-n", "10"] if shutil.which("nice") else []
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    log("building llama-bench (several minutes on 2 cores) ...")
    # Defaults match the pip build of llama-cpp-python: native CPU flags, OpenMP, Release.
    subprocess.run(
        [*nice, "cmake", "-S", str(src), "-B", str(build), *generator,
         "-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_CURL=OFF",
         "-DLLAMA_BUILD_SERVER=OFF", f"-DBUILD_SHARED_LIBS={'ON' if shared else 'OFF'}"],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    subprocess.run(
        [*nice, "cmake", "--build", str(build), "--target", "llama-bench", "-j", str(jobs)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return binary


def run_llama_bench(binary: Path, model: Path, args: list[str]) -> list[dict[str, Any]]:
    out = subprocess.run(
        [str(binary), "-m", str(model), "-o", "json", *args],
        check=True,
        capture_output=True,
        text=True,
    )
    return list(json.loads(out.stdout))


def prompt_of_exactly(model: Path, n_tokens: int) -> tuple[dict[str, str], ...]:
    """A chat prompt that edgeprof's llama.cpp backend renders to exactly n_tokens tokens."""
    import contextlib
    import io

    import llama_cpp

    from edgeprof.backends.llamacpp import prompt_tokens

    with contextlib.redirect_stderr(io.StringIO()):
        llm = llama_cpp.Llama(str(model), vocab_only=True, verbose=False)

    def messages(text: str) -> tuple[dict[str, str], ...]:
        return ({"role": "user", "content": "Summarize this story.\n\n" + text},)

    def count(text: str) -> int:
        return len(prompt_tokens(llm, messages(text)))

    words = (FILLER * 64).split()
    lo, hi = 0, len(words)
    while lo < hi:  # the most words that stay within n_tokens
        mid = (lo + hi + 1) // 2
        if count(" ".join(words[:mid])) <= n_tokens:
            lo = mid
        else:
            hi = mid - 1
    text = " ".join(words[:lo])
    while count(text) < n_tokens:
        text += " a"  # " a" is one token in BPE vocabularies and never merges with the next
    if count(text) != n_tokens:
        raise RuntimeError(f"could not build a prompt of exactly {n_tokens} tokens")
    llm.close()
    return messages(text)


def run_edgeprof(
    model: Path,
    suite: Path,
    threads: int,
    reps: int,
    db: Path,
    in_process: bool = False,
    signals: bool = True,
) -> list[dict[str, Any]]:
    from edgeprof.measure.runner import RunConfig, profile
    from edgeprof.store.db import Store

    run_id = profile(
        RunConfig(
            model=str(model),
            prompts=str(suite),
            repetitions=reps,
            warmup=1,
            max_tokens=N_GEN,
            threads=threads,
            ctx=1024,
            db=db,
            idle_seconds=0,
            in_process=in_process,
            settings={"ignore_eos": True, "flash_attn": False, "signals": signals},
        )
    )
    store = Store(db)
    rows = [r for r in store.requests(run_id) if not r["warmup"]]
    store.close()
    for r in rows:
        if r["input_tokens"] != N_PROMPT or r["output_tokens"] != N_GEN:
            raise RuntimeError(f"edgeprof measured {r['input_tokens']}+{r['output_tokens']}")
    return [dict(r) for r in rows]


def run_binding_raw(model: Path, threads: int, reps: int) -> tuple[list[float], list[float]]:
    """pp512 and tg128@d512 timed around bare llama_decode calls on the binding's own llama.cpp
    (ctypes, random tokens, no sampling): what llama-bench measures, minus its build. A gap
    that remains here is between the two llama.cpp builds, not in edgeprof."""
    import contextlib
    import io
    import random
    import time

    import llama_cpp as lc

    with contextlib.redirect_stderr(io.StringIO()):
        llm = lc.Llama(
            str(model), n_ctx=N_PROMPT + N_GEN, n_threads=threads, n_threads_batch=threads,
            n_batch=512, verbose=False,
        )  # fmt: skip
    ctx, rng = llm._ctx.ctx, random.Random(0)
    pp: list[float] = []
    tg: list[float] = []
    for i in range(reps + 1):  # the first is a warm-up
        lc.llama_memory_clear(lc.llama_get_memory(ctx), True)
        arr = (lc.llama_token * N_PROMPT)(*[rng.randrange(100, 40000) for _ in range(N_PROMPT)])
        t0 = time.perf_counter()
        lc.llama_decode(ctx, lc.llama_batch_get_one(arr, N_PROMPT))
        t1 = time.perf_counter()
        step = (lc.llama_token * 1)()
        for _ in range(N_GEN):
            step[0] = rng.randrange(100, 40000)
            lc.llama_decode(ctx, lc.llama_batch_get_one(step, 1))
        t2 = time.perf_counter()
        if i:
            pp.append(N_PROMPT / (t1 - t0))
            tg.append(N_GEN / (t2 - t1))
    llm.close()
    return pp, tg


def stats(values: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "mean": statistics.fmean(values),
        "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
        "n": len(values),
    }


def samples(entries: list[dict[str, Any]], n_prompt: int, n_gen: int, depth: int) -> list[float]:
    for e in entries:
        if (e["n_prompt"], e["n_gen"], e.get("n_depth", 0)) == (n_prompt, n_gen, depth):
            return [float(x) for x in e["samples_ts"]]
    raise RuntimeError(f"llama-bench printed no test p{n_prompt} n{n_gen} d{depth}")


# What each round measures, by key: (label, llama-bench key it is compared with).
SERIES = {
    "ep_pp": ("edgeprof, prompt", "lb_pp"),
    "ep_tg": ("edgeprof, generation", "lb_tg512"),
    "nosig_pp": ("  signals off, prompt", "lb_pp"),
    "nosig_tg": ("  signals off, generation", "lb_tg512"),
    "inp_pp": ("  --in-process, prompt", "lb_pp"),
    "inp_tg": ("  --in-process, generation", "lb_tg512"),
    "raw_pp": ("  bare ctypes loop, prompt", "lb_pp"),
    "raw_tg": ("  bare ctypes loop, generation", "lb_tg512"),
}
TARGETS = {"ep_pp": 0.98, "ep_tg": 0.98}


def summarize(rounds: list[dict[str, list[float]]]) -> dict[str, Any]:
    """Per series: the statistics of all its samples, and its ratio to llama-bench per round
    (median over the round's repetitions, each), summed up by their median and range."""
    out: dict[str, Any] = {}
    keys = [k for k in rounds[0] if rounds[0][k]]
    for key in keys:
        values = [x for r in rounds for x in r[key]]
        out[key] = stats(values)
        ref = SERIES[key][1] if key in SERIES else None
        if ref is not None:
            ratios = [statistics.median(r[key]) / statistics.median(r[ref]) for r in rounds]
            out[key]["round_ratios"] = ratios
            out[key]["ratio_median"] = statistics.median(ratios)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3, help="repetitions per tool per round")
    ap.add_argument("--rounds", type=int, default=6, help="alternations of the tools, each "
                    "with fresh processes")  # fmt: skip
    ap.add_argument("--model", type=Path, default=None, help="GGUF (default: the demo model)")
    ap.add_argument("--jobs", type=int, default=2, help="build parallelism")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument(
        "--reference",
        choices=("static", "shared"),
        default="static",
        help="llama-bench as llama.cpp builds it (static) or as llama-cpp-python builds its "
        "library (shared)",
    )
    ap.add_argument(
        "--also-in-process",
        action="store_true",
        help="each round also runs edgeprof with the model in its own process (--in-process), "
        "interleaved with the run through the worker",
    )
    a = ap.parse_args()

    from edgeprof.models.files import demo_model_path

    model = a.model or demo_model_path()
    version = installed_version()
    binary = ensure_llama_bench(version, a.jobs, shared=a.reference == "shared")
    t = str(a.threads)
    common = ["-t", t, "-r", str(a.reps), "-fa", "0", "-b", "512", "-ub", "512"]

    rounds: list[dict[str, list[float]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        suite = Path(tmp) / "p512.jsonl"
        msgs = prompt_of_exactly(model, N_PROMPT)
        suite.write_text(json.dumps({"name": "p512", "messages": list(msgs)}) + "\n")
        for r in range(a.rounds):
            got: dict[str, list[float]] = {k: [] for k in ("lb_pp", "lb_tg0", "lb_tg512", *SERIES)}
            log(f"round {r + 1}/{a.rounds}: llama-bench ...")
            e = run_llama_bench(binary, model, ["-p", str(N_PROMPT), "-n", str(N_GEN), *common])
            got["lb_pp"] = samples(e, N_PROMPT, 0, 0)
            got["lb_tg0"] = samples(e, 0, N_GEN, 0)
            e = run_llama_bench(binary, model, ["-p", "0", "-n", str(N_GEN), "-d", "512", *common])
            got["lb_tg512"] = samples(e, 0, N_GEN, 512)
            runs = [("ep", {}), ("nosig", {"signals": False})]
            if a.also_in_process:
                runs.append(("inp", {"in_process": True}))
            if r % 2:  # the order of the edgeprof runs alternates too
                runs.reverse()
            for key, kwargs in runs:
                log(f"round {r + 1}/{a.rounds}: edgeprof {key} ...")
                db = Path(tmp) / f"r{r}-{key}.db"
                rows = run_edgeprof(model, suite, a.threads, a.reps, db, **kwargs)
                got[f"{key}_pp"] = [float(x["prefill_tps"]) for x in rows]
                got[f"{key}_tg"] = [float(x["decode_tps"]) for x in rows]
            got["raw_pp"], got["raw_tg"] = run_binding_raw(model, a.threads, a.reps)
            rounds.append(got)

    results = {
        "llama_cpp_python": version,
        "model": model.name,
        "threads": a.threads,
        "reference": a.reference,
        "reps_per_round": a.reps,
        "rounds": a.rounds,
        "cpu_count": os.cpu_count(),
        "load_after": os.getloadavg(),
        "series": summarize(rounds),
        "samples": rounds,
    }
    print_table(results)
    if a.json:
        a.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def print_table(res: dict[str, Any]) -> None:
    ser = res["series"]
    print(
        f"fidelity: {res['model']}, llama-cpp-python {res['llama_cpp_python']}, "
        f"threads {res['threads']}, llama-bench {res['reference']}, flash-attn off, "
        f"{res['rounds']} rounds x {res['reps_per_round']} reps, fresh processes each round"
    )
    print(f"llama-bench: pp512 {_cell(ser['lb_pp'])}, tg128@d512 {_cell(ser['lb_tg512'])}, "
          f"tg128 {_cell(ser['lb_tg0'])} tok/s (median (mean ± sd))")  # fmt: skip
    head = (f"{'edgeprof':<32} {'tok/s':>20} {'ratio to llama-bench':>21} "
            f"{'rounds min..max':>16}  target")  # fmt: skip
    print(head)
    print("-" * len(head))
    for key, (label, _ref) in SERIES.items():
        if key not in ser:
            continue
        s = ser[key]
        ratios = s["round_ratios"]
        target = TARGETS.get(key)
        verdict = (f">= {target:.2f} {'met' if s['ratio_median'] >= target else 'NOT met'}"
                   if target else "")  # fmt: skip
        print(f"{label:<32} {_cell(s):>20} {s['ratio_median']:>21.3f} "
              f"{f'{min(ratios):.3f}..{max(ratios):.3f}':>16}  {verdict}")  # fmt: skip


def _cell(s: dict[str, float]) -> str:
    return f"{s['median']:.1f} ({s['mean']:.1f}±{s['sd']:.1f})"


if __name__ == "__main__":
    raise SystemExit(main())
