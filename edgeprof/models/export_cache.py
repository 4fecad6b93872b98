"""The ONNX export of a GGUF, converted and verified once, then reused.

An export lives beside its GGUF (`<dir>/<stem>.<weights>.onnx` and the sidecars convert
writes) when that folder is writable and not inside an installed package, else under
`$XDG_CACHE_HOME/edgeprof/exports/<sha16>/` (default `~/.cache/...`), named by the GGUF's
sha256 (and made again when `CONVERTER_VERSION` changes). `<stem>.<weights>.verify.json`, written
last and atomically, is the commit marker: it holds the verification's result and the size
of every file, and it is removed before a conversion starts, so a conversion killed halfway
never leaves an export that looks valid.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgeprof.convert.gguf_to_onnx import CONVERTER_VERSION, WEIGHT_FORMATS, convert_gguf
from edgeprof.convert.sidecar import read_config, sidecar_paths
from edgeprof.convert.verify import DEFAULT_THRESHOLD, THRESHOLDS, Verification, verify_export
from edgeprof.errors import EdgeprofError, ModelLoadError, UsageError
from edgeprof.models.files import sha256_file
from edgeprof.progress import ProgressFn

RECORD_FORMAT = 1

# progress(stage, done, total), passed through to convert_gguf and verify_export


@dataclass(frozen=True)
class CachedExport:
    onnx_path: Path
    weights: str
    reused: bool  # found converted and verified; nothing was converted
    top1: float  # verification: share of greedy steps that agree with llama.cpp
    threshold: float
    passed: bool
    convert_s: float | None  # None when reused
    verify_s: float | None  # None when the recorded verification was reused too


def _no_progress(stage: str, done: int, total: int) -> None:
    pass


def export_path_for(gguf: Path, weights: str = "int4") -> Path:
    """Where `cached_export` writes a new export of `gguf` (hashing it only when the cache
    is the place)."""
    if _writable(gguf.parent):
        return _beside(gguf, weights)
    return _in_cache(gguf, weights, sha256_file(gguf))


def verify_record_path(onnx_path: Path) -> Path:
    stem = onnx_path.with_suffix("")
    return stem.with_name(stem.name + ".verify.json")


def cached_export(
    gguf: Path,
    *,
    weights: str = "int4",
    progress: ProgressFn = _no_progress,
    threads: int | None = None,
) -> CachedExport:
    """The verified `weights` export of `gguf`: found beside it or in the cache, else
    converted and verified now. Raises ModelLoadError when it disagrees with llama.cpp."""
    if weights not in WEIGHT_FORMATS:
        raise UsageError(f"`weights` {weights!r} is not one of {', '.join(WEIGHT_FORMATS)}")
    if not gguf.is_file():
        raise ModelLoadError(f"model file {gguf} not found; pass the path to a .gguf file")
    sha = sha256_file(gguf)
    for onnx_path in (_beside(gguf, weights), _in_cache(gguf, weights, sha)):
        record = committed_record(onnx_path, sha, weights)
        if record is not None:
            return _reuse(onnx_path, record, gguf, progress, threads)
    target = _beside(gguf, weights) if _writable(gguf.parent) else _in_cache(gguf, weights, sha)
    with _locked(target):
        # another process may have converted it while this one waited for the lock
        record = committed_record(target, sha, weights)
        if record is not None:
            return _reuse(target, record, gguf, progress, threads)
        return _convert(gguf, target, weights, sha, progress, threads)


def committed_record(onnx_path: Path, sha: str, weights: str) -> dict[str, Any] | None:
    """The verification record of a complete export of the GGUF `sha` in `weights` at
    `onnx_path`; None when anything is missing, different or unreadable."""
    record = _read_json(verify_record_path(onnx_path))
    if record is None or not _config_matches(onnx_path, sha, weights):
        return None
    if (record.get("source_sha256"), record.get("weights")) != (sha, weights):
        return None
    if not isinstance(record.get("top1"), (int, float)):
        return None
    sizes = _file_sizes(onnx_path)
    return record if sizes is not None and record.get("files") == sizes else None


def _config_matches(onnx_path: Path, sha: str, weights: str) -> bool:
    config_path = sidecar_paths(onnx_path)["config"]
    if not config_path.is_file():
        return False
    try:
        config = read_config(config_path)
    except EdgeprofError:
        return False
    source = config.get("source")
    source_sha = source.get("sha256") if isinstance(source, dict) else None
    # an export by an older converter is made again: the same GGUF now gives another graph
    made = (source_sha, config.get("weights"), config.get("converter"))
    return made == (sha, weights, CONVERTER_VERSION)


def _reuse(
    onnx_path: Path,
    record: dict[str, Any],
    gguf: Path,
    progress: ProgressFn,
    threads: int | None,
) -> CachedExport:
    verify_s = None
    if (record.get("onnxruntime"), record.get("cpu_model")) != (_ort_version(), _cpu()):
        # another ONNX Runtime, or another CPU (a cache shared between machines), runs other
        # kernels: their agreement is not this one's (int8 once passed with VNNI, failed
        # without)
        check = verify_export(onnx_path, gguf, threads=threads, progress=progress)
        record = {**record, **_verification_fields(check)}
        verify_s = check.seconds
        with contextlib.suppress(OSError):  # a folder made read-only since: check next time too
            _write_json_atomic(verify_record_path(onnx_path), record)
    return _result(onnx_path, record, reused=True, convert_s=None, verify_s=verify_s)


def _convert(
    gguf: Path,
    onnx_path: Path,
    weights: str,
    sha: str,
    progress: ProgressFn,
    threads: int | None,
) -> CachedExport:
    # The commit marker goes first: from here until it is written again nothing looks valid.
    verify_record_path(onnx_path).unlink(missing_ok=True)
    converted = convert_gguf(gguf, onnx_path, weights=weights, progress=progress)
    if converted.source_sha256 != sha:
        raise ModelLoadError(
            f"{gguf} changed while it was being converted; wait until it is fully written"
        )
    check = verify_export(onnx_path, gguf, threads=threads, progress=progress)
    record = {
        "edgeprof_format": RECORD_FORMAT,
        "source_file": gguf.name,
        "source_sha256": sha,
        "weights": weights,
        "convert_s": round(converted.seconds, 3),
        **_verification_fields(check),
        "files": _file_sizes(onnx_path),
    }
    _write_json_atomic(verify_record_path(onnx_path), record)
    return _result(
        onnx_path, record, reused=False, convert_s=converted.seconds, verify_s=check.seconds
    )


def _verification_fields(check: Verification) -> dict[str, Any]:
    return {
        "top1": check.top1,
        "threshold": check.threshold,
        "passed": check.passed,
        "steps": check.steps,
        "prompts": check.prompts,
        "verify_s": round(check.seconds, 3),
        "onnxruntime": _ort_version(),
        "cpu_model": _cpu(),
        "verified_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _result(
    onnx_path: Path,
    record: dict[str, Any],
    *,
    reused: bool,
    convert_s: float | None,
    verify_s: float | None,
) -> CachedExport:
    """The export, or the error that it disagrees with llama.cpp. A recorded failure fails
    again without re-verifying: the same files on the same runtime score the same."""
    weights = str(record["weights"])
    top1 = float(record["top1"])
    threshold = THRESHOLDS.get(weights, DEFAULT_THRESHOLD)
    if top1 < threshold:
        raise ModelLoadError(
            f"the {weights} ONNX export {onnx_path} disagrees with llama.cpp (top-1 "
            f"{top1:.0%} < threshold {threshold:.0%}), so the ONNX target is skipped; "
            "leave it out with `--no-onnx`"
        )
    return CachedExport(onnx_path, weights, reused, top1, threshold, True, convert_s, verify_s)


# -- where exports live --------------------------------------------------------------------


def _beside(gguf: Path, weights: str) -> Path:
    return gguf.with_name(f"{gguf.stem}.{weights}.onnx")


def _in_cache(gguf: Path, weights: str, sha: str) -> Path:
    return _cache_root() / sha[:16] / f"{gguf.stem}.{weights}.onnx"


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME", "")
    # the XDG spec: a relative path is invalid and ignored
    root = Path(base) if os.path.isabs(base) else Path.home() / ".cache"
    return root / "edgeprof" / "exports"


def _writable(folder: Path) -> bool:
    """A folder to write an export into: the user's, not an installed package's (the demo
    model lives in a wheel: 230 MB written there would outlive `pip uninstall`)."""
    installed = {"site-packages", "dist-packages"} & set(folder.resolve().parts)
    return not installed and os.access(folder, os.W_OK | os.X_OK)


def _file_sizes(onnx_path: Path) -> dict[str, int] | None:
    """Every file of the export by name and size; None when one is missing."""
    paths = [onnx_path, *sidecar_paths(onnx_path).values()]
    if not all(p.is_file() for p in paths):
        return None
    return {p.name: p.stat().st_size for p in paths}


@contextlib.contextmanager
def _locked(onnx_path: Path) -> Iterator[None]:
    """One conversion of an export at a time, across processes (two `decide`s at once)."""
    try:
        onnx_path.parent.mkdir(parents=True, exist_ok=True)
        handle = onnx_path.with_name(onnx_path.name + ".lock").open("a")
    except OSError as e:
        raise ModelLoadError(
            f"cannot write the ONNX export to {onnx_path.parent} ({e.strerror}); set "
            "XDG_CACHE_HOME to a writable folder, or leave the ONNX target out with `--no-onnx`"
        ) from e
    with handle:
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; conversions there are not shared
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Whole or absent, never half-written: a temporary file renamed over `path`."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _cpu() -> str:
    from edgeprof.measure.device import cpu_model

    return cpu_model()


def _ort_version() -> str:
    import onnxruntime

    return str(onnxruntime.__version__)
