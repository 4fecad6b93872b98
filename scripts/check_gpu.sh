#!/usr/bin/env bash
# One prepared check for a machine with an NVIDIA GPU and no package registry: llama.cpp built
# for CUDA from a local llama-cpp-python sdist, edgeprof runs with every layer on the GPU and
# with none, llama-bench from the same build at the same settings, and one table at the end.
#
#   bash scripts/check_gpu.sh --wheelhouse .devicekit/wheelhouse --out /tmp/gpu
#   bash scripts/check_gpu.sh --llama-ready --llama-bench PATH   # llama-cpp-python already built
#   bash scripts/check_gpu.sh --cpu-only --wheelhouse DIR --llama-lib DIR  # rehearsal, no GPU
#
# Options (environment in brackets):
#   --wheelhouse DIR  [WHEELHOUSE]  wheels for what $PYTHON lacks, and llama-cpp-python's sdist
#                                   (llama_cpp_python-*.tar.*); pip never looks anywhere else
#   --llama-ready                   use the llama-cpp-python $PYTHON imports, as it is
#   --llama-lib DIR                 a llama.cpp already built (libllama.so, libggml*.so): skip
#                                   compiling; llama-bench is taken from DIR if it is there
#   --llama-bench PATH [LLAMA_BENCH] the llama-bench to compare with (default: the build's)
#   --cpu-only                      no GPU needed: the CPU half of every check (a rehearsal)
#   --out DIR          [OUT]        where the results go (default: a new /tmp/edgeprof-gpu.*)
#   --work DIR         [WORK]       venv, build and GGUF, kept for a rerun (default: .gpu-check)
#   --threads N        [THREADS]    CPU threads for edgeprof and llama-bench (default: nproc)
#   [PYTHON] the base Python (default python3); its packages are used, the rest comes from the
#   wheelhouse. [CUDA_ARCH] overrides the detected compute capability (9.0 -> 90).
#   [LLAMA_CMAKE_EXTRA] more CMake arguments for llama.cpp. [MAX_TOKENS] (128) and
#   [REPETITIONS] (3) size the edgeprof runs (12 prompts each pass); llama-bench runs -p 512
#   -n 128 -r 3.
#
# The build: llama.cpp from the sdist's vendored source, once, with CMake (targets llama and
# llama-bench, shared libraries, -DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=<detected>); then
# llama-cpp-python's Python package from the same sdist with -DLLAMA_BUILD=OFF, its lib/
# pointing at that build, so edgeprof and llama-bench run the same libllama. A rerun with the
# same --work reuses the build. The random-weight GGUF (scripts/make_random_gguf.py) has the
# demo model's header, shapes and quant types, so the demo model's wheel is not needed.
#
# Exit status: 0 the table was printed (a run that crashed is in it, as a result), 2 a problem
# with the setup (usage, the wheelhouse lacks something, the build failed), 3 no GPU here.
# $OUT gets check.log, probe.json, gpu.db (for `edgeprof report`), run-*.json/.err,
# llama-bench-*.json, report.json, table.txt and table.json; build.log when it compiled.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

die() { # status, message
    echo "check_gpu: $2" >&2
    exit "$1"
}
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

WHEELHOUSE=${WHEELHOUSE:-}
LLAMA_BENCH=${LLAMA_BENCH:-}
OUT=${OUT:-}
WORK=${WORK:-$ROOT/.gpu-check}
NPROC=$(nproc 2>/dev/null || sysctl -n hw.ncpu 2>/dev/null || echo 4) # macOS has no nproc
THREADS=${THREADS:-$NPROC}
MAX_TOKENS=${MAX_TOKENS:-128}
REPETITIONS=${REPETITIONS:-3}
PYTHON=${PYTHON:-python3}
LLAMA_READY=0
LLAMA_LIB=
CPU_ONLY=0
while [ $# -gt 0 ]; do
    case $1 in
    --wheelhouse) WHEELHOUSE=${2:?--wheelhouse needs a directory}; shift 2 ;;
    --llama-ready) LLAMA_READY=1; shift ;;
    --llama-lib) LLAMA_LIB=${2:?--llama-lib needs a directory}; shift 2 ;;
    --llama-bench) LLAMA_BENCH=${2:?--llama-bench needs a path}; shift 2 ;;
    --cpu-only) CPU_ONLY=1; shift ;;
    --out) OUT=${2:?--out needs a directory}; shift 2 ;;
    --work) WORK=${2:?--work needs a directory}; shift 2 ;;
    --threads) THREADS=${2:?--threads needs a number}; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) die 2 "unknown option $1 (see --help)" ;;
    esac
done
# pip must never reach for an index, whatever the caller's pip.conf says
export PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
# coreutils' timeout bounds each check; where there is none (macOS), the checks run unbounded
command -v timeout >/dev/null 2>&1 || timeout() { shift; "$@"; }

# -- 1. a GPU, before anything else: nothing is installed or built on a machine without one --
GPU_NAME=cpu
CUDA_ARCH=${CUDA_ARCH:-}
if [ "$CPU_ONLY" = 0 ]; then
    command -v nvidia-smi >/dev/null 2>&1 ||
        die 3 "no GPU: nvidia-smi is not on PATH (no NVIDIA driver). This check needs an NVIDIA GPU; --cpu-only rehearses the rest on the CPU."
    if ! SMI=$(nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total \
        --format=csv,noheader 2>&1); then
        die 3 "no GPU: nvidia-smi failed: $(printf '%s' "$SMI" | tail -n 1)"
    fi
    SMI=$(printf '%s\n' "$SMI" | head -n 1)
    GPU_NAME=$(printf '%s' "$SMI" | cut -d, -f1)
    CAP=$(printf '%s' "$SMI" | cut -d, -f2 | tr -d ' ')
    case $CAP in
    [0-9]*.[0-9]*) ;;
    *) die 3 "no GPU: nvidia-smi gave no compute capability (\"$SMI\")" ;;
    esac
    CUDA_ARCH=${CUDA_ARCH:-${CAP/./}}
fi
case $LLAMA_READY$LLAMA_LIB$WHEELHOUSE in
0) die 2 "give --wheelhouse DIR (wheels and llama-cpp-python's sdist) or --llama-ready" ;;
esac
[ -z "$WHEELHOUSE" ] || [ -d "$WHEELHOUSE" ] || die 2 "--wheelhouse $WHEELHOUSE is not a directory"
[ -z "$WHEELHOUSE" ] || WHEELHOUSE=$(cd "$WHEELHOUSE" && pwd)
command -v "$PYTHON" >/dev/null 2>&1 || die 2 "no $PYTHON here; set PYTHON to a Python >= 3.11"

OUT=${OUT:-$(mktemp -d /tmp/edgeprof-gpu.XXXXXX)}
mkdir -p "$OUT" "$WORK"
OUT=$(cd "$OUT" && pwd)
WORK=$(cd "$WORK" && pwd)
exec > >(tee -a "$OUT/check.log") 2>&1

T0=$SECONDS
PHASE=
PHASE_T=$SECONDS
phase() { # name: ends the phase before with its elapsed time
    [ -z "$PHASE" ] || echo "   ($PHASE: $((SECONDS - PHASE_T)) s)"
    PHASE=$1
    PHASE_T=$SECONDS
    [ -z "$1" ] || echo "== $1"
}
echo "check_gpu: $(date -u +%FT%TZ) on $(uname -n), GPU: $GPU_NAME${CUDA_ARCH:+ (sm_$CUDA_ARCH)}," \
    "$THREADS threads; results in $OUT"

# -- 2. the wheelhouse has what the base Python lacks (names what it lacks, before pip) -------
SDIST=
if [ "$LLAMA_READY" = 0 ]; then
    [ -n "$WHEELHOUSE" ] || die 2 "--llama-lib needs --wheelhouse too (llama-cpp-python's sdist)"
    SDIST=$(find "$WHEELHOUSE" -maxdepth 1 -name 'llama_cpp_python-*.tar.*' | sort | tail -n 1)
    [ -n "$SDIST" ] || die 2 "the wheelhouse $WHEELHOUSE lacks llama-cpp-python's sdist \
(llama_cpp_python-*.tar.gz): on a machine with PyPI, pip download --no-binary :all: --no-deps \
llama-cpp-python==<version> -d $WHEELHOUSE"
fi
REQS=$WORK/requirements.txt
if [ -n "$WHEELHOUSE" ]; then
    phase "wheelhouse: $WHEELHOUSE"
    "$PYTHON" - "$ROOT/pyproject.toml" "$SDIST" "$WHEELHOUSE" "$REQS" <<'PY' || exit 2
import importlib.metadata as md, os, re, sys, tarfile, tomllib
pyproject, sdist, wheelhouse, out = sys.argv[1:]
reqs = tomllib.load(open(pyproject, "rb"))["project"]["dependencies"]
name = lambda r: re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0]
norm = lambda n: re.sub(r"[-_.]+", "_", n).lower()
reqs = [r for r in reqs if norm(name(r)) != "llama_cpp_python"]  # built here, from the sdist
if sdist:  # llama-cpp-python's own runtime requirements, from its pyproject
    with tarfile.open(sdist) as tar:
        for member in tar:
            if member.name.count("/") == 1 and member.name.endswith("/pyproject.toml"):
                reqs += tomllib.load(tar.extractfile(member))["project"]["dependencies"]
                break
installed = set()
for n in map(name, reqs):
    try:
        md.version(n)
        installed.add(norm(n))
    except md.PackageNotFoundError:
        pass
files = {norm(f.split("-")[0]) for f in os.listdir(wheelhouse) if f.endswith((".whl", ".tar.gz"))}
lacking = sorted({name(r) for r in reqs if norm(name(r)) not in installed | files})
if lacking:
    sys.exit(f"check_gpu: the wheelhouse {wheelhouse} lacks {', '.join(lacking)} (and "
             f"{sys.executable} does not have them): on a machine with PyPI, pip download "
             f"--only-binary :all: --python-version {sys.version_info.major}."
             f"{sys.version_info.minor} --platform manylinux2014_x86_64 -d {wheelhouse} "
             + " ".join(lacking))
open(out, "w").write("\n".join(reqs) + "\n")
print(f"{len(reqs)} requirements: {len(installed)} installed in {sys.executable}, "
      f"the others from the wheelhouse ({len(files)} packages there)")
PY
fi

# -- 3. a venv that sees the base Python's packages and adds the wheelhouse's -----------------
signal_of() { # exit status -> words: "killed by SIGSEGV", "timed out", "exit status 1"
    if [ "$1" = 124 ]; then
        echo "timed out"
    elif [ "$1" -gt 128 ]; then
        echo "killed by SIG$(kill -l $(($1 - 128)) 2>/dev/null || echo $(($1 - 128)))"
    else
        echo "exit status $1"
    fi
}
PIP_LOG=$WORK/pip.log
pip_try() { # args...: pip install from the wheelhouse only; its words in $PIP_LOG
    "$VPY" -m pip install --no-index --find-links "$WHEELHOUSE" --no-build-isolation --quiet \
        "$@" >"$PIP_LOG" 2>&1
}
pip_install() { # args...: the same, or stop naming what the wheelhouse lacks
    if ! pip_try "$@"; then
        cat "$PIP_LOG"
        local missing
        missing=$(grep -o 'No matching distribution found for [^ ]*' "$PIP_LOG" |
            awk '{print $NF}' | sort -u | tr '\n' ' ')
        [ -z "$missing" ] || die 2 "the wheelhouse $WHEELHOUSE lacks: $missing"
        die 2 "pip install $* failed (above; the whole output is in $PIP_LOG)"
    fi
}
if [ -n "$WHEELHOUSE" ]; then
    phase "venv: $WORK/venv"
    VENV=$WORK/venv
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV" 2>/dev/null ||
        "$PYTHON" -m venv --without-pip "$VENV" || die 2 "$PYTHON cannot make a venv"
    VPY=$VENV/bin/python
    if ! "$VPY" -m pip --version >/dev/null 2>&1; then # no ensurepip (uv's Pythons, Debian's)
        PIP_WHEEL=$(find "$WHEELHOUSE" -maxdepth 1 -name 'pip-*.whl' | sort | tail -n 1)
        [ -n "$PIP_WHEEL" ] || die 2 "the venv has no pip and the wheelhouse lacks pip's wheel"
        "$VPY" "$PIP_WHEEL/pip" install --quiet --no-index "$PIP_WHEEL" # pip runs from its wheel
    fi
    # A venv made from a venv would not see its packages (--system-site-packages means the base
    # interpreter's): a .pth puts the base Python's site-packages after the venv's own.
    "$PYTHON" -c 'import site; print("\n".join(site.getsitepackages()))' \
        >"$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/_edgeprof_base.pth"
    pip_install -r "$REQS"
else
    VPY=$(command -v "$PYTHON")
fi
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
EP=("$VPY" -m edgeprof)

# -- 4. llama.cpp, built once; llama-cpp-python's package on top of it ------------------------
build_llama() { # src: llama.cpp from the sdist, for CUDA (or the CPU with --cpu-only)
    local src=$1 build=$WORK/build args stamp
    args="-DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON -DLLAMA_BUILD_TESTS=OFF \
-DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_CURL=OFF \
-DLLAMA_OPENSSL=OFF ${LLAMA_CMAKE_EXTRA:-}"
    if [ "$CPU_ONLY" = 0 ]; then
        # llama-cpp-python's own CUDA build settings (the one that built on the H200 in 334 s).
        # Both sides run without flash attention; LLAMA_CMAKE_EXTRA=-DGGML_CUDA_FA=OFF leaves
        # its kernels' bodies out to shorten the build.
        args="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=$CUDA_ARCH $args"
        # the toolkit's usual home, when its bin is not on PATH
        command -v nvcc >/dev/null 2>&1 || [ ! -x /usr/local/cuda/bin/nvcc ] ||
            export PATH=/usr/local/cuda/bin:$PATH
        command -v nvcc >/dev/null 2>&1 ||
            die 2 "no nvcc: building llama.cpp for CUDA needs the CUDA toolkit (nvcc on PATH)"
    fi
    stamp="$(basename "$SDIST") $args"
    # A build cut short (a time limit) resumes where it stopped: ninja redoes only what is
    # missing. Only other settings start over.
    if [ "$(cat "$build/.edgeprof-args" 2>/dev/null)" != "$stamp" ]; then
        rm -rf "$build"
    fi
    if [ -f "$build/.edgeprof-done" ]; then
        echo "reusing $build (built with: $args)"
    else
        echo "cmake $args ($NPROC jobs; the CUDA kernels take most of it; log: $OUT/build.log)"
        mkdir -p "$build"
        echo "$stamp" >"$build/.edgeprof-args"
        # shellcheck disable=SC2086 # the arguments are words
        if ! { { [ -f "$build/build.ninja" ] || cmake -S "$src/vendor/llama.cpp" -B "$build" \
            -G Ninja $args; } && cmake --build "$build" --target llama llama-bench \
            -j "$NPROC"; } >>"$OUT/build.log" 2>&1; then
            tail -n 30 "$OUT/build.log"
            die 2 "building llama.cpp failed (above; the whole log is $OUT/build.log)"
        fi
        touch "$build/.edgeprof-done"
    fi
    LLAMA_LIB=$build/bin
}
install_llama_cpp_python() { # src lib: the Python package only, its lib/ -> the build
    local src=$1 lib=$2 pkg purelib version
    pkg=$("$VPY" -c 'import importlib.util as u; s = u.find_spec("llama_cpp"); print(s.submodule_search_locations[0] if s else "")')
    if [ -z "$pkg" ] || [ "$(readlink "$pkg/lib")" != "$lib" ]; then
        if ! CMAKE_ARGS="-DLLAMA_BUILD=OFF" pip_try --no-deps --force-reinstall "$src"; then
            # It is pure Python (ctypes): its sources and a minimal record of the version do
            # what pip's build would have done, rather than end the check here.
            tail -n 15 "$PIP_LOG"
            echo "pip could not build llama-cpp-python's package (above; $PIP_LOG): copying it"
            purelib=$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
            version=$(sed -nE 's/^__version__ = "([^"]+)".*/\1/p' "$src/llama_cpp/__init__.py")
            rm -rf "$purelib/llama_cpp" "$purelib"/llama_cpp_python-*.dist-info
            cp -r "$src/llama_cpp" "$purelib/llama_cpp"
            mkdir -p "$purelib/llama_cpp_python-$version.dist-info"
            printf 'Metadata-Version: 2.1\nName: llama_cpp_python\nVersion: %s\n' "$version" \
                >"$purelib/llama_cpp_python-$version.dist-info/METADATA"
        fi
        pkg=$("$VPY" -c 'import importlib.util as u; print(u.find_spec("llama_cpp").submodule_search_locations[0])')
        # one directory, so llama_cpp and llama_cpp._ggml load the very libraries llama-bench
        # links (two copies of libggml would mean two backend registries)
        rm -rf "$pkg/lib"
        ln -s "$lib" "$pkg/lib"
    fi
    echo "llama-cpp-python $("$VPY" -c 'import llama_cpp; print(llama_cpp.__version__)') in $pkg, lib -> $lib"
}
if [ "$LLAMA_READY" = 0 ]; then
    phase "llama.cpp from $(basename "$SDIST")"
    SRC=$WORK/src/$(basename "$SDIST" | sed -E 's/\.tar\.[a-z0-9]+$//')
    if [ ! -f "$SRC/pyproject.toml" ]; then
        rm -rf "$WORK/src" && mkdir -p "$WORK/src"
        tar -xf "$SDIST" -C "$WORK/src"
        SRC=$(find "$WORK/src" -mindepth 1 -maxdepth 1 -type d | head -n 1)
    fi
    if [ -n "$LLAMA_LIB" ]; then
        LLAMA_LIB=$(cd "$LLAMA_LIB" && pwd)
        [ -f "$LLAMA_LIB/libllama.so" ] || [ -f "$LLAMA_LIB/libllama.dylib" ] ||
            die 2 "--llama-lib $LLAMA_LIB has no libllama.so (or .dylib)"
    else
        build_llama "$SRC"
    fi
    install_llama_cpp_python "$SRC" "$LLAMA_LIB"
    [ -n "$LLAMA_BENCH" ] || [ ! -x "$LLAMA_LIB/llama-bench" ] || LLAMA_BENCH=$LLAMA_LIB/llama-bench
fi
rc=0
"$VPY" -c 'import llama_cpp, sys; sys.exit(0 if llama_cpp.llama_supports_gpu_offload() else 10)' ||
    rc=$?
if [ "$rc" = 10 ]; then
    [ "$CPU_ONLY" = 1 ] || echo "WARNING: this llama-cpp-python cannot offload to a GPU (a CPU build)"
elif [ "$rc" != 0 ]; then
    echo "WARNING: importing llama_cpp failed ($(signal_of "$rc")); the checks go on, to say how"
fi

# -- 5. the model: the demo model's layout with random weights --------------------------------
phase "model: random weights, the demo model's layout"
GGUF=$WORK/smollm2-135m-q4_1-random.gguf
# written aside and moved, so that a write cut short is never taken for the model
[ -s "$GGUF" ] || { "$VPY" scripts/make_random_gguf.py "$GGUF.part" && mv "$GGUF.part" "$GGUF"; }
echo "$GGUF ($(du -m "$GGUF" | cut -f1) MiB)"
phase ""
echo "setup done after $((SECONDS - T0)) s"

# -- 6. the checks, the most valuable first; each one's outcome is kept, whatever it is -------
DB=$OUT/gpu.db
TARGETS=(gpu cpu)
[ "$CPU_ONLY" = 0 ] || TARGETS=(cpu)
layers() { [ "$1" = gpu ] && echo all || echo 0; }
ngl() { [ "$1" = gpu ] && echo 99 || echo 0; }

table() { # the table from what the database holds now
    timeout 120 "${EP[@]}" report "$DB" --json >"$OUT/report.json" 2>"$OUT/report.err" || true
    "$VPY" scripts/gpu_check_table.py --out "$OUT" --report "$OUT/report.json" \
        --targets "${TARGETS[@]}" || echo "the table failed (above); edgeprof report $DB shows it all"
}

phase "a. edgeprof probe"
if timeout 120 "${EP[@]}" probe --json --db "$DB" >"$OUT/probe.json" 2>"$OUT/probe.err"; then
    "$VPY" scripts/gpu_check_table.py --probe "$OUT/probe.json" || true
else
    rc=$?
    echo "probe failed ($(signal_of $rc)):"
    tail -n 20 "$OUT/probe.err"
fi

RUN=(--model "$GGUF" --max-tokens "$MAX_TOKENS" --repetitions "$REPETITIONS" --idle-seconds 3
    --threads "$THREADS" --db "$DB" --json)
for target in "${TARGETS[@]}"; do
    phase "b. edgeprof run, llama.cpp, --gpu-layers $(layers "$target")"
    if timeout 300 "${EP[@]}" run "${RUN[@]}" --gpu-layers "$(layers "$target")" \
        --label "llama-$target" >"$OUT/run-$target.json" 2>"$OUT/run-$target.err"; then
        echo "complete"
    else
        rc=$?
        echo "run llama-$target FAILED ($(signal_of $rc)); its last words:"
        tail -n 15 "$OUT/run-$target.err"
        echo "-- edgeprof report, as the database has it now:"
        timeout 60 "${EP[@]}" report "$DB" || true
    fi
done

phase "the table so far (in case time runs out; the final one comes last)"
table

for target in "${TARGETS[@]}"; do
    phase "c. llama-bench, same build, -ngl $(ngl "$target")"
    if [ -z "$LLAMA_BENCH" ]; then
        echo "skipped: no llama-bench (give --llama-bench PATH)"
        continue
    fi
    if timeout 240 "$LLAMA_BENCH" -m "$GGUF" -p 512 -n 128 -r 3 -t "$THREADS" -fa 0 \
        -ngl "$(ngl "$target")" -o json >"$OUT/llama-bench-$target.json" \
        2>"$OUT/llama-bench-$target.err"; then
        timeout 60 "${EP[@]}" import "$OUT/llama-bench-$target.json" --db "$DB" --here \
            --model "$GGUF" || echo "edgeprof import failed (above)"
    else
        rc=$?
        echo "llama-bench FAILED ($(signal_of $rc)):"
        tail -n 15 "$OUT/llama-bench-$target.err"
        rm -f "$OUT/llama-bench-$target.json"
    fi
done

phase "d. the table"
timeout 120 "${EP[@]}" report "$DB" >"$OUT/report.txt" 2>&1 || true
table
phase ""
echo "total $((SECONDS - T0)) s; everything is in $OUT (edgeprof report $DB)"
