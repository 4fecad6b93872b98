#!/usr/bin/env bash
# One prepared check for a machine with an NVIDIA GPU: ONNX Runtime's CUDA provider on the demo
# model's int4 export, sampled by NVML, against the same export on the CPU; optionally a CUDA
# build of llama-cpp-python with every layer offloaded against none.
#
#   bash scripts/check_gpu.sh               # ONNX Runtime only (a few minutes)
#   LLAMA_CUDA=1 bash scripts/check_gpu.sh  # also compile llama.cpp for CUDA (10+ minutes)
#
# Needs: the NVIDIA driver (nvidia-smi), python3 >= 3.10, a C/C++ compiler, and PyPI (the CUDA 12
# and cuDNN 9 runtime libraries come as wheels with onnxruntime-gpu[cuda,cudnn]; a CUDA build of
# llama.cpp also needs the CUDA toolkit's nvcc). Prints decode tok/s, peak GPU memory of this
# process, average power and where ONNX Runtime placed the graph's nodes, per run; everything
# it measured stays in $OUT/gpu.db for `edgeprof report`.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv-gpu}
OUT=${OUT:-$(mktemp -d /tmp/edgeprof-gpu.XXXXXX)}
LLAMA_CUDA=${LLAMA_CUDA:-0}
RUN=(--max-tokens 128 --repetitions 3 --idle-seconds 3 --db "$OUT/gpu.db" --json)
mkdir -p "$OUT"

echo "== GPU"
nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit --format=csv,noheader

echo "== install into $VENV"
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
if [ "$LLAMA_CUDA" = 1 ]; then
    export CMAKE_ARGS="-DGGML_CUDA=on"
    # a CUDA build must not come from pip's cache of an earlier CPU build
    "$VENV/bin/python" -m pip install --quiet --no-cache-dir 'llama-cpp-python>=0.3.36,<0.4'
fi
"$VENV/bin/python" -m pip install --quiet -e '.[dev]'
# onnxruntime and onnxruntime-gpu install the same module: only one may be present
"$VENV/bin/python" -m pip uninstall --quiet --yes onnxruntime
"$VENV/bin/python" -m pip install --quiet 'onnxruntime-gpu[cuda,cudnn]'
EP="$VENV/bin/edgeprof"

echo "== probe"
"$EP" probe --json > "$OUT/probe.json"
"$VENV/bin/python" - "$OUT/probe.json" <<'PY'
import json, sys
probe = json.load(open(sys.argv[1]))
ort = probe.get("onnxruntime", {})
print("onnxruntime", ort.get("version"), "providers:",
      [p["name"] for p in ort.get("providers", []) if p.get("available")])
print("llama.cpp:", {k: v for k, v in probe.get("llama_cpp", {}).items() if k != "system_info"})
print("power sensors:", [s.get("sensor") for s in probe.get("power_sources", []) if s.get("available")])
PY

echo "== the demo model's int4 export (converted and verified on the CPU)"
EXPORT=$("$VENV/bin/python" -c "
from edgeprof.models.export_cache import cached_export
from edgeprof.models.files import demo_model_path
print(cached_export(demo_model_path()).onnx_path)")
echo "$EXPORT"

echo "== runs"
"$EP" run --backend onnx --model "$EXPORT" --provider cuda --label onnx-cuda "${RUN[@]}" > "$OUT/onnx-cuda.json"
"$EP" run --backend onnx --model "$EXPORT" --provider cpu --label onnx-cpu "${RUN[@]}" > "$OUT/onnx-cpu.json"
if [ "$LLAMA_CUDA" = 1 ]; then
    "$EP" run --gpu-layers all --label llama-gpu "${RUN[@]}" > "$OUT/llama-gpu.json"
    "$EP" run --gpu-layers 0 --label llama-cpu "${RUN[@]}" > "$OUT/llama-cpu.json"
fi

echo "== results ($OUT/gpu.db)"
"$EP" report "$OUT/gpu.db" --json > "$OUT/report.json"
"$VENV/bin/python" - "$OUT/report.json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
runs = report
print(f"{'run':<12} {'decode tok/s':>12} {'TTFT p50 s':>10} {'peak GPU MiB':>12} {'avg W':>7}  "
      "energy sensors / node placement")
for r in runs:
    gpu = r.get("peak_gpu_mem_bytes")
    prov = r.get("provenance") or {}
    place = prov.get("node_placement") or prov.get("gpu_layers_offloaded")
    print(f"{r.get('label') or r['backend']:<12} {r.get('decode_tps_mean') or 0:>12.1f} "
          f"{r.get('ttft_p50_s') or 0:>10.3f} "
          f"{'-' if gpu is None else f'{gpu / 2**20:.0f}':>12} {r.get('avg_power_w') or 0:>7.1f}  "
          f"{r.get('energy_sensors')} {place}")
PY
