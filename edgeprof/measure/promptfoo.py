"""promptfoo's `promptfooconfig.yaml` as a suite, without conversion.

Read: `prompts` (strings, `file://` text files, `{raw, id, label}` objects; a prompt that is a
JSON list of messages is a chat), `tests` (each with `vars`, `assert`, `threshold`,
`description`, `metadata.kind`), and `defaultTest` (its `vars` and `assert` apply to every
test). Every prompt is rendered with every test's vars (`{{ name }}`; a var holding a list
expands into one test per value, as promptfoo does). An assertion type edgeprof cannot grade
(`javascript`, `similar`, ...) is an error that names it, never skipped. `providers` are
ignored: edgeprof runs the suite on the targets it is given.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgeprof.errors import UsageError
from edgeprof.grading.assertions import ASSERTION_TYPES, Assertion, make_assertion
from edgeprof.measure.prompt import Prompt, prompt_id

_VAR = re.compile(r"\{\{\s*([A-Za-z_][\w.]*)\s*\}\}")
_ROLES = {"system", "user", "assistant"}


def parse_promptfoo(text: str, *, suite: str, source: str, base: Path) -> list[Prompt]:
    import yaml  # lazily: only promptfoo configs need it

    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise UsageError(f"{source}: not valid YAML ({_first_line(e)})") from e
    if not isinstance(config, Mapping):
        raise UsageError(f"{source}: a promptfoo config is a mapping with prompts and tests")
    templates = _templates(config.get("prompts"), source, base)
    default = config.get("defaultTest") or {}
    if not isinstance(default, Mapping):
        raise UsageError(f"{source}: defaultTest must be a mapping (vars, assert)")
    tests = config.get("tests") or [{}]
    if not isinstance(tests, list):
        raise UsageError(
            f"{source}: tests must be a list in the file (tests from CSV or file:// are not read)"
        )
    prompts = []
    for i, test in enumerate(tests):
        where = f"{source}, test {i + 1}"
        if not isinstance(test, Mapping):
            raise UsageError(f"{where}: a test is a mapping (vars, assert); file:// is not read")
        prompts += _test_prompts(templates, default, test, suite, where)
    return prompts


def _first_line(e: Exception) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def _templates(raw: Any, source: str, base: Path) -> list[tuple[str, str]]:
    """(label, template) for each prompt."""
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise UsageError(f"{source}: prompts must be a non-empty list")
    out = []
    for i, item in enumerate(raw):
        label = f"prompt {i + 1}"
        if isinstance(item, Mapping):
            label = str(item.get("label") or item.get("id") or label)
            item = item.get("raw", item.get("id"))
        if not isinstance(item, str) or not item.strip():
            raise UsageError(f"{source}, prompt {i + 1}: a prompt is a string or {{raw: ...}}")
        if item.startswith("file://"):
            item, label = _read_prompt_file(item, base, source), item.removeprefix("file://")
        out.append((label, item))
    return out


def _read_prompt_file(ref: str, base: Path, source: str) -> str:
    path = base / ref.removeprefix("file://")
    if path.suffix.lower() not in (".txt", ".md", ".json"):
        raise UsageError(f"{source}: {ref}: only .txt, .md and .json prompt files are read")
    try:
        return path.read_text("utf-8")
    except OSError as e:
        raise UsageError(f"{source}: cannot read {ref} ({e.strerror}); check the path") from e


def _test_prompts(
    templates: list[tuple[str, str]],
    default: Mapping[str, Any],
    test: Mapping[str, Any],
    suite: str,
    where: str,
) -> list[Prompt]:
    variables = {**(default.get("vars") or {}), **(test.get("vars") or {})}
    raw_asserts = [*(default.get("assert") or []), *(test.get("assert") or [])]
    threshold = test.get("threshold", default.get("threshold"))
    metadata = test.get("metadata") or {}
    kind = metadata.get("kind") if isinstance(metadata, Mapping) else None
    name = str(test.get("description") or where.rsplit(", ", 1)[-1])
    out = []
    for combo in _expand(variables, where):
        assertions = tuple(
            _assertion(_render_value(a, combo), f"{where}, assert {k + 1}")
            for k, a in enumerate(raw_asserts)
        )
        for label, template in templates:
            messages = _messages(_render(template, combo, where), where)
            out.append(
                Prompt(
                    prompt_id(messages),
                    suite,
                    name if len(templates) == 1 else f"{name} [{label}]",
                    messages,
                    assertions=assertions,
                    kind=str(kind) if kind is not None else None,
                    threshold=None if threshold is None else float(threshold),
                )
            )
    return out


def _expand(variables: Mapping[str, Any], where: str) -> list[dict[str, Any]]:
    if not isinstance(variables, Mapping):
        raise UsageError(f"{where}: vars must be a mapping of names to values")
    names = list(variables)
    choices = [v if isinstance(v, list) else [v] for v in variables.values()]
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*choices)]


def _render(template: str, variables: Mapping[str, Any], where: str) -> str:
    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in variables:
            raise UsageError(
                f"{where}: the prompt uses {{{{{name}}}}} but the test has no such var"
            )
        value = variables[name]
        return value if isinstance(value, str) else json.dumps(value)

    return _VAR.sub(sub, template)


def _render_value(obj: Any, variables: Mapping[str, Any]) -> Any:
    """Vars inside assertion values too ({{expected}}), leaving unknown names as written."""
    if isinstance(obj, str):
        return _VAR.sub(lambda m: str(variables.get(m.group(1), m.group(0))), obj)
    if isinstance(obj, Mapping):
        return {k: _render_value(v, variables) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_render_value(v, variables) for v in obj]
    return obj


def _messages(rendered: str, where: str) -> tuple[dict[str, str], ...]:
    """A prompt that is a JSON list of {role, content} is a chat; anything else one user turn."""
    stripped = rendered.strip()
    if stripped.startswith("["):
        try:
            chat = json.loads(stripped)
        except json.JSONDecodeError:
            chat = None
        if (
            isinstance(chat, list)
            and chat
            and all(
                isinstance(m, dict)
                and m.get("role") in _ROLES
                and isinstance(m.get("content"), str)
                for m in chat
            )
        ):
            return tuple({"role": m["role"], "content": m["content"]} for m in chat)
    if not stripped:
        raise UsageError(f"{where}: the prompt renders empty")
    return ({"role": "user", "content": rendered},)


def _assertion(obj: Any, where: str) -> Assertion:
    if isinstance(obj, Mapping) and obj.get("type") not in ASSERTION_TYPES:
        kind = obj.get("type")
        raise UsageError(
            f"{where}: promptfoo assertion type {kind!r} is not supported by edgeprof "
            f"(supported: {', '.join(ASSERTION_TYPES)}); remove it or replace it"
        )
    if isinstance(obj, Mapping) and obj.get("type") == "llm-rubric":
        # The judge is chosen at grading time (--judge); a per-assertion provider is not used.
        obj = {k: v for k, v in obj.items() if k != "provider"}
    return make_assertion(obj, where)
