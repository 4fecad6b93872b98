"""How closely `edgeprof convert`'s exports of each family agree with llama.cpp (docs/onnx.md).

    .venv/bin/python scripts/bench_convert_families.py [--steps 24] [--gemma 6] [--out DIR]

Part 1, every family: the tiny random-weight GGUFs of tests/tiny_models.py (F32, Q8_0, Q4_0),
exported as fp32, int8 and int4 respectively; llama.cpp (KV cache in f32) decodes a 41-token
prompt greedily and the export is fed the same tokens. Part 2, with `--gemma N` and the
`gemma` extra installed: Gemma 3 270M's fp32/int8/int4 exports on the first N bundled prompts
x 16 steps, as `verify_export` scores them. Prints top-1 agreement and relative logit errors.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.tiny_models

VARIANTS = (("F32", "fp32"), ("Q8_0", "int8"), ("Q4_0", "int4"))


def tiny_families(out: Path, steps: int) -> None:
    import llama_cpp

    from edgeprof.backends import BackendOptions, create_backend
    from edgeprof.convert import SUPPORTED_ARCHS, convert_gguf
    from edgeprof.convert.agreement import compare, llamacpp_greedy
    from tests.tiny_models import write_tiny

    prompt = [1, *(int(t) for t in np.random.default_rng(1).integers(3, 259, 40))]
    print(f"tiny random-weight models, {len(prompt)}-token prompt, {steps} greedy steps")
    for arch in SUPPORTED_ARCHS:
        for quant, weights in VARIANTS:
            blocks = None if quant == "F32" else quant
            src = write_tiny(out / f"{arch}-{quant}.gguf", arch, quant=blocks)
            dst = convert_gguf(src, out / f"{arch}-{weights}.onnx", weights=weights).onnx_path
            llm = llama_cpp.Llama(model_path=str(src), n_ctx=256, n_threads=2, type_k=0,
                                  type_v=0, verbose=False)  # fmt: skip
            cont, ref = llamacpp_greedy(llm, prompt, steps)
            llm.close()
            backend = create_backend("onnx", BackendOptions(model=str(dst), threads=2))
            backend.load()
            a = compare(backend, prompt, cont, ref)
            backend.close()
            line = f"  {arch:7} {quant:4} -> {weights:5} top-1 {a.top1:6.1%} over {a.steps}, "
            print(f"{line}rel. L2 first {a.rel_l2_first:.1e} max {a.rel_l2_max:.1e}", flush=True)


def gemma(out: Path, n_prompts: int) -> None:
    from edgeprof.backends import BackendOptions, create_backend
    from edgeprof.convert import convert_gguf
    from edgeprof.convert.agreement import agreement_on_prompts, pooled
    from edgeprof.convert.verify import _load_reference
    from edgeprof.measure.workload import load_suite
    from edgeprof.models.packaged import find_packaged, packaged_path

    model = find_packaged("gemma-3-270m-q4_k_m.gguf")
    assert model is not None
    src = packaged_path(model)
    prompts = [p.messages for p in load_suite()[:n_prompts]]
    print(f"{src.name}: first {n_prompts} bundled prompts x 16 steps")
    llm = _load_reference(src, 2)
    for weights in ("fp32", "int8", "int4"):
        r = convert_gguf(src, out / f"gemma-{weights}.onnx", weights=weights)
        backend = create_backend("onnx", BackendOptions(model=str(r.onnx_path), threads=2))
        backend.load()
        s = pooled(agreement_on_prompts(backend, llm, prompts, 16))
        backend.close()
        line = f"  {weights:5} {r.size_bytes / 1e6:5.0f} MB converted in {r.seconds:4.0f} s: "
        line += f"top-1 {s['top1']:.1%} over {s['steps']}, rel. L2 after prompt median "
        print(f"{line}{s['rel_l2_first_median']:.1%} max {s['rel_l2_first_max']:.1%}", flush=True)
    llm.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--gemma", type=int, default=0, help="Also Gemma 3 270M on N prompts.")
    ap.add_argument("--out", type=Path, default=None, help="Keep the files here.")
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="edgeprof-families-"))
    out.mkdir(parents=True, exist_ok=True)
    tiny_families(out, args.steps)
    if args.gemma:
        gemma(out, args.gemma)


if __name__ == "__main__":
    main()
