"""Answers that look degenerate: a model fed a prompt format it never saw.

A base model wrapped in a chat template, or an instruction-tuned one given the wrong template,
still decodes at full speed, so every figure looks healthy while the answers are noise:
`<|im_start|>assistant <|im_start|>assistant …` until max tokens. Two signs, each on one
answer: it stopped at max tokens while its tail repeats one short pattern, or it contains
chat markup (the special tokens of the common templates). A run is flagged when most of its
answers show one. Pure functions over the answers as the `requests` table stores them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# The turn markers of the templates edgeprof formats prompts with (ChatML, Gemma, Llama 3,
# Phi-3, Mistral, Zephyr, Phi-4); a healthy answer almost never writes one.
SPECIAL_TOKENS = (
    "<|im_start|>", "<|im_end|>", "<|im_sep|>", "<start_of_turn>", "<end_of_turn>",
    "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|begin_of_text|>",
    "[INST]", "[/INST]", "[SYSTEM_PROMPT]", "<|user|>", "<|assistant|>", "<|system|>",
    "<|end|>", "<|endoftext|>",
)  # fmt: skip
MAX_PERIOD_CHARS = (
    200  # a "short pattern": a few tokens, up to a sentence or two (an echoed prompt)
)
MIN_REPEATS = 3  # the pattern fills at least this many periods in a row
MIN_LOOP_SHARE = 0.5  # ... and at least this share of the answer


@dataclass(frozen=True)
class Answer:
    text: str
    finish_reason: str | None  # "length": stopped at max tokens


@dataclass(frozen=True)
class AnswerCheck:
    """What is wrong with one answer; `loop` is the repeated pattern, when there is one."""

    loop: str | None
    special: str | None  # the chat marker that comes first in it

    @property
    def degenerate(self) -> bool:
        return self.loop is not None or self.special is not None


@dataclass(frozen=True)
class Degeneracy:
    """A run whose answers look degenerate: how many and the commonest sign."""

    n_degenerate: int
    n_answers: int
    n_looping: int  # hit max tokens repeating a short pattern
    n_special: int  # contain chat markup
    pattern: str | None  # the commonest repeated pattern (or chat marker)

    def message(self, raw: bool = False) -> str:
        """The one line `run`, `report` and `decide` show; `raw`: the run had no template, so
        the format is not to blame."""
        if self.n_looping >= self.n_special:
            what = f"{self.n_looping} of {self.n_answers} hit max tokens repeating"
        else:
            what = f"{self.n_special} of {self.n_answers} contain the chat marker"
        hint = (
            "with --raw no template is to blame: a base model's greedy answers loop once it "
            "has no more to say (the speed figures stand; the answers are no feature's)"
            if raw
            else "the prompt format may be wrong: see --chat-template (or --raw for a base model)"
        )
        return f"answers look degenerate: {what} `{_show(self.pattern or '')}`; {hint}"


def repeated_pattern(text: str) -> str | None:
    """The short pattern the end of `text` repeats (MIN_REPEATS times or more, over at least
    MIN_LOOP_SHARE of the text), or None. The shortest period wins: "ab ab ab " is "ab "."""
    n = len(text)
    for period in range(1, min(MAX_PERIOD_CHARS, n // MIN_REPEATS) + 1):
        run = period  # length of the periodic tail: text[i] == text[i - period] from the end
        while run < n and text[n - 1 - run] == text[n - 1 - run + period]:
            run += 1
        if run >= MIN_REPEATS * period and run >= MIN_LOOP_SHARE * n:
            tail = text[n - run :]
            # the pattern as it first appears, whitespace at its edges trimmed for display
            return tail[:period].strip() or tail[:period]
    return None


def check_answer(answer: Answer, special_tokens: Sequence[str] = SPECIAL_TOKENS) -> AnswerCheck:
    found = [(answer.text.find(t), t) for t in special_tokens if t in answer.text]
    special = min(found)[1] if found else None  # the one that comes first
    loop = repeated_pattern(answer.text) if answer.finish_reason == "length" else None
    return AnswerCheck(loop=loop, special=special)


def check_answers(
    answers: Iterable[Answer], special_tokens: Sequence[str] = SPECIAL_TOKENS
) -> Degeneracy | None:
    """A `Degeneracy` when more than half of the answers look degenerate; None otherwise
    (and for no answers)."""
    checks = [check_answer(a, special_tokens) for a in answers]
    bad = [c for c in checks if c.degenerate]
    if not checks or 2 * len(bad) <= len(checks):
        return None
    loops = Counter(c.loop for c in bad if c.loop is not None)
    markers = Counter(c.special for c in bad if c.special is not None)
    n_looping, n_special = sum(loops.values()), sum(markers.values())
    common = (loops if n_looping >= n_special else markers).most_common(1)
    return Degeneracy(
        n_degenerate=len(bad),
        n_answers=len(checks),
        n_looping=n_looping,
        n_special=n_special,
        pattern=common[0][0] if common else None,
    )


def run_answers(rows: Iterable[Mapping[str, Any]]) -> list[Answer]:
    """A run's measured answers from its `requests` rows (warm-up and failed ones left out)."""
    return [
        Answer(str(r.get("output_text") or ""), r.get("finish_reason"))
        for r in rows
        if not r.get("warmup") and not r.get("error")
    ]


def _show(pattern: str, limit: int = 40) -> str:
    """A pattern on one line: newlines as \\n, long ones cut."""
    one_line = pattern.replace("\n", "\\n")
    return one_line if len(one_line) <= limit else one_line[: limit - 1] + "…"
