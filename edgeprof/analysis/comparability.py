"""Whether runs shown side by side measured the same thing.

Two llama.cpp runs of one model on one machine can differ several times over for reasons the
table does not show: a wheel built without AVX512 or with CUDA, a GPU that took every layer
or none, ONNX Runtime falling back to its CPU provider, a different thread count. The report
and `compare` print these notes beside the figures so that nobody reads such a gap as the
model's or the backend's.

Runs are compared per device (a Pi and a laptop differ by design): thread count across every
local run of the device, build features, GPU offload and execution providers between runs of
one backend, and where the device's backends each ran one way, whether they used the same
accelerator. Remote runs have no local build to compare. Pure: it reads `RunSummary` only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from edgeprof.analysis.summary import RunSummary

CPU_PROVIDER = "CPUExecutionProvider"
CPU_ONLY = "CPU only"
NO_PROVENANCE = "no build provenance recorded"

IdFormat = Callable[[str], str]
Value = Callable[[RunSummary], str | None]


def short_id(run_id: str) -> str:
    """The last 8 characters: what the report heads each run's column with (a ULID's first
    characters are its timestamp, alike for runs made the same day)."""
    return run_id[-8:]


def comparability_notes(
    summaries: Sequence[RunSummary], *, id_of: IdFormat = short_id
) -> list[str]:
    """One line per difference that makes runs shown together less comparable, e.g.
    "runs 3F9KQ2ZX, 7H2M1P0A differ in threads (2 vs 4)"; [] when there is none."""
    local = [s for s in summaries if not s.is_remote]
    notes: list[str] = []
    compared: list[RunSummary] = []
    for device_runs in _groups(local, lambda s: s.device_id):
        if len(device_runs) < 2:
            continue
        compared += device_runs
        notes += _differ(device_runs, "threads", _threads, id_of)
        notes += _differ(device_runs, "power setup", _power_setup, id_of)
        # one model given another prompt format answers another way, at another length
        for runs in _groups(device_runs, lambda s: s.target):
            notes += _differ(runs, "prompt format", _prompt_format, id_of)
        backends = _groups(device_runs, lambda s: s.backend)
        for runs in backends:
            notes += _backend_notes(runs, id_of)
        notes += _accelerator_note(backends, id_of)
    missing = [s for s in compared if not has_build_provenance(s)]
    if missing:
        notes.append(f"{_runs(missing, id_of)}: {NO_PROVENANCE}; compared on threads only")
    return notes


def has_build_provenance(s: RunSummary) -> bool:
    """Whether the backend recorded what it ran on (`environment` alone does not say)."""
    return any(key != "environment" for key in s.provenance)


# -- what each run ran with, as text (None: not recorded) -------------------------------------


def _threads(s: RunSummary) -> str | None:
    return None if s.threads is None else str(s.threads)


def gpu_offload(s: RunSummary) -> str | None:
    """ "all 31 layers", "12 of 31 layers" or "0", from llama.cpp's provenance."""
    offloaded = s.provenance.get("gpu_layers_offloaded")
    if offloaded is None or not isinstance(offloaded, int):
        return None if offloaded is None else str(offloaded)
    n_layer = s.provenance.get("n_layer")
    total = int(n_layer) + 1 if n_layer is not None else None  # blocks + the output layer
    if not offloaded:
        return "0"
    if total is not None and offloaded >= total:
        return f"all {total} layers"
    return f"{offloaded} of {total} layers" if total is not None else f"{offloaded} layers"


def providers(s: RunSummary) -> str | None:
    """The execution providers ONNX Runtime started, e.g. "CUDAExecutionProvider". The CPU
    provider that it appends behind every accelerator as the fallback is left out there."""
    used = s.provenance.get("providers_used")
    if not used:
        return None
    shown = [p for p in used if p != CPU_PROVIDER] or [CPU_PROVIDER]
    return "+".join(shown)


def accelerator(s: RunSummary) -> str | None:
    """Where the model ran, in words that hold across backends: "GPU (all 31 layers)",
    "CUDAExecutionProvider" or "CPU only"."""
    offload = gpu_offload(s)
    if offload is not None:
        return CPU_ONLY if offload == "0" else f"GPU ({offload})"
    shown = providers(s)
    if shown is not None:
        return CPU_ONLY if shown == CPU_PROVIDER else shown
    return None


# -- the notes ---------------------------------------------------------------------------


def _backend_notes(runs: list[RunSummary], id_of: IdFormat) -> list[str]:
    if len(runs) < 2:
        return []
    return [
        *_features_note(runs, id_of),
        *_differ(runs, "GPU offload", gpu_offload, id_of),
        *_differ(runs, "ONNX Runtime providers", providers, id_of),
    ]


def _accelerator_note(backends: list[list[RunSummary]], id_of: IdFormat) -> list[str]:
    """Across backends, where each backend's runs agree among themselves (where they do not,
    the backend's own note already says so): one run of each, side by side."""
    if len(backends) < 2:
        return []
    picked: list[RunSummary] = []
    for runs in backends:
        labels = {accelerator(s) for s in runs} - {None}
        if len(labels) > 1:
            return []
        picked += [s for s in runs if accelerator(s) is not None]
    return _differ(picked, "accelerator", accelerator, id_of)


def _features_note(runs: list[RunSummary], id_of: IdFormat) -> list[str]:
    """ "runs A, B differ in llama.cpp build features (AVX512 AVX512_VNNI only in A)": each
    feature not common to all, grouped by the runs that have it."""
    have = [
        (s, frozenset(f)) for s in runs if (f := s.provenance.get("build_features")) is not None
    ]
    if len({features for _, features in have}) < 2:
        return []
    common = frozenset.intersection(*(features for _, features in have))
    every = frozenset.union(*(features for _, features in have))
    by_holders: dict[tuple[str, ...], list[str]] = {}
    for feature in sorted(every - common):
        holders = tuple(id_of(s.run_id) for s, features in have if feature in features)
        by_holders.setdefault(holders, []).append(feature)
    parts = [f"{' '.join(fs)} only in {', '.join(ids)}" for ids, fs in by_holders.items()]
    runtime = _runtime([s for s, _ in have])
    return [f"{_runs([s for s, _ in have], id_of)} differ in {runtime}build features "
            f"({'; '.join(parts)})"]  # fmt: skip


def _differ(runs: list[RunSummary], what: str, value: Value, id_of: IdFormat) -> list[str]:
    """ "runs A, B differ in WHAT (x vs y)" over the runs that recorded it, or []."""
    known = [(s, v) for s in runs if (v := value(s)) is not None]
    if len({v for _, v in known}) < 2:
        return []
    values = " vs ".join(v for _, v in known)
    return [f"{_runs([s for s, _ in known], id_of)} differ in {what} ({values})"]


def _prompt_format(s: RunSummary) -> str | None:
    """ "builtin:gemma", "raw", "gguf": the label without the reason."""
    return s.prompt_format.split(" (")[0] if s.prompt_format else None


def _power_setup(s: RunSummary) -> str | None:
    """Governor, AC or battery, nvpmodel mode ...: the same board runs at another speed."""
    return ", ".join(f"{k} {v}" for k, v in sorted(s.power_setup.items())) or None


def _runtime(runs: list[RunSummary]) -> str:
    names = {str(s.provenance.get("runtime")) for s in runs if s.provenance.get("runtime")}
    return f"{names.pop()} " if len(names) == 1 else ""


def _runs(runs: Iterable[RunSummary], id_of: IdFormat) -> str:
    ids = [id_of(s.run_id) for s in runs]
    return f"run {ids[0]}" if len(ids) == 1 else f"runs {', '.join(ids)}"


def _groups(runs: Iterable[RunSummary], key: Callable[[RunSummary], Any]) -> list[list[RunSummary]]:
    """Runs grouped by `key`, groups and runs in the order shown."""
    out: dict[Any, list[RunSummary]] = {}
    for s in runs:
        out.setdefault(key(s), []).append(s)
    return list(out.values())
