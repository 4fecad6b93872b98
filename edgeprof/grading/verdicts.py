"""What a judge is asked and how its reply is read: pure functions.

The judge answers with a JSON verdict held to a schema (`VERDICT_SCHEMA`, `PAIR_SCHEMA`); the
backend constrains its output where it can (`Request.response_schema`). A reply that does not
parse, or parses but breaks the schema, is a *judge failure*: `parse_verdict` returns None and
the grade is stored as failed, never as a pass.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "pass": {"type": "boolean"},
        "score": {"type": "number", "minimum": 0, "maximum": 1},
        # bounded, so a grammar-held small model cannot ramble past max_tokens mid-string
        "reason": {"type": "string", "maxLength": 200},
    },
    "required": ["pass", "score", "reason"],
    "additionalProperties": False,
}
PAIR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "winner": {"type": "string", "enum": ["A", "B", "tie"]},
        "reason": {"type": "string", "maxLength": 200},
    },
    "required": ["winner", "reason"],
    "additionalProperties": False,
}

RUBRIC_SYSTEM = (
    "You grade an assistant's answer against a rubric. Reply with JSON only: "
    '{"pass": true or false, "score": a number from 0 to 1, "reason": "one short sentence"}.'
)
PAIR_SYSTEM = (
    "You compare two assistants' answers to the same request and pick the better one. "
    'Reply with JSON only: {"winner": "A" or "B" or "tie", "reason": "one short sentence"}.'
)

Outcome = Literal["win", "tie", "loss"]


@dataclass(frozen=True)
class Verdict:
    passed: bool
    score: float
    reason: str


def _json_of(reply: str) -> Any:
    text = reply.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*\n?(.*?)\n?```", text, re.DOTALL)
    return json.loads(fenced.group(1) if fenced else text)


def _valid(obj: Any, schema: Mapping[str, Any]) -> bool:
    import jsonschema

    return jsonschema.Draft202012Validator(dict(schema)).is_valid(obj)


def parse_verdict(reply: str) -> Verdict | None:
    """The verdict in a judge's reply, or None when it is not one (a judge failure)."""
    try:
        obj = _json_of(reply)
    except json.JSONDecodeError:
        return None
    if not _valid(obj, VERDICT_SCHEMA):
        return None
    return Verdict(bool(obj["pass"]), float(obj["score"]), str(obj["reason"]))


def parse_pair(reply: str) -> str | None:
    """ "A", "B" or "tie" from a pairwise judge's reply; None when it is not a verdict."""
    try:
        obj = _json_of(reply)
    except json.JSONDecodeError:
        return None
    return str(obj["winner"]) if _valid(obj, PAIR_SCHEMA) else None


def _question(messages: Sequence[Mapping[str, str]]) -> str:
    return "\n".join(f"[{m['role']}] {m['content']}" for m in messages)


def rubric_messages(
    messages: Sequence[Mapping[str, str]], answer: str, rubric: str, reference: str | None
) -> tuple[dict[str, str], ...]:
    ref = (
        f"\n\nA reference answer (for comparison, not to be copied):\n{reference}"
        if reference
        else ""
    )
    user = (
        f"The request:\n{_question(messages)}\n\nThe answer to grade:\n{answer}\n\n"
        f"The rubric (pass only if the answer meets it):\n{rubric}{ref}"
    )
    return ({"role": "system", "content": RUBRIC_SYSTEM}, {"role": "user", "content": user})


def pair_messages(
    messages: Sequence[Mapping[str, str]], first: str, second: str
) -> tuple[dict[str, str], ...]:
    user = f"The request:\n{_question(messages)}\n\nAnswer A:\n{first}\n\nAnswer B:\n{second}"
    return ({"role": "system", "content": PAIR_SYSTEM}, {"role": "user", "content": user})


def pair_outcome(device_first: str | None, device_second: str | None) -> Outcome | None:
    """The device answer's outcome from two judgements: with it shown as A, then as B. A
    verdict that flips with the order (or a tie either way) is a tie; None if either failed."""
    if device_first is None or device_second is None:
        return None
    as_a = {"A": "win", "B": "loss", "tie": "tie"}[device_first]
    as_b = {"B": "win", "A": "loss", "tie": "tie"}[device_second]
    return as_a if as_a == as_b else "tie"  # type: ignore[return-value]


OUTCOME_SCORE: dict[str, float] = {"win": 1.0, "tie": 0.5, "loss": 0.0}


def cohen_kappa(a: Sequence[bool], b: Sequence[bool]) -> float | None:
    """Cohen's κ of two judges' pass/fail verdicts on the same items: (p_o − p_e) / (1 − p_e).
    None when there are no items, or chance agreement is already 1 (both constant alike)."""
    n = len(a)
    if n == 0 or n != len(b):
        return None
    p_o = sum(x == y for x, y in zip(a, b, strict=True)) / n
    pa, pb = sum(a) / n, sum(b) / n
    p_e = pa * pb + (1 - pa) * (1 - pb)
    if p_e >= 1.0:
        return None
    return (p_o - p_e) / (1 - p_e)


def agreement(a: Sequence[bool], b: Sequence[bool]) -> tuple[float | None, float | None]:
    """(share of identical verdicts, Cohen's κ)."""
    if not a or len(a) != len(b):
        return None, None
    return sum(x == y for x, y in zip(a, b, strict=True)) / len(a), cohen_kappa(a, b)
