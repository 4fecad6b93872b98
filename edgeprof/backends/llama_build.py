"""What the llama.cpp that llama-cpp-python loaded was built with, and where it runs.

Two runs of the same model on the same machine can differ by 10x for reasons a run's settings
do not show: a wheel built without AVX2, one built for CUDA or Metal, a GPU that took every
layer or none. This module reads what the library says about itself, for each run's
`params.provenance` and for `edgeprof probe`:

- `llama_print_system_info()`: one "NAME : KEY = VALUE | ..." group per ggml backend (CPU
  features such as AVX2 or NEON; for CUDA its architectures). `parse_system_info` and
  `build_features` read it; both are pure.
- `llama_supports_gpu_offload()`: whether any GPU backend (CUDA, Metal, Vulkan, ...) is in.
- ggml's version and build commit, and its devices with their memory, through ggml's own C
  API (`ggml_version`, `ggml_commit`, `ggml_backend_dev_*`): llama-cpp-python 0.3 does not
  bind these in Python, so they are called through ctypes on the libggml it ships, and
  recorded as unknown where that library is not there.

The library is imported inside each reader, so importing this module stays cheap.
"""

from __future__ import annotations

import ctypes
from collections.abc import Mapping, Sequence
from typing import Any

GpuLayers = int | str  # a layer count, or "all"

# ggml_backend_dev_type, in the order ggml declares it (IGPU since mid 2025).
DEVICE_TYPES = ("cpu", "gpu", "igpu", "accel")


# -- pure: what the text and the numbers say ------------------------------------------------


def parse_system_info(text: str) -> dict[str, dict[str, str]]:
    """`llama_print_system_info()` as {backend: {feature: value}}, in the order printed.

    Since ggml's backend registry (late 2024) each backend prints "NAME : " and then its
    features, "KEY = VALUE | " each, e.g. "CUDA : ARCHS = 870 | USE_GRAPHS = 1 | CPU : AVX = 1 |
    ". A backend with no features prints its name alone, straight before the next one's.
    Older builds printed every CPU flag as 0 or 1 with no backend name: kept under "".
    """
    out: dict[str, dict[str, str]] = {}
    backend = ""
    for item in text.split("|"):
        *names, feature = (part.strip() for part in item.split(" : "))
        for name in names:
            backend = name
            out.setdefault(backend, {})
        key, _, value = feature.partition("=")
        if key.strip():
            out.setdefault(backend, {})[key.strip()] = value.strip()
    return out


def build_features(text: str) -> list[str]:
    """The features `llama_print_system_info()` reports as on ("= 1"), sorted, once each:
    e.g. ["AVX", "AVX2", "F16C", "FMA", "OPENMP", ...]. Values that are not a switch (CUDA's
    `ARCHS = 870`) are not features; `parse_system_info` keeps them."""
    parsed = parse_system_info(text)
    return sorted({key for features in parsed.values() for key, v in features.items() if v == "1"})


def system_backends(text: str) -> list[str]:
    """The ggml backends named in `llama_print_system_info()`, e.g. ["CUDA", "CPU"]."""
    return [name for name in parse_system_info(text) if name]


def resolve_gpu_layers(value: GpuLayers, offload_supported: bool) -> GpuLayers:
    """`n_gpu_layers` as a run uses it: "auto" is "all" where the library can offload to a
    GPU and 0 where it cannot (a CPU-only build would ignore the layers anyway, but recording
    0 says what happened)."""
    if value == "auto":
        return "all" if offload_supported else 0
    return value


def gpu_layers_offloaded(requested: GpuLayers, n_layer: int, offload_supported: bool) -> int:
    """The layers llama.cpp puts on the GPU for `requested` on a model of `n_layer` blocks.

    llama-cpp-python does not report the count (llama.cpp only logs "offloaded N/M layers"),
    so this computes it as llama.cpp decides it: the repeating blocks plus the output layer
    make n_layer + 1 offloadable layers, a larger request is capped there, and a build
    without GPU offload offloads none whatever was asked.
    """
    if not offload_supported:
        return 0
    total = n_layer + 1
    return total if requested == "all" else min(int(requested), total)


def devices_in_use(
    devices: Sequence[Mapping[str, Any]], offloaded: int, split_mode: str, main_gpu: int
) -> list[dict[str, Any]]:
    """`devices` with `used` set: the CPU (and accelerators that work beside it) always; GPUs
    only when layers were offloaded, and with split mode "none" only the `main_gpu`-th."""
    out: list[dict[str, Any]] = []
    gpu_index = 0
    for device in devices:
        used = True
        if device.get("type") in ("gpu", "igpu"):
            used = offloaded > 0 and (split_mode != "none" or gpu_index == main_gpu)
            gpu_index += 1
        out.append({**device, "used": used})
    return out


def describe(info: Mapping[str, Any]) -> list[str]:
    """`library_info()` as the lines `edgeprof probe` prints under "llama.cpp"."""
    if not info.get("available"):
        return [f"not available: {info.get('reason')}"]
    offload = "yes" if info["gpu_offload_supported"] else "no (a CPU-only build)"
    commit = info.get("llama_cpp_commit") or "unknown"
    lines = [
        f"llama-cpp-python {info['llama_cpp_python']}, ggml {info.get('ggml_version')}, "
        f"commit {commit}",
        f"GPU offload: {offload}",
        f"backends: {', '.join(info['backends']) or '–'}",
        f"build features: {' '.join(info['build_features']) or '–'}",
    ]
    for d in info["devices"]:
        total = d.get("memory_total_bytes")
        memory = f", {total / 2**30:.1f} GiB" if total else ""
        what = f" ({d['description']})" if d.get("description") else ""
        lines.append(f"device {d['name']}{what}: {d.get('type') or 'unknown'}{memory}")
    lines.append(f"  devices from {info['devices_source']}")
    return lines


# -- the loaded library ---------------------------------------------------------------------


def _llama_cpp() -> Any | None:
    try:
        import llama_cpp
    except ImportError:
        return None
    return llama_cpp


def gpu_offload_supported() -> bool:
    """Whether the installed llama.cpp was built with a GPU backend; False without one."""
    llama_cpp = _llama_cpp()
    return bool(llama_cpp.llama_supports_gpu_offload()) if llama_cpp is not None else False


def library_info() -> dict[str, Any]:
    """What the installed llama.cpp is and can use: versions, commit, system info, features,
    GPU offload and ggml devices. `{"available": False, "reason": ...}` without it."""
    llama_cpp = _llama_cpp()
    if llama_cpp is None:
        return {"available": False, "reason": "llama-cpp-python is not installed"}
    text = llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip()
    lib = _libggml()
    devices, source = _devices(lib)
    return {
        "available": True,
        "runtime": "llama.cpp",
        "llama_cpp_python": llama_cpp.__version__,
        "ggml_version": _text_call(lib, "ggml_version"),
        # GGML_COMMIT: cmake takes it from the git checkout ggml was built in; for
        # llama-cpp-python's vendored copy that is the llama.cpp commit ("-dirty": patched).
        "llama_cpp_commit": _text_call(lib, "ggml_commit"),
        "system_info": text,
        "backends": system_backends(text),
        "build_features": build_features(text),
        "gpu_offload_supported": bool(llama_cpp.llama_supports_gpu_offload()),
        "devices": devices,
        "devices_source": source,
    }


def provenance(
    requested: GpuLayers, n_layer: int, split_mode: str, main_gpu: int
) -> dict[str, Any]:
    """A run's `params.provenance`: the library, and what became of the offload asked for."""
    info = library_info()
    info.pop("available", None)
    supported = bool(info.get("gpu_offload_supported"))
    offloaded = gpu_layers_offloaded(requested, n_layer, supported)
    return {
        **info,
        "gpu_layers_requested": requested,
        # computed, not reported: see gpu_layers_offloaded
        "gpu_layers_offloaded": offloaded,
        "n_layer": n_layer,
        "devices": devices_in_use(info.get("devices", []), offloaded, split_mode, main_gpu),
    }


def _libggml() -> Any | None:
    """The libggml llama-cpp-python loaded (its dependencies give libggml-base's symbols)."""
    try:
        from llama_cpp import _ggml
    except ImportError:  # another layout of llama-cpp-python: no ggml calls, recorded so
        return None
    return getattr(_ggml, "libggml", None)


def _function(lib: Any, name: str, restype: Any, *argtypes: Any) -> Any | None:
    """A fresh ctypes prototype for `name`, so that no attribute of llama-cpp-python's shared
    library object is changed; None when the symbol is not in this build."""
    if lib is None or not hasattr(lib, name):
        return None
    return ctypes.CFUNCTYPE(restype, *argtypes)((name, lib))


def _text_call(lib: Any, name: str) -> str | None:
    fn = _function(lib, name, ctypes.c_char_p)
    raw = fn() if fn is not None else None
    return raw.decode("utf-8", "replace") if raw else None


def _devices(lib: Any) -> tuple[list[dict[str, Any]], str]:
    """ggml's devices with their memory, and where the list came from."""
    p, size = ctypes.c_void_p, ctypes.c_size_t
    fns: list[Any] = [
        _function(lib, "ggml_backend_dev_count", size),
        _function(lib, "ggml_backend_dev_get", p, size),
        _function(lib, "ggml_backend_dev_name", ctypes.c_char_p, p),
        _function(lib, "ggml_backend_dev_description", ctypes.c_char_p, p),
        _function(lib, "ggml_backend_dev_type", ctypes.c_int, p),
        _function(lib, "ggml_backend_dev_memory", None, p, *[ctypes.POINTER(size)] * 2),
    ]
    if any(fn is None for fn in fns):
        # Only the CPU is certain: llama.cpp always computes there.
        cpu = {"name": "CPU", "description": None, "type": "cpu",
               "memory_free_bytes": None, "memory_total_bytes": None}  # fmt: skip
        return [cpu], "assumed: this llama-cpp-python does not expose ggml's device API"
    count, get, name, desc, kind, memory = fns
    devices = []
    for i in range(count()):
        dev = get(i)
        free, total = size(0), size(0)
        memory(dev, ctypes.byref(free), ctypes.byref(total))
        t = kind(dev)
        devices.append(
            {
                "name": (name(dev) or b"").decode("utf-8", "replace"),
                "description": (desc(dev) or b"").decode("utf-8", "replace") or None,
                "type": DEVICE_TYPES[t] if 0 <= t < len(DEVICE_TYPES) else f"type {t}",
                "memory_free_bytes": free.value or None,
                "memory_total_bytes": total.value or None,
            }
        )
    return devices, "ggml_backend_dev_* (libggml)"
