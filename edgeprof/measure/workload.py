"""Prompt suites: the bundled JSONL suites and users' own files.

A suite file holds one JSON object per line: `{"name": ..., "prompt": "user text"}`, optionally
with `"system": "..."`, or `{"name": ..., "messages": [{"role": ..., "content": ...}, ...]}`.
A prompt's id is the sha256 of its canonical messages, so the same prompt has the same id in
every database and merges never duplicate it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from edgeprof.errors import UsageError

DEFAULT_SUITE = "default"
ROLES = {"system", "user", "assistant"}


@dataclass(frozen=True)
class Prompt:
    id: str
    suite: str
    name: str
    messages: tuple[dict[str, str], ...]

    @property
    def text(self) -> str:
        return json.dumps(list(self.messages), ensure_ascii=False, sort_keys=True)

    def row(self) -> dict[str, Any]:
        return {"id": self.id, "suite": self.suite, "name": self.name, "text": self.text}


def prompt_id(messages: tuple[dict[str, str], ...]) -> str:
    canonical = json.dumps(list(messages), ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


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
    path = Path(spec)
    if not path.is_file():
        raise UsageError(
            f"prompt suite {spec!r} is neither a bundled suite ({', '.join(bundled_suites())}) "
            "nor a .jsonl file; check the path"
        )
    try:
        text = path.read_text("utf-8")
    except UnicodeDecodeError as e:
        raise UsageError(f"{path} is not UTF-8 text; save it as UTF-8 JSONL") from e
    return parse_suite(text, suite=path.stem, source=str(path))


def parse_suite(text: str, *, suite: str, source: str) -> list[Prompt]:
    prompts: list[Prompt] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("//"):
            continue
        where = f"{source}, line {lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise UsageError(f"{where}: not valid JSON ({e.msg}); one JSON object per line") from e
        if not isinstance(obj, dict):
            raise UsageError(f'{where}: expected a JSON object like {{"prompt": "..."}}')
        messages = _messages(obj, where)
        name = str(obj.get("name") or obj.get("id") or f"{suite}-{lineno}")
        prompts.append(Prompt(prompt_id(messages), suite, name, messages))
    if not prompts:
        raise UsageError(f'{source} holds no prompts; add lines like {{"prompt": "..."}}')
    return prompts


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
        out.append(Prompt(prompt_id(messages), p.suite, p.name, messages))
    return out


def load_system_prompt(path: Path) -> str:
    try:
        return path.read_text("utf-8")
    except FileNotFoundError:
        raise UsageError(f"--system-prompt {path} not found; pass a UTF-8 text file") from None
    except (IsADirectoryError, UnicodeDecodeError):
        raise UsageError(f"--system-prompt {path} is not a UTF-8 text file") from None
