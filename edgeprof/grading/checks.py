"""Grading one answer against one check: pure functions (docs/quality.md).

`llm-rubric` needs a judge (`judges.py`); `grade` refuses it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from edgeprof.errors import UsageError
from edgeprof.grading.assertions import Assertion, GradeResult, regex_flags
from edgeprof.grading.numbers import numbers_in, parse_expected, within
from edgeprof.grading.text import fuzzy_match, norm

__all__ = ["answer_passes", "fuzzy_match", "grade"]


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
    m = re.search(str(a.value), answer, regex_flags(a, "regex"))
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
    text = f" {norm(answer)} "
    named = []
    for label in sorted(labels, key=lambda s: -len(norm(s))):
        key = f" {norm(label)} "
        if key in text:
            named.append(label)
            text = text.replace(key, "  ")
    return named


def _choice(answer: str, a: Assertion) -> GradeResult:
    named = _labels_in(answer, a.options["labels"])
    if len(named) != 1:
        what = "none of the labels" if not named else f"{len(named)} labels ({', '.join(named)})"
        return GradeResult(False, 0.0, f"names {what}; expected exactly {a.value!r}")
    ok = norm(named[0]) == norm(str(a.value))
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
