"""Finding a run in the profile database that already measured what is about to be measured.

Two runs measure the same thing when the device, the backend, the model's bytes (for an ONNX
export: the GGUF it came from), its weight format, the threads used, the tokens generated, the
prompts' content and the format they were given in (chat template or raw), the backend's
settings and the concurrency are all equal. Runs recorded
before the runner kept the suite's hash (`params.suite_sha256`) never match: their prompts
cannot be told apart.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from edgeprof.store.db import Store
from edgeprof.store.rows import RunRow

Settings = tuple[tuple[str, str], ...]  # (name, value as JSON text), sorted by name


@dataclass(frozen=True)
class RunKey:
    device_id: str
    backend: str
    model_sha256: str  # an onnx run records the sha256 of the GGUF it was converted from
    quant: str | None
    threads: int | None  # the thread count the backend used, as params.threads records it
    max_tokens: int
    suite_sha256: str
    # Settings that must match, from `settings_key`; each is looked up in the run's recorded
    # backend settings (params.settings), else among its params (`ctx`, `keep_cache`). Empty:
    # settings are not compared.
    settings: Settings = ()
    concurrency: int = 1  # requests decoded together: another point of the throughput curve
    # the prompt format the run must have recorded (params.chat_template: "builtin:gemma",
    # "gguf", "raw", ...); None: not compared
    prompt_format: str | None = None


def settings_key(backend: str, given: Mapping[str, Any] | None = None) -> Settings:
    """The complete settings `backend` runs with when given `given` (its defaults for the
    rest), in the form the runner records them: a RunKey that matches only runs with these."""
    from edgeprof.backends import backend_class
    from edgeprof.backends.settings import parse_settings, settings_dict

    cls = backend_class(backend)
    parsed = parse_settings(cls.Settings, dict(given or {}), owner=f"the {backend} backend")
    values = json.loads(json.dumps(settings_dict(parsed), default=str))
    return tuple(sorted((name, _json(value)) for name, value in values.items()))


def reusable_run(store: Store, key: RunKey) -> str | None:
    """The id of the newest complete run that measured exactly `key`, with no failed
    measured request; None when there is none."""
    candidates = [r for r in store.runs() if _matches(r, key)]
    candidates.sort(key=lambda r: (_started(r), str(r["id"])), reverse=True)
    for run in candidates:
        measured = [r for r in store.requests(run["id"]) if not r["warmup"]]
        # A run whose requests failed measured errors, not speed: profile again instead.
        if measured and not any(r["error"] for r in measured):
            return str(run["id"])
    return None


def describe_reuse(store: Store, run_id: str) -> str:
    """One line naming a reused run: "run 01JDX4KQ (llamacpp, Q4_1, 4 threads, 64 tokens,
    24 requests, 2026-11-27 18:40 UTC)"."""
    (run,) = store.runs([run_id])
    params = _params(run)
    measured = sum(1 for r in store.requests(run_id) if not r["warmup"])
    threads = params.get("threads")
    parts = [
        str(run["backend"]),
        run.get("quant"),
        None if threads is None else f"{threads} thread{'s' if threads != 1 else ''}",
        None if params.get("max_tokens") is None else f"{params['max_tokens']} tokens",
        f"{measured} request{'s' if measured != 1 else ''}",
        _started_text(run),
    ]
    return f"run {run_id[:8]} ({', '.join(str(p) for p in parts if p)})"


def _matches(run: RunRow, key: RunKey) -> bool:
    params = _params(run)
    return (
        run.get("status") == "complete"
        and (run.get("device_id"), run.get("backend")) == (key.device_id, key.backend)
        and (run.get("model_sha256"), run.get("quant")) == (key.model_sha256, key.quant)
        and params.get("threads") == key.threads
        and params.get("max_tokens") == key.max_tokens
        and params.get("suite_sha256") == key.suite_sha256
        and int(params.get("concurrency") or 1) == key.concurrency
        and all(_recorded(params, name) == value for name, value in key.settings)
        and (key.prompt_format is None or params.get("chat_template") == key.prompt_format)
    )


_MISSING = object()


def _recorded(params: dict[str, Any], name: str) -> str | None:
    """A setting's recorded value as JSON text; None when the run did not record it."""
    settings = params.get("settings")
    value = settings.get(name, _MISSING) if isinstance(settings, dict) else _MISSING
    if value is _MISSING:
        value = params.get(name, _MISSING)
    return None if value is _MISSING else _json(value)


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _params(run: RunRow) -> dict[str, Any]:
    params = run.get("params")
    return params if isinstance(params, dict) else {}  # a damaged blob stays a string


def _started(run: RunRow) -> datetime:
    return _parse_time(run.get("started_at")) or datetime.min.replace(tzinfo=timezone.utc)


def _parse_time(value: Any) -> datetime | None:
    """An ISO time, comparable across the runner's "+00:00" and other writers' "Z"."""
    try:
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _started_text(run: RunRow) -> str | None:
    when = _parse_time(run.get("started_at"))
    if when is None:
        return run.get("started_at") or None
    return when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
