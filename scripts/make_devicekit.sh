#!/usr/bin/env bash
# Prepare, on a machine with PyPI, what scripts/check_gpu.sh needs on a GPU machine without one:
# a wheelhouse of the wheels that machine's Python lacks and llama-cpp-python's sdist, trimmed
# to fit beside the repository in a 64 MiB carry.
#
#   bash scripts/make_devicekit.sh DIR [PRESENT...]
#
# DIR/wheelhouse gets: every wheel edgeprof's requirements (and llama-cpp-python's) resolve to
# for CPython $PY_VERSION on manylinux x86_64, less the large distributions named PRESENT
# (those the GPU machine's Python already has; default: the list below), and the sdist of the
# llama-cpp-python installed in $VENV (default .venv), trimmed: llama.cpp's vocabulary test
# GGUFs, docs, benches, media, web UI and the ggml backends other than CPU and CUDA are left
# out (none of them is compiled for CUDA; 73 MB -> about 14 MB). Nothing is taken from the
# sdist that check_gpu.sh's build uses.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=${1:?usage: make_devicekit.sh DIR [PRESENT...]}
shift
PY_VERSION=${PY_VERSION:-3.12}
VENV=${VENV:-$ROOT/.venv}
# The large wheels the GPU machine's Python 3.12 has (its docs), or that what it has pulls in.
# Small ones stay even when that Python has them: where its version is too old for a
# requirement, pip takes the wheelhouse's, with no index to ask.
PRESENT=("$@")
[ ${#PRESENT[@]} -gt 0 ] || PRESENT=(numpy onnx onnxruntime matplotlib pyarrow sympy pillow
    fonttools kiwisolver contourpy protobuf ml-dtypes)
WH=$DIR/wheelhouse
mkdir -p "$WH"
norm() { echo "$1" | tr 'A-Z' 'a-z' | sed -E 's/[-_.]+/_/g'; }

echo "== wheels for CPython $PY_VERSION"
REQS=$(mktemp)
"$VENV/bin/python" - "$ROOT/pyproject.toml" >"$REQS" <<'PY'
import sys, tomllib
deps = tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]
print("\n".join(d for d in deps if not d.lower().startswith("llama-cpp-python")))
print("diskcache>=5.6.1")  # llama-cpp-python's one requirement the others do not bring
PY
"$VENV/bin/python" -m pip download --quiet --only-binary :all: --python-version "$PY_VERSION" \
    --implementation cp --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux_2_28_x86_64 --platform any -d "$WH" -r "$REQS"
rm -f "$REQS"
for p in "${PRESENT[@]}"; do
    for f in "$WH"/*.whl; do
        [ "$(norm "$(basename "$f" | cut -d- -f1)")" != "$(norm "$p")" ] || rm -f "$f"
    done
done

echo "== llama-cpp-python's sdist, trimmed"
VERSION=$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))')
TMP=$(mktemp -d)
if [ -n "${SDIST:-}" ]; then # one downloaded before
    cp "$SDIST" "$TMP/"
else
    "$VENV/bin/python" -m pip download --quiet --no-binary :all: --no-deps \
        "llama-cpp-python==$VERSION" -d "$TMP"
fi
tar -xzf "$TMP"/llama_cpp_python-"$VERSION".tar.gz -C "$TMP"
S=$TMP/llama_cpp_python-$VERSION
L=$S/vendor/llama.cpp
# The sdist carries its git history (38 MB); the build reads only the commit from it, so that
# is written where llama.cpp's and ggml's CMake look first (git then finds no repository).
COMMIT=$(git -C "$L" rev-parse --short HEAD)
sed -i "s/^set(BUILD_COMMIT \"unknown\")/set(BUILD_COMMIT \"$COMMIT\")/" "$L/cmake/build-info.cmake"
sed -i "s/^    set(GGML_BUILD_COMMIT \"unknown\")/    set(GGML_BUILD_COMMIT \"$COMMIT\")/" \
    "$L/ggml/CMakeLists.txt"
grep -q "\"$COMMIT\"" "$L/cmake/build-info.cmake" "$L/ggml/CMakeLists.txt"
rm -rf "$S/.git" "$L/.git"
rm -rf "$L"/models/ggml-vocab-* "$L/docs" "$L/benches" "$L/media" "$L/tools/ui"
for b in cann et hexagon hip metal musa opencl openvino sycl virtgpu vulkan webgpu zdnn zendnn; do
    rm -rf "$L/ggml/src/ggml-$b"
done
rm -f "$WH"/llama_cpp_python-*
tar -C "$TMP" -czf "$WH/llama_cpp_python-$VERSION.tar.gz" "llama_cpp_python-$VERSION"
rm -rf "$TMP"
echo "llama.cpp $COMMIT"
ls -la "$WH"
du -sh "$DIR"
