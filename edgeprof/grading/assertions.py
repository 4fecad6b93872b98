"""What a good answer must satisfy: the typed `Assertion`, built and checked once.

`make_assertion` builds one from a suite line's `"assert"` entry or a promptfoo `assert` item
and refuses misuse with one line naming the fix; `checks.grade(answer, assertion)` then says
whether an answer passes. The types and their meaning are in docs/quality.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast, get_args

from edgeprof.errors import UsageError
from edgeprof.grading.numbers import parse_expected
from edgeprof.grading.text import norm

AssertionType = Literal[
    "equals",
    "contains",
    "icontains",
    "contains-any",
    "icontains-any",
    "contains-all",
    "icontains-all",
    "not-contains",
    "not-icontains",
    "regex",
    "not-regex",
    "starts-with",
    "is-json",
    "contains-json",
    "number",
    "choice",
    "max-words",
    "bullets",
    "fuzzy",
    "llm-rubric",
]
ASSERTION_TYPES: tuple[str, ...] = get_args(AssertionType)
JUDGED_TYPES = frozenset({"llm-rubric"})
# Keys an assertion object may carry besides its type and value.
_COMMON_KEYS = {"type", "value", "weight", "threshold", "metric"}
_OPTION_KEYS: dict[str, set[str]] = {
    "number": {"tolerance", "rel_tolerance", "pick"},
    "choice": {"labels"},
    "bullets": {"min", "max"},
    "is-json": {"schema"},
    "contains-json": {"schema"},
    "regex": {"flags"},
    "not-regex": {"flags"},
}


@dataclass(frozen=True)
class Assertion:
    type: AssertionType
    value: Any = None
    weight: float = 1.0
    # For scored types (llm-rubric): the score that passes. None: the type's own rule.
    threshold: float | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def judged(self) -> bool:
        return self.type in JUDGED_TYPES

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        if self.value is not None:
            out["value"] = self.value
        if self.weight != 1.0:
            out["weight"] = self.weight
        if self.threshold is not None:
            out["threshold"] = self.threshold
        out.update(self.options)
        return out


@dataclass(frozen=True)
class GradeResult:
    passed: bool
    score: float  # 0..1
    reason: str


def make_assertion(obj: object, where: str) -> Assertion:
    """One assertion from its JSON/YAML object, checked: a clear UsageError names the fix."""
    if not isinstance(obj, Mapping):
        raise UsageError(f'{where}: an assertion is an object like {{"type": "icontains", ...}}')
    kind = obj.get("type")
    if kind not in ASSERTION_TYPES:
        raise UsageError(
            f"{where}: unknown assertion type {kind!r}; use one of {', '.join(ASSERTION_TYPES)}"
        )
    allowed = _COMMON_KEYS | _OPTION_KEYS.get(str(kind), set())
    extra = sorted(set(obj) - allowed)
    if extra:
        raise UsageError(
            f"{where}: {kind} does not take {', '.join(extra)}; "
            f"it takes {', '.join(sorted(allowed))}"
        )
    weight = obj.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
        raise UsageError(f"{where}: weight must be a number ≥ 0, got {weight!r}")
    threshold = obj.get("threshold")
    if threshold is not None and (
        isinstance(threshold, bool) or not isinstance(threshold, (int, float))
    ):
        raise UsageError(f"{where}: threshold must be a number, got {threshold!r}")
    options = {k: v for k, v in obj.items() if k not in _COMMON_KEYS}
    a = Assertion(
        cast(AssertionType, kind),
        obj.get("value"),
        float(weight),
        None if threshold is None else float(threshold),
        options,
    )
    _check(a, where)
    return a


def make_assertions(raw: object, where: str) -> tuple[Assertion, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise UsageError(f'{where}: "assert" must be a list of assertion objects')
    return tuple(make_assertion(item, f"{where}, assertion {i}") for i, item in enumerate(raw))


def _need_text(a: Assertion, where: str) -> None:
    if not isinstance(a.value, str) or not a.value:
        raise UsageError(f'{where}: {a.type} needs a non-empty string "value"')


def _need_texts(a: Assertion, where: str) -> None:
    v = a.value
    if not isinstance(v, list) or not v or not all(isinstance(s, str) and s for s in v):
        raise UsageError(f'{where}: {a.type} needs "value": a non-empty list of strings')


def _check_number(a: Assertion, where: str) -> None:
    if parse_expected(a.value) is None:
        raise UsageError(f'{where}: number needs a numeric "value" (e.g. 42 or "1,234.5 km")')
    for key in ("tolerance", "rel_tolerance"):
        tol = a.options.get(key, 0)
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or tol < 0:
            raise UsageError(f"{where}: number's {key} must be a number ≥ 0, got {tol!r}")
    if a.options.get("pick", "first") not in ("first", "last"):
        raise UsageError(f'{where}: number\'s "pick" is "first" or "last"')


def _check_choice(a: Assertion, where: str) -> None:
    labels = a.options.get("labels")
    if (
        not isinstance(labels, list)
        or len(labels) < 2
        or not all(isinstance(s, str) and norm(s) for s in labels)
    ):
        raise UsageError(f'{where}: choice needs "labels": a list of at least two label strings')
    if not isinstance(a.value, str) or norm(a.value) not in {norm(s) for s in labels}:
        raise UsageError(f'{where}: choice\'s "value" must be one of its labels {labels}')


def _check_count(a: Assertion, where: str) -> None:
    if a.type == "max-words" or a.value is not None:
        v = a.value
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise UsageError(f'{where}: {a.type} needs "value": a whole number ≥ 0')
    if a.type == "bullets" and a.value is None and not ({"min", "max"} & set(a.options)):
        raise UsageError(f'{where}: bullets needs "value" (exact count) or "min"/"max"')


def _check_regex(a: Assertion, where: str) -> None:
    _need_text(a, where)
    try:
        re.compile(str(a.value), regex_flags(a, where))
    except re.error as e:
        raise UsageError(f"{where}: invalid regex {a.value!r} ({e}); fix the pattern") from e


def regex_flags(a: Assertion, where: str) -> int:
    flags = 0
    for ch in str(a.options.get("flags", "")):
        if ch not in "ims":
            raise UsageError(f'{where}: regex "flags" may hold i, m and s, not {ch!r}')
        flags |= {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL}[ch]
    return flags


def _check_json(a: Assertion, where: str) -> None:
    schema = a.options.get("schema", a.value)
    if schema is None:
        return
    if not isinstance(schema, Mapping):
        raise UsageError(f"{where}: {a.type}'s schema must be a JSON Schema object")
    import jsonschema  # lazily: only suites with schemas need it

    try:
        jsonschema.validators.validator_for(schema).check_schema(dict(schema))
    except jsonschema.SchemaError as e:
        raise UsageError(f"{where}: invalid JSON Schema ({e.message}); fix the schema") from e


def _check_rubric(a: Assertion, where: str) -> None:
    _need_text(a, where)
    if a.threshold is not None and not 0 <= a.threshold <= 1:
        raise UsageError(f"{where}: llm-rubric's threshold is a score from 0 to 1")


_CHECKS = {
    "number": _check_number,
    "choice": _check_choice,
    "max-words": _check_count,
    "bullets": _check_count,
    "regex": _check_regex,
    "not-regex": _check_regex,
    "is-json": _check_json,
    "contains-json": _check_json,
    "llm-rubric": _check_rubric,
    "contains-any": _need_texts,
    "icontains-any": _need_texts,
    "contains-all": _need_texts,
    "icontains-all": _need_texts,
}


def _check(a: Assertion, where: str) -> None:
    check = _CHECKS.get(a.type)
    if check is not None:
        check(a, where)
    elif a.type == "equals":
        if a.value is None:
            raise UsageError(f'{where}: equals needs a "value"')
    elif a.type == "fuzzy" and isinstance(a.value, list):
        _need_texts(a, where)
    else:
        _need_text(a, where)
