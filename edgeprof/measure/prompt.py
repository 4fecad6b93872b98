"""A prompt of a suite: its messages (whose hash is its id) and what a good answer must satisfy.

The id covers the messages only, so the same prompts with new expectations keep their ids:
stored answers are re-graded, not generated again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from edgeprof.errors import UsageError
from edgeprof.grading.assertions import Assertion


@dataclass(frozen=True)
class Prompt:
    id: str
    suite: str
    name: str
    messages: tuple[dict[str, str], ...]
    assertions: tuple[Assertion, ...] = ()
    reference: str | None = None  # a good answer, for judges and people reading the report
    kind: str | None = None  # what the prompt exercises ("classify", "extract"): per-kind rates
    threshold: float | None = None  # promptfoo's per-test threshold on the weighted score
    # A JSON Schema the answer must follow, asked of the backend (Request.response_schema):
    # structured-output features, and a judge's verdict.
    response_schema: Mapping[str, Any] | None = None

    @property
    def text(self) -> str:
        return json.dumps(list(self.messages), ensure_ascii=False, sort_keys=True)

    @property
    def has_expectations(self) -> bool:
        return bool(self.assertions)

    def row(self) -> dict[str, Any]:
        return {"id": self.id, "suite": self.suite, "name": self.name, "text": self.text}

    def expectations_json(self) -> str:
        """The expectations as stored beside the prompt (table `expectations`)."""
        body = {
            "assert": [a.to_json() for a in self.assertions],
            "reference": self.reference,
            "threshold": self.threshold,
        }
        return json.dumps(body, ensure_ascii=False, sort_keys=True)

    def expectations_sha256(self) -> str:
        return hashlib.sha256(self.expectations_json().encode("utf-8")).hexdigest()


def prompt_id(messages: tuple[dict[str, str], ...]) -> str:
    canonical = json.dumps(list(messages), ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def jsonl_objects(text: str, source: str, comments: bool = True) -> Iterator[tuple[int, str, Any]]:
    """Each line of a JSONL file as (line number, where, parsed value), blank lines (and, with
    `comments`, lines starting with //) skipped; a line that is not JSON is a one-line error
    naming it."""
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or (comments and line.lstrip().startswith("//")):
            continue
        where = f"{source}, line {lineno}"
        try:
            yield lineno, where, json.loads(line)
        except json.JSONDecodeError as e:
            raise UsageError(f"{where}: not valid JSON ({e.msg}); one JSON object per line") from e
