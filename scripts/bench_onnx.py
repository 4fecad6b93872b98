"""ONNX Runtime (fp32/int8/int4 exports) next to llama.cpp on the same GGUF, threads and prompts.

    flock /tmp/edgeprof-bench.lock .venv/bin/python scripts/bench_onnx.py [--threads 2]
        [--rounds 3] [--formats int8,int4] [--extra LABEL=PATH.onnx ...]
        [--model gemma-3-270m-q4_k_m.gguf --raw] [--shape qwen2.5-0.5b]

Prints decode tok/s, TTFT, peak RSS and model file size per target, and each ONNX export's
decode speed relative to llama.cpp. Each target runs in its own process so peak RSS is its own.
On a shared machine other work comes and goes, so the targets take turns, `--rounds` times
(llama.cpp, fp32, int8, int4, llama.cpp, ...), and the table shows the median round with the
range over rounds. `--extra` adds exports made elsewhere (e.g. other quantizer settings).
`--model` benchmarks another GGUF than the demo model (`--raw` for a base model's prompts);
`--shape` a random-weight Q4_0 GGUF with a real model's dimensions (tests/tiny_models.py:
speed depends on shapes and types, not on the weights' values; its answers are noise).
`--genai` runs each export on ONNX Runtime GenAI's loop (`--backend ort-genai`) too.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def measure(
    backend: str,
    model: str,
    threads: int,
    max_tokens: int,
    reps: int,
    n_prompts: int,
    raw: bool = False,
) -> dict:
    """Runs in a child process: load, one warm-up pass, then `reps` passes over the suite."""
    from edgeprof.backends import BackendOptions, Request, create_backend
    from edgeprof.measure.workload import load_suite

    settings = {"raw": True} if raw else {}
    options = BackendOptions(model=model, threads=threads, ctx=2048, settings=settings)
    b = create_backend(backend, options)
    info = b.load()
    prompts = load_suite()[: n_prompts or None]
    ttft, decode = [], []
    for rep in range(reps + 1):
        for p in prompts:
            t0 = time.perf_counter_ns()
            gen = b.generate(Request(p.id, p.messages, max_tokens))
            times = []
            try:
                while True:
                    times.append(next(gen).t_ns)
            except StopIteration:
                pass
            if rep == 0 or len(times) < 2:
                continue  # warm-up pass
            ttft.append((times[0] - t0) / 1e9)
            decode.append((len(times) - 1) / ((times[-1] - times[0]) / 1e9))
    b.close()
    return {
        "target": info.target,
        "quant": info.quant,
        "size_bytes": info.size_bytes,
        "ttft_p50_s": statistics.median(ttft),
        "decode_tps_mean": statistics.mean(decode),
        "decode_tps_sd": statistics.stdev(decode) if len(decode) > 1 else 0.0,
        "peak_rss_bytes": _peak_rss_bytes(),
    }


def _peak_rss_bytes() -> int:
    """VmHWM resets at exec (ru_maxrss would carry the converting parent's peak over)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _shaped(name: str, out: Path) -> Path:
    """A random Q4_0 GGUF (Q8_0 embedding) of the real model `name`'s dimensions, in `out`."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.tiny_models import SHAPES, write_tiny

    arch, dims = SHAPES[name]
    path = out / f"{name}.Q4_0.gguf"
    if not path.is_file():
        out.mkdir(parents=True, exist_ok=True)
        write_tiny(path, arch, quant="Q4_0", dims=dims, embedding="Q8_0")
    return path


def _targets(args: argparse.Namespace) -> tuple[list[tuple[str, str, str]], Path]:
    """(backend, label, model) to run, llama.cpp first; and the GGUF."""
    from edgeprof.convert import convert_gguf
    from edgeprof.models.files import demo_model_path, resolve_model

    out = args.out or Path(tempfile.mkdtemp(prefix="edgeprof-onnx-"))
    if args.shape:
        src, stem = _shaped(args.shape, out), args.shape
    else:
        src = resolve_model(args.model) if args.model else demo_model_path()
        stem = src.stem if args.model else "smollm2"
    targets = [("llamacpp", "llama.cpp", str(src))]
    for weights in [f for f in args.formats.split(",") if f]:
        dst = out / f"{stem}-{weights}.onnx"
        if not (dst.is_file() and args.out):  # else kept from an earlier run
            r = convert_gguf(src, dst, weights=weights)
            print(f"converted {weights} in {r.seconds:.1f} s", file=sys.stderr)
        targets.append(("onnx", weights, str(dst)))
    for spec in args.extra:
        label, _, path = spec.partition("=")
        targets.append(("onnx", label, path))
    if args.genai:
        targets += [("ort-genai", f"genai-{label}", path) for _, label, path in targets[1:]]
    return targets, src


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--reps", type=int, default=1, help="Measured passes per round.")
    ap.add_argument("--rounds", type=int, default=3, help="Turns each target takes.")
    ap.add_argument("--prompts", type=int, default=0, help="First N bundled prompts (0: all).")
    ap.add_argument("--formats", default="fp32,int8,int4", help="Exports to convert and run.")
    ap.add_argument(
        "--extra", action="append", default=[], metavar="LABEL=PATH", help="Another .onnx to run."
    )
    ap.add_argument("--out", type=Path, default=None, help="Keep the exports here.")
    ap.add_argument("--model", default=None, help="A GGUF other than the demo model.")
    ap.add_argument("--raw", action="store_true", help="Prompts as plain text (base models).")
    ap.add_argument("--shape", default=None, help="A random model of these dims (SHAPES).")
    ap.add_argument(
        "--genai", action="store_true", help="Also run each export on --backend ort-genai."
    )
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        backend, model = args.child
        result = measure(
            backend, model, args.threads, args.max_tokens, args.reps, args.prompts, args.raw
        )
        print(json.dumps(result))
        return

    targets, src = _targets(args)
    runs: dict[str, list[dict]] = {label: [] for _, label, _ in targets}
    for rnd in range(args.rounds):
        for backend, label, model in targets:
            cmd = [
                sys.executable,
                __file__,
                "--child",
                backend,
                model,
                "--threads",
                str(args.threads),
                "--max-tokens",
                str(args.max_tokens),
                "--reps",
                str(args.reps),
                "--prompts",
                str(args.prompts),
                *(["--raw"] if args.raw else []),
            ]
            done = subprocess.run(cmd, capture_output=True, text=True, check=True)
            runs[label].append(json.loads(done.stdout.strip().splitlines()[-1]))
            last = runs[label][-1]
            print(f"round {rnd + 1}: {label} {last['decode_tps_mean']:.1f} tok/s", file=sys.stderr)
    print(
        f"model={src.name} threads={args.threads} max_tokens={args.max_tokens} suite=default "
        f"prompts={args.prompts or 'all'} rounds={args.rounds} (median round; range over rounds)"
    )
    print(
        f"{'backend':9} {'label':10} {'quant':6} {'decode tok/s':>12} {'range':>13} "
        f"{'TTFT p50':>9} {'peak RSS':>9} {'file':>8}"
    )
    medians = {}
    for backend, label, _ in targets:
        rs = runs[label]
        decode = [r["decode_tps_mean"] for r in rs]
        medians[label] = statistics.median(decode)
        print(
            f"{backend:9} {label:10} {rs[0]['quant']!s:6} {medians[label]:12.1f} "
            f"{min(decode):6.1f}–{max(decode):6.1f} "
            f"{statistics.median(r['ttft_p50_s'] for r in rs) * 1000:7.0f}ms "
            f"{max(r['peak_rss_bytes'] for r in rs) / 2**20:7.0f}MB "
            f"{rs[0]['size_bytes'] / 1e6:6.0f}MB"
        )
    cpp = medians["llama.cpp"]
    for _, label, _ in targets[1:]:
        print(f"onnx {label} / llama.cpp decode: {medians[label] / cpp:.0%}")


if __name__ == "__main__":
    main()
