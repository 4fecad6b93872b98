"""Which tests need the demo model or the llama.cpp server, decided from what they use rather
than from a decorator someone may forget: a test is `model` when it, or any fixture it uses
(directly or through other fixtures), reaches the demo model, and `server` when it reaches
the llama-cpp-python server fixture. `make test-fast` deselects both."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable

import pytest

MODEL_FIXTURES = frozenset({"demo_model", "demo_run"})
SERVER_FIXTURES = frozenset({"llama_server"})
# A call in a test's or a fixture's own source that loads the demo model or a GGUF with it
# (STEM: a test module's name for the demo model's file stem).
MODEL_CALLS = re.compile(r"\bdemo_model_path\(\)|\bLlama\(|\bSTEM\b")


def _sources(item: pytest.Item) -> Iterable[str]:
    function = getattr(item, "function", None)
    if function is not None:
        yield _source(function)
    info = getattr(item, "_fixtureinfo", None)
    for defs in info.name2fixturedefs.values() if info else ():
        for fixture_def in defs:
            yield _source(fixture_def.func)


def _source(obj: object) -> str:
    try:
        return inspect.getsource(obj)  # type: ignore[arg-type]
    except (OSError, TypeError):
        return ""


def needed_markers(fixtures: Iterable[str], sources: Iterable[str]) -> set[str]:
    names = set(fixtures)
    marks = set()
    if names & SERVER_FIXTURES:
        marks.add("server")
    if names & MODEL_FIXTURES or any(MODEL_CALLS.search(s) for s in sources):
        marks.add("model")
    return marks


def mark_items(items: Iterable[pytest.Item]) -> None:
    for item in items:
        have = {m.name for m in item.iter_markers()}
        for name in needed_markers(getattr(item, "fixturenames", ()), _sources(item)) - have:
            item.add_marker(getattr(pytest.mark, name))
