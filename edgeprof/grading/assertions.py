"""What a good answer must satisfy, and grading one answer against it: pure functions.

An `Assertion` is built (and checked) once with `make_assertion`, from a suite line's
`"assert"` entry or a promptfoo `assert` item; `grade(answer, assertion)` then says whether an
answer passes. The types and their meaning are in docs/quality.md. `llm-rubric` needs a judge
(`judges.py`); `grade` refuses it.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast, get_args

from edgeprof.errors import UsageError
from edgeprof.grading.numbers import numbers_in, parse_expected, within

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
        or not all(isinstance(s, str) and _norm(s) for s in labels)
    ):
        raise UsageError(f'{where}: choice needs "labels": a list of at least two label strings')
    if not isinstance(a.value, str) or _norm(a.value) not in {_norm(s) for s in labels}:
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
        re.compile(str(a.value), _regex_flags(a, where))
    except re.error as e:
        raise UsageError(f"{where}: invalid regex {a.value!r} ({e}); fix the pattern") from e


def _regex_flags(a: Assertion, where: str) -> int:
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


# Grading ------------------------------------------------------------------------------------


def _norm(text: str) -> str:
    """Case-, punctuation- and space-insensitive form: NFKC, casefolded, punctuation and
    symbols as spaces, runs of space as one."""
    text = unicodedata.normalize("NFKC", text).casefold()
    kept = [" " if unicodedata.category(c)[0] in "PSZ" else c for c in text]
    return " ".join("".join(kept).split())


def _result(ok: bool, yes: str, no: str) -> GradeResult:
    return GradeResult(ok, 1.0 if ok else 0.0, yes if ok else no)


def _excerpt(text: str, n: int = 60) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= n else text[: n - 1] + "…")


def _equals(answer: str, a: Assertion) -> GradeResult:
    if isinstance(a.value, (Mapping, list)):
        parsed, _ = _find_json(answer, whole=True)
        return _result(parsed == a.value, "JSON equals the expected value", "JSON differs")
    ok = answer.strip() == str(a.value).strip()
    return _result(ok, "equals the expected answer", f"{_excerpt(answer)} is not {a.value!r}")


def _contains(answer: str, a: Assertion) -> GradeResult:
    fold = a.type.startswith("i") or a.type.startswith("not-i")
    hay = answer.casefold() if fold else answer
    needles = a.value if isinstance(a.value, list) else [a.value]
    found = [n for n in needles if (n.casefold() if fold else n) in hay]
    if a.type.endswith("-all"):
        missing = [n for n in needles if n not in found]
        return _result(not missing, "contains all", f"missing {', '.join(map(repr, missing))}")
    if a.type.startswith("not-"):
        return _result(not found, "does not contain it", f"contains {found[0]!r}" if found else "")
    return _result(bool(found), f"contains {found[0]!r}" if found else "", f"no {a.value!r}")


def _regex(answer: str, a: Assertion) -> GradeResult:
    m = re.search(str(a.value), answer, _regex_flags(a, "regex"))
    if a.type == "not-regex":
        return _result(m is None, "no match", f"matches {m.group(0)!r}" if m else "")
    return _result(m is not None, f"matches {m.group(0)!r}" if m else "", f"no match for {a.value}")


def _starts_with(answer: str, a: Assertion) -> GradeResult:
    ok = answer.lstrip().startswith(str(a.value))
    return _result(ok, f"starts with {a.value!r}", f"{_excerpt(answer, 30)} does not start so")


_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n(.*?)\n?[ \t]*```", re.DOTALL)


def _find_json(answer: str, *, whole: bool) -> tuple[Any, bool]:
    """(value, found): the answer as JSON, or the first ```json fenced block's; with
    whole=False also the first {...} or [...] span inside prose."""
    candidates = [answer.strip(), *(m.group(1).strip() for m in _FENCE.finditer(answer))]
    for text in candidates:
        try:
            return json.loads(text), True
        except json.JSONDecodeError:
            continue
    if not whole:
        decoder = json.JSONDecoder()
        for i, ch in enumerate(answer):
            if ch in "{[":
                try:
                    return decoder.raw_decode(answer, i)[0], True
                except json.JSONDecodeError:
                    continue
    return None, False


def _json(answer: str, a: Assertion) -> GradeResult:
    value, found = _find_json(answer, whole=a.type == "is-json")
    if not found:
        return GradeResult(False, 0.0, f"no JSON in {_excerpt(answer)}")
    schema = a.options.get("schema", a.value)
    if schema is None:
        return GradeResult(True, 1.0, "valid JSON")
    import jsonschema

    error = jsonschema.exceptions.best_match(
        jsonschema.validators.validator_for(schema)(schema).iter_errors(value)
    )
    if error is None:
        return GradeResult(True, 1.0, "valid JSON matching the schema")
    at = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return GradeResult(False, 0.0, f"JSON does not match the schema at {at}: {error.message}")


def _number(answer: str, a: Assertion) -> GradeResult:
    expected = parse_expected(a.value)
    assert expected is not None  # make_assertion checked it
    found = numbers_in(answer)
    if not found:
        return GradeResult(False, 0.0, f"no number in {_excerpt(answer)}")
    got = found[-1] if a.options.get("pick") == "last" else found[0]
    ok = within(
        got,
        expected,
        abs_tol=float(a.options.get("tolerance", 0)),
        rel_tol=float(a.options.get("rel_tolerance", 0)),
    )
    return _result(ok, f"{got:g} ≈ {expected:g}", f"{got:g}, expected {expected:g}")


def _labels_in(answer: str, labels: Sequence[str]) -> list[str]:
    """The labels named in the answer, as whole words; a label inside a longer named one
    ("positive" in "very positive") does not count on its own."""
    text = f" {_norm(answer)} "
    named = []
    for label in sorted(labels, key=lambda s: -len(_norm(s))):
        key = f" {_norm(label)} "
        if key in text:
            named.append(label)
            text = text.replace(key, "  ")
    return named


def _choice(answer: str, a: Assertion) -> GradeResult:
    named = _labels_in(answer, a.options["labels"])
    if len(named) != 1:
        what = "none of the labels" if not named else f"{len(named)} labels ({', '.join(named)})"
        return GradeResult(False, 0.0, f"names {what}; expected exactly {a.value!r}")
    ok = _norm(named[0]) == _norm(str(a.value))
    return _result(ok, f"chose {named[0]!r}", f"chose {named[0]!r}, expected {a.value!r}")


def _max_words(answer: str, a: Assertion) -> GradeResult:
    n = len(answer.split())
    return _result(n <= int(a.value), f"{n} words", f"{n} words, more than {a.value}")


_BULLET = re.compile(r"^\s*(?:[-*•‣◦]|\d{1,3}[.)])\s+\S", re.MULTILINE)


def _bullets(answer: str, a: Assertion) -> GradeResult:
    n = len(_BULLET.findall(answer))
    lo = a.value if a.value is not None else a.options.get("min", 0)
    hi = a.value if a.value is not None else a.options.get("max")
    ok = n >= lo and (hi is None or n <= hi)
    want = f"{lo}" if lo == hi else f"{lo}–{hi if hi is not None else '∞'}"
    return _result(ok, f"{n} bullets", f"{n} bullets, expected {want}")


def fuzzy_match(answer: str, ideal: str) -> bool:
    """OpenAI evals' fuzzy match: after normalizing (case, punctuation, articles, spaces),
    either text contains the other."""
    a, b = _norm_fuzzy(answer), _norm_fuzzy(ideal)
    return bool(a and b) and (a in b or b in a)


def _norm_fuzzy(text: str) -> str:
    return " ".join(w for w in _norm(text).split() if w not in {"a", "an", "the"})


def _fuzzy(answer: str, a: Assertion) -> GradeResult:
    ideals = a.value if isinstance(a.value, list) else [a.value]
    hit = next((i for i in ideals if fuzzy_match(answer, i)), None)
    return _result(hit is not None, f"matches {hit!r}", f"{_excerpt(answer)} matches no ideal")


_GRADERS = {
    "equals": _equals,
    "contains": _contains,
    "icontains": _contains,
    "contains-any": _contains,
    "icontains-any": _contains,
    "contains-all": _contains,
    "icontains-all": _contains,
    "not-contains": _contains,
    "not-icontains": _contains,
    "regex": _regex,
    "not-regex": _regex,
    "starts-with": _starts_with,
    "is-json": _json,
    "contains-json": _json,
    "number": _number,
    "choice": _choice,
    "max-words": _max_words,
    "bullets": _bullets,
    "fuzzy": _fuzzy,
}


def grade(answer: str, assertion: Assertion) -> GradeResult:
    """Grade one answer against one rule. Judged types (llm-rubric) need `judges.py`."""
    grader = _GRADERS.get(assertion.type)
    if grader is None:
        raise UsageError(
            f"{assertion.type} is graded by a judge; pass --judge TARGET to `edgeprof grade`"
        )
    return grader(answer, assertion)


def answer_passes(
    results: Sequence[GradeResult], assertions: Sequence[Assertion], threshold: float | None
) -> bool:
    """Whether a prompt's answer passes all its checks (promptfoo's rule): every assertion
    passes, or with a per-test `threshold`, the weighted mean score reaches it."""
    if threshold is None:
        return all(r.passed for r, a in zip(results, assertions, strict=True) if a.weight > 0)
    total = sum(a.weight for a in assertions)
    if total == 0:
        return True
    weighted = sum(r.score * a.weight for r, a in zip(results, assertions, strict=True))
    return weighted / total >= threshold
