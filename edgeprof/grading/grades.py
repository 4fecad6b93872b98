"""Stored expectations and grades as types: what tables `expectations` and `grades` hold."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from edgeprof.grading.assertions import Assertion

RULE = "rule"  # grades.grader of deterministic checks; a judge's grades name its run id
PAIRWISE_INDEX = -1


@dataclass(frozen=True)
class Expectations:
    prompt_id: str
    suite: str
    kind: str | None
    reference: str | None
    threshold: float | None
    assertions: tuple[Assertion, ...]
    sha256: str


@dataclass(frozen=True)
class Grade:
    """One stored grade: what `grades` holds, typed."""

    run_id: str
    request_id: str
    prompt_id: str
    assertion_index: int
    assertion_type: str
    grader: str
    passed: bool
    score: float
    reason: str
    judge_failed: bool = False
    against_request_id: str = ""
    expectations_sha256: str | None = None

    @property
    def id(self) -> str:
        key = f"{self.request_id}|{self.grader}|{self.assertion_index}|{self.against_request_id}"
        return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]

    def row(self, graded_at: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "run_id": self.run_id,
            "request_id": self.request_id,
            "prompt_id": self.prompt_id,
            "assertion_index": self.assertion_index,
            "assertion_type": self.assertion_type,
            "grader": self.grader,
            "passed": int(self.passed and not self.judge_failed),
            "score": self.score,
            "reason": self.reason,
            "judge_failed": int(self.judge_failed),
            "against_request_id": self.against_request_id,
            "expectations_sha256": self.expectations_sha256,
            "graded_at": graded_at,
        }
