"""What a replay works on: each prompt both runs answered, with the device's answers one by
one and the cloud's combined. Types only; `load.py` reads them from a profile database.

Repetitions: every measured device answer (warm-ups aside) is one replayed request, and a
prompt weighs 1 whatever its repetitions, as in pass rates (`grading/rates.py`): a prompt
answered three times is three requests of weight 1/3. The cloud side of a prompt is the mean
of its measured answers: the share that passed, tokens, cost and end-to-end time.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeprof.routing.signals import Signal


@dataclass(frozen=True)
class DeviceAnswer:
    request_id: str
    passed: bool  # every check of the prompt passed (grading/rates.py answer_outcome)
    failed: bool  # the request itself failed (no answer): always escalated
    check_failed: bool  # a format check (signals.FORMAT_CHECKS, or those named) failed
    input_tokens: int
    output_tokens: int
    e2e_s: float | None
    logprob_mean: float | None = None
    logprob_min: float | None = None
    entropy_mean: float | None = None
    first_margin: float | None = None

    def signal(self, name: Signal) -> float | None:
        value: float | None = getattr(self, name)
        return value


@dataclass(frozen=True)
class CloudSide:
    """A prompt's cloud answers, combined (means over its measured answers)."""

    n: int  # measured answers
    passed: float  # share that passed
    input_tokens: float
    output_tokens: float
    cached_input_tokens: float
    recorded_cost_usd: float | None  # mean cost the run recorded, where it recorded one
    e2e_s: float | None  # None: no answer timed


@dataclass(frozen=True)
class PromptCase:
    prompt_id: str
    name: str  # the suite's name for it, or the id's first 8 characters
    kind: str | None  # the suite's kind ("classify", "extract"), if it names one
    device: tuple[DeviceAnswer, ...]  # at least one
    cloud: CloudSide

    @property
    def device_passed(self) -> float:
        """The share of the device's answers that passed."""
        return sum(a.passed for a in self.device) / len(self.device)

    @property
    def input_tokens(self) -> float:
        """The prompt's length on the device's tokenizer: known before anything is generated."""
        return sum(a.input_tokens for a in self.device) / len(self.device)
