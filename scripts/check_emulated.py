"""An ONNX export and the answer signals on another instruction set, by QEMU user-mode emulation.

ONNX Runtime (MLAS) and numpy pick their kernels by CPUID, so `qemu-x86_64 -cpu Haswell` runs
their AVX2 code on an AVX-512 host. llama.cpp is compiled for the host's CPU and cannot run
under it, so its reference is computed natively first:

    .venv/bin/python scripts/check_emulated.py prepare --model GGUF --weights int4 --out DIR
    .venv/bin/python scripts/check_emulated.py compare --out DIR          # native, to compare
    qemu-x86_64 -cpu Haswell .venv/bin/python scripts/check_emulated.py compare --out DIR

`prepare` exports the GGUF (`edgeprof convert`'s code, no verification) and saves llama.cpp's
greedy tokens and logits for the first `--prompts` bundled prompts (as `convert`'s
verification tokenizes them). `compare` feeds the export the same tokens (teacher forcing) and
prints its agreement with llama.cpp, and scores every step's logits with `LogitSignals`
against a float64 computation of the same figures. It imports neither llama.cpp nor the
export's tokenizer (which is llama.cpp's). `apt-get install qemu-user` gives QEMU.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np


def prepare(model: Path, weights: str, out: Path, n_prompts: int, n_tokens: int) -> None:
    from edgeprof.convert.agreement import llamacpp_greedy
    from edgeprof.convert.gguf_to_onnx import convert_gguf
    from edgeprof.convert.verify import _load_reference
    from edgeprof.measure.workload import load_suite
    from edgeprof.models.tokens import prompt_tokens

    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    result = convert_gguf(model, out / f"{model.stem}-{weights}.onnx", weights=weights)
    print(f"exported {result.onnx_path.name} in {time.perf_counter() - t0:.0f} s")
    llm = _load_reference(model, None)
    refs: dict[str, Any] = {}
    for i, p in enumerate(load_suite()[:n_prompts]):
        tokens = prompt_tokens(llm, p.messages)
        cont, logits = llamacpp_greedy(llm, tokens, n_tokens)
        refs[f"tokens{i}"], refs[f"cont{i}"], refs[f"ref{i}"] = tokens, cont, logits
    llm.close()
    np.savez(out / "reference.npz", **refs)
    meta = {"onnx": result.onnx_path.name, "prompts": n_prompts, "source": model.name}
    (out / "reference.json").write_text(json.dumps(meta) + "\n")
    print(f"llama.cpp's reference for {n_prompts} prompts saved in {out}")


def signal_errors(rows: list[np.ndarray], cont: list[int]) -> dict[str, float]:
    """LogitSignals over the export's logits against the same figures in float64."""
    from edgeprof.backends.signals import LogitSignals

    acc = LogitSignals(rows[0].shape[-1])
    logprobs, entropies = [], []
    for x, t in zip(rows, cont, strict=True):
        acc.add(np.ascontiguousarray(x, dtype=np.float32), t)
        x64 = x.astype(np.float64)
        log_z = np.logaddexp.reduce(x64)
        p = np.exp(x64 - log_z)
        logprobs.append(x64[t] - log_z)
        entropies.append(float(-(p * (x64 - log_z)).sum()))
    got = acc.result()
    assert got is not None and got.entropy_mean is not None
    return {
        "logprob_mean": abs(got.logprob_mean - float(np.mean(logprobs))),
        "logprob_min": abs(got.logprob_min - float(np.min(logprobs))),
        "entropy_mean": abs(got.entropy_mean - float(np.mean(entropies))),
    }


def compare(out: Path) -> int:
    from edgeprof.backends.base import BackendOptions
    from edgeprof.backends.onnxrt import OnnxBackend, OnnxSettings
    from edgeprof.convert.agreement import pooled

    meta = json.loads((out / "reference.json").read_text())
    refs = np.load(out / "reference.npz")
    backend = OnnxBackend(BackendOptions(model=str(out / meta["onnx"])), OnnxSettings())

    def no_tokenizer() -> None:  # it is llama.cpp's: not here; the tokens come from the file
        backend._fmt = SimpleNamespace(label="(tokens given)", record=dict)
        backend._eog = frozenset()

    backend.load_tokenizer = no_tokenizer  # type: ignore[method-assign]
    backend.load()
    results, worst = [], dict.fromkeys(("logprob_mean", "logprob_min", "entropy_mean"), 0.0)
    t0 = time.perf_counter()
    for i in range(meta["prompts"]):
        tokens = [int(t) for t in refs[f"tokens{i}"]]
        cont = [int(t) for t in refs[f"cont{i}"]]
        agreement, rows = _agreement(backend, tokens, cont, refs[f"ref{i}"])
        results.append(agreement)
        for name, err in signal_errors(rows, cont).items():
            worst[name] = max(worst[name], err)
    backend.close()
    summary = pooled(results)
    print(f"{platform.machine()} {_isa()}: {meta['onnx']} against llama.cpp ({meta['source']}), "
          f"{summary['prompts']} prompts, {summary['steps']} steps, "
          f"{time.perf_counter() - t0:.0f} s")  # fmt: skip
    print(f"  top-1 {summary['top1']:.3f}, worst logit error (rel. L2) per prompt "
          f"{[round(r.rel_l2_max, 3) for r in results]}")  # fmt: skip
    print("  signals, worst |float32 - float64| over the prompts: "
          + ", ".join(f"{k} {v:.2e}" for k, v in worst.items()))  # fmt: skip
    return 0


def _agreement(
    backend: Any, tokens: list[int], cont: list[int], ref: np.ndarray
) -> tuple[Any, list[np.ndarray]]:
    """`agreement.compare`, keeping the export's logits of each step for the signals."""
    from edgeprof.convert.agreement import compare as score

    rows: list[np.ndarray] = []

    class Keep:
        def logits_stream(self, t: list[int], n: int) -> Any:
            stream = backend.logits_stream(t, n)
            token = None
            while True:
                row = stream.send(token) if token is not None else next(stream)
                rows.append(np.array(row, dtype=np.float32))
                token = yield row

    return score(Keep(), tokens, cont, ref), rows


def _isa() -> str:
    """The widest x86 vector extension the CPU reports to CPUID, as numpy read it at import:
    under QEMU that is the emulated CPU's (/proc/cpuinfo would still be the host's)."""
    from numpy._core._multiarray_umath import __cpu_features__ as features

    for flag in ("AVX512F", "AVX2", "AVX", "SSE42", "ASIMD"):
        if features.get(flag):
            return flag.lower()
    return "baseline"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="native: export and llama.cpp's reference")
    p.add_argument("--model", type=Path, required=True, help="the GGUF")
    p.add_argument("--weights", default="int4", help="fp32, int8 or int4")
    p.add_argument("--prompts", type=int, default=2)
    p.add_argument("--tokens", type=int, default=8)
    p.add_argument("--out", type=Path, required=True)
    c = sub.add_parser("compare", help="the export against the saved reference")
    c.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    if a.cmd == "prepare":
        prepare(a.model, a.weights, a.out, a.prompts, a.tokens)
        return 0
    return compare(a.out)


if __name__ == "__main__":
    sys.exit(main())
