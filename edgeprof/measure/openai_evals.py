"""OpenAI evals' JSONL samples as a suite, without conversion.

A line is `{"input": [{"role": ..., "content": ...}, ...], "ideal": "answer" | ["a", "b"]}`
(`input` may also be a plain string). evals grades a sample by matching the sampled answer
against `ideal`; edgeprof offers its three basic ways as a mode:

- `equals`: the stripped answer is one of the ideals;
- `includes`: the answer contains one of the ideals (case-sensitive);
- `fuzzy`: evals' fuzzy match (lowercased, punctuation and articles removed, either text
  contains the other).
"""

from __future__ import annotations

import re
from typing import Any

from edgeprof.errors import UsageError
from edgeprof.grading.assertions import Assertion
from edgeprof.measure.prompt import Prompt, jsonl_objects, prompt_id

ROLES = {"system", "user", "assistant"}


def parse_evals(text: str, *, suite: str, source: str, mode: str) -> list[Prompt]:
    prompts = []
    for lineno, where, obj in jsonl_objects(text, source, comments=False):
        if not isinstance(obj, dict) or "input" not in obj or "ideal" not in obj:
            raise UsageError(f'{where}: an OpenAI evals sample needs "input" and "ideal"')
        messages = _messages(obj["input"], where)
        ideals = _ideals(obj["ideal"], where)
        prompts.append(
            Prompt(
                prompt_id(messages),
                suite,
                f"{suite}-{lineno}",
                messages,
                assertions=(_assertion(ideals, mode),),
                reference=ideals[0],
            )
        )
    if not prompts:
        raise UsageError(f"{source} holds no samples; add lines with input and ideal")
    return prompts


def _messages(raw: Any, where: str) -> tuple[dict[str, str], ...]:
    if isinstance(raw, str) and raw.strip():
        return ({"role": "user", "content": raw},)
    if not isinstance(raw, list) or not raw:
        raise UsageError(f'{where}: "input" must be a string or a list of {{role, content}}')
    out = []
    for m in raw:
        if (
            not isinstance(m, dict)
            or m.get("role") not in ROLES
            or not isinstance(m.get("content"), str)
        ):
            raise UsageError(f"{where}: each input message needs a role and a string content")
        out.append({"role": m["role"], "content": m["content"]})
    return tuple(out)


def _ideals(raw: Any, where: str) -> list[str]:
    ideals = [raw] if isinstance(raw, (str, int, float)) and not isinstance(raw, bool) else raw
    if not isinstance(ideals, list) or not ideals:
        raise UsageError(f'{where}: "ideal" must be a string or a list of strings')
    out = [str(i) for i in ideals if isinstance(i, (str, int, float)) and str(i).strip()]
    if len(out) != len(ideals):
        raise UsageError(f'{where}: "ideal" must be a string or a list of strings')
    return out


def _assertion(ideals: list[str], mode: str) -> Assertion:
    if mode == "fuzzy":
        return Assertion("fuzzy", ideals if len(ideals) > 1 else ideals[0])
    if mode == "includes":
        if len(ideals) == 1:
            return Assertion("contains", ideals[0])
        return Assertion("contains-any", ideals)
    if len(ideals) == 1:
        return Assertion("equals", ideals[0])
    # Any one of several exact answers, surrounding space aside.
    pattern = r"\A\s*(?:" + "|".join(re.escape(i.strip()) for i in ideals) + r")\s*\Z"
    return Assertion("regex", pattern)
