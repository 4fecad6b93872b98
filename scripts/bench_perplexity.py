"""Fidelity: edgeprof's perplexity against llama.cpp's own llama-perplexity, on the same text.

llama-perplexity is built from the llama.cpp source vendored in the llama-cpp-python sdist of
the installed version (so both run the same llama.cpp), in the same cached static build as
scripts/bench_fidelity.py's llama-bench (.cache/llama-bench/build-VERSION: Release, native CPU
flags, OpenMP), as one more target. Run:

    flock /tmp/edgeprof-bench.lock .venv/bin/python scripts/bench_perplexity.py --threads 2

Like with like:
- the same GGUF and the same text: the file is handed to llama-perplexity with `-f`, and
  edgeprof gets its bytes as llama-perplexity reads them (no newline translation, and one
  trailing newline dropped, which llama-perplexity does to every `-f` file);
- the same chunking: `-c CTX -b CTX`, so each chunk of CTX tokens is one batch of one sequence
  from an empty KV cache, its first token replaced by BOS, the second half scored;
- the same context settings as edgeprof's llama.cpp backend: `-ub min(CTX, 512)`, flash
  attention off (llama-cpp-python's default; llama-perplexity's is auto), the same threads.
The target is |PPL_edgeprof / PPL_llama-perplexity - 1| <= 1%. Seconds are wall time of each
whole run, model load and tokenization included.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_fidelity  # the build helpers: the same sdist, the same cmake flags

TARGET = 0.01
FINAL = re.compile(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)")
CHUNKS = re.compile(r"calculating perplexity over (\d+) chunks, n_ctx=(\d+)")


def ensure_llama_perplexity(version: str, jobs: int) -> Path:
    """llama-perplexity in bench_fidelity's static build dir (configured, with llama-bench,
    by bench_fidelity.ensure_llama_bench on first use), built once, niced."""
    bench = bench_fidelity.ensure_llama_bench(version, jobs)
    build = bench.parent.parent
    binary = build / "bin" / "llama-perplexity"
    if binary.exists():
        return binary
    bench_fidelity.log("building llama-perplexity (a minute or two on 2 cores) ...")
    nice = ["nice", "-n", "10"] if shutil.which("nice") else []
    subprocess.run(
        [*nice, "cmake", "--build", str(build), "--target", "llama-perplexity", "-j", str(jobs)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return binary


def as_llama_perplexity_reads(path: Path) -> str:
    """The text llama-perplexity evaluates for `-f path`: the raw bytes, one trailing newline
    dropped (common/arg.cpp), no escape processing (perplexity.cpp sets escape = false)."""
    text = path.read_bytes().decode("utf-8")
    return text[:-1] if text.endswith("\n") else text


def run_llama_perplexity(
    binary: Path, model: Path, text: Path, ctx: int, threads: int
) -> dict[str, Any]:
    cmd = [
        str(binary), "-m", str(model), "-f", str(text), "-c", str(ctx), "-b", str(ctx),
        "-ub", str(min(ctx, 512)), "-fa", "off", "-t", str(threads),
    ]  # fmt: skip
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
    seconds = time.perf_counter() - t0
    log_text = out.stdout + out.stderr
    final, chunks = FINAL.search(log_text), CHUNKS.search(log_text)
    if out.returncode != 0 or final is None or chunks is None:
        tail = "\n".join(log_text.splitlines()[-15:])
        raise RuntimeError(f"llama-perplexity failed (exit {out.returncode}):\n{tail}")
    return {
        "ppl": float(final.group(1)),
        "ppl_se": float(final.group(2)),
        "n_chunks": int(chunks.group(1)),
        "ctx": int(chunks.group(2)),
        "seconds": seconds,
        "command": " ".join(cmd),
    }


def run_edgeprof(model: Path, text: str, ctx: int, threads: int) -> dict[str, Any]:
    from edgeprof.quality.perplexity import perplexity

    t0 = time.perf_counter()
    r = perplexity(model, text, ctx=ctx, threads=threads)
    seconds = time.perf_counter() - t0
    return {
        "ppl": r.ppl,
        "ppl_se": r.ppl_se,
        "n_chunks": r.n_chunks,
        "n_scored": r.n_scored,
        "ctx": r.ctx,
        "text_tokens": r.text_tokens,
        "seconds": seconds,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=None, help="GGUF (default: the demo model)")
    ap.add_argument("--text", type=Path, default=None, help="default: the bundled eval.txt")
    ap.add_argument("--ctx", type=int, default=512, help="tokens per chunk")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--jobs", type=int, default=2, help="build parallelism")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    a = ap.parse_args()

    from edgeprof.models.files import demo_model_path
    from edgeprof.quality.perplexity import bundled_text_path

    model = a.model or demo_model_path()
    text_path = a.text or bundled_text_path()
    version = bench_fidelity.installed_version()
    binary = ensure_llama_perplexity(version, a.jobs)

    bench_fidelity.log("llama-perplexity ...")
    lp = run_llama_perplexity(binary, model, text_path, a.ctx, a.threads)
    bench_fidelity.log("edgeprof ...")
    ep = run_edgeprof(model, as_llama_perplexity_reads(text_path), a.ctx, a.threads)

    ratio = ep["ppl"] / lp["ppl"]
    results = {
        "llama_cpp_python": version,
        "model": model.name,
        "text": text_path.name,
        "text_bytes": text_path.stat().st_size,
        "ctx": a.ctx,
        "threads": a.threads,
        "cpu_count": os.cpu_count(),
        "llama_perplexity": lp,
        "edgeprof": ep,
        "ratio": ratio,
        "target": TARGET,
        "met": abs(ratio - 1) <= TARGET and lp["n_chunks"] == ep["n_chunks"],
    }
    print_table(results)
    if a.json:
        a.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def print_table(res: dict[str, Any]) -> None:
    lp, ep = res["llama_perplexity"], res["edgeprof"]
    print(
        f"perplexity fidelity: {res['model']}, llama-cpp-python {res['llama_cpp_python']}, "
        f"text {res['text']} ({ep['text_tokens']} tokens with BOS), ctx {res['ctx']}, "
        f"threads {res['threads']}, flash-attn off"
    )
    head = f"{'tool':<18} {'PPL ± SE':>20} {'chunks':>7} {'scored':>7} {'seconds':>8}"
    print(head)
    print("-" * len(head))
    scored = lp["n_chunks"] * (res["ctx"] - res["ctx"] // 2 - 1)
    for label, r, n in (("llama-perplexity", lp, scored), ("edgeprof", ep, ep["n_scored"])):
        cell = f"{r['ppl']:.4f} ± {r['ppl_se']:.5f}"
        print(f"{label:<18} {cell:>20} {r['n_chunks']:>7} {n:>7} {r['seconds']:>8.1f}")
    ratio = res["ratio"]
    verdict = "met" if res["met"] else "NOT met"
    print(
        f"ratio edgeprof / llama-perplexity {ratio:.5f} ({(ratio - 1) * 100:+.3f}%), "
        f"target |ratio - 1| <= {res['target']:.0%}: {verdict}"
    )
    if lp["n_chunks"] != ep["n_chunks"]:
        print(f"chunks differ ({lp['n_chunks']} vs {ep['n_chunks']}): not the same tokens")


if __name__ == "__main__":
    raise SystemExit(main())
