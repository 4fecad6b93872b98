"""Prompt suites: the bundled JSONL suites and users' own files.

A suite file holds one JSON object per line: `{"name": ..., "prompt": "user text"}`, optionally
with `"system": "..."`, or `{"name": ..., "messages": [{"role": ..., "content": ...}, ...]}`;
optionally with `"assert": [...]` (grading/assertions.py), `"reference"`, `"kind"`,
`"threshold"` and `"response_schema"` (a JSON Schema the backend holds the answer to).
promptfoo's YAML configs (promptfoo.py) and OpenAI evals' JSONL (openai_evals.py,
`FILE.jsonl#fuzzy` chooses how `ideal` is matched) load as they are.
A prompt's id is the sha256 of its canonical messages, so the same prompt has the same id in
every database and merges never duplicate it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from edgeprof.errors import UsageError
from edgeprof.grading.assertions import make_assertions
from edgeprof.measure.prompt import Prompt, jsonl_objects, prompt_id

__all__ = ["Prompt", "bundled_suites", "load_suite", "parse_suite", "prompt_id"]

DEFAULT_SUITE = "default"
EVALS_MODES = ("equals", "includes", "fuzzy")
DEFAULT_EVALS_MODE = "includes"
ROLES = {"system", "user", "assistant"}


def suite_sha256(prompts: Sequence[Prompt]) -> str:
    """The suite's content as one hash: its prompt ids in order. Names and the suite's own
    name stay out, so a bundled suite and a copy of its file under another name agree."""
    h = hashlib.sha256()
    for p in prompts:
        h.update(p.id.encode("utf-8") + b"\n")
    return h.hexdigest()


def bundled_suites() -> list[str]:
    return sorted(
        p.name.removesuffix(".jsonl")
        for p in resources.files("edgeprof.data").iterdir()
        if p.name.endswith(".jsonl")
    )


def load_suite(spec: str | None = None) -> list[Prompt]:
    """A bundled suite by name, or a JSONL file by path."""
    spec = spec or DEFAULT_SUITE
    if spec in bundled_suites():
        text = resources.files("edgeprof.data").joinpath(f"{spec}.jsonl").read_text("utf-8")
        return parse_suite(text, suite=spec, source=f"bundled suite {spec}")
    path, evals_mode = _split_evals_mode(spec)
    if not path.is_file():
        raise UsageError(
            f"prompt suite {spec!r} is neither a bundled suite ({', '.join(bundled_suites())}) "
            "nor a .jsonl file; check the path"
        )
    try:
        text = path.read_text("utf-8")
    except UnicodeDecodeError as e:
        raise UsageError(f"{path} is not UTF-8 text; save it as UTF-8 JSONL") from e
    if path.suffix.lower() in (".yaml", ".yml"):
        from edgeprof.measure.promptfoo import parse_promptfoo

        return parse_promptfoo(text, suite=path.stem, source=str(path), base=path.parent)
    if evals_mode is None and _looks_like_evals(text):
        evals_mode = DEFAULT_EVALS_MODE
    if evals_mode is not None:
        from edgeprof.measure.openai_evals import parse_evals

        return parse_evals(text, suite=path.stem, source=str(path), mode=evals_mode)
    return parse_suite(text, suite=path.stem, source=str(path))


def _looks_like_evals(text: str) -> bool:
    first = next((line for line in text.splitlines() if line.strip()), "")
    try:
        obj = json.loads(first)
    except json.JSONDecodeError:
        return False
    return isinstance(obj, dict) and "input" in obj and "ideal" in obj


def _split_evals_mode(spec: str) -> tuple[Path, str | None]:
    """`FILE.jsonl#fuzzy` -> (FILE.jsonl, "fuzzy"): an OpenAI evals file and how to grade it."""
    head, sep, mode = spec.rpartition("#")
    if not sep or Path(spec).is_file():
        return Path(spec), None
    if mode not in EVALS_MODES:
        raise UsageError(
            f"{spec}: after # comes how to grade an OpenAI evals file: {', '.join(EVALS_MODES)}"
        )
    return Path(head), mode


def parse_suite(text: str, *, suite: str, source: str) -> list[Prompt]:
    prompts: list[Prompt] = []
    for lineno, where, obj in jsonl_objects(text, source):
        if not isinstance(obj, dict):
            raise UsageError(f'{where}: expected a JSON object like {{"prompt": "..."}}')
        if "input" in obj and "ideal" in obj and "prompt" not in obj and "messages" not in obj:
            raise UsageError(
                f"{where}: an OpenAI evals line (input + ideal) in an edgeprof suite; "
                "keep one format per file"
            )
        prompts.append(_prompt(obj, suite, f"{suite}-{lineno}", where))
    if not prompts:
        raise UsageError(f'{source} holds no prompts; add lines like {{"prompt": "..."}}')
    return prompts


def _prompt(obj: dict[str, Any], suite: str, default_name: str, where: str) -> Prompt:
    messages = _messages(obj, where)
    name = str(obj.get("name") or obj.get("id") or default_name)
    for key in ("reference", "kind"):
        if obj.get(key) is not None and not isinstance(obj[key], str):
            raise UsageError(f'{where}: "{key}" must be a string')
    threshold = obj.get("threshold")
    if threshold is not None and (
        isinstance(threshold, bool) or not isinstance(threshold, (int, float))
    ):
        raise UsageError(f'{where}: "threshold" must be a number from 0 to 1')
    schema = obj.get("response_schema")
    if schema is not None and not isinstance(schema, dict):
        raise UsageError(f'{where}: "response_schema" must be a JSON Schema object')
    return Prompt(
        prompt_id(messages),
        suite,
        name,
        messages,
        assertions=make_assertions(obj.get("assert"), where),
        reference=obj.get("reference"),
        kind=obj.get("kind"),
        threshold=None if threshold is None else float(threshold),
        response_schema=schema,
    )


def _messages(obj: dict[str, Any], where: str) -> tuple[dict[str, str], ...]:
    if "messages" in obj:
        raw = obj["messages"]
        if not isinstance(raw, list) or not raw:
            raise UsageError(f'{where}: "messages" must be a non-empty list of {{role, content}}')
        out = []
        for m in raw:
            if (
                not isinstance(m, dict)
                or not isinstance(m.get("role"), str)
                or m["role"] not in ROLES
                or not isinstance(m.get("content"), str)
            ):
                raise UsageError(
                    f"{where}: each message needs a role ({', '.join(sorted(ROLES))}) "
                    "and a string content"
                )
            out.append({"role": m["role"], "content": m["content"]})
        return tuple(out)
    prompt = obj.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise UsageError(f'{where}: needs a non-empty "prompt" string or a "messages" list')
    system = obj.get("system")
    if system is not None and not isinstance(system, str):
        raise UsageError(f'{where}: "system" must be a string')
    head = ({"role": "system", "content": system},) if system else ()
    return (*head, {"role": "user", "content": prompt})


def with_system_prompt(prompts: Sequence[Prompt], system: str) -> list[Prompt]:
    """Every prompt with `system` as its system message (replacing its own), so that all
    requests start with the same prefix, as a feature's requests do: what prompt caching
    reuses. The prompts get new ids, and the suite a new hash."""
    if not system.strip():
        raise UsageError("the system prompt file is empty; pass a file with the shared prompt")
    out = []
    for p in prompts:
        rest = tuple(m for m in p.messages if m["role"] != "system")
        messages = ({"role": "system", "content": system}, *rest)
        out.append(dataclasses.replace(p, id=prompt_id(messages), messages=messages))
    return out


def load_system_prompt(path: Path) -> str:
    try:
        return path.read_text("utf-8")
    except FileNotFoundError:
        raise UsageError(f"--system-prompt {path} not found; pass a UTF-8 text file") from None
    except (IsADirectoryError, UnicodeDecodeError):
        raise UsageError(f"--system-prompt {path} is not a UTF-8 text file") from None
