"""Degenerate answers (edgeprof.analysis.degenerate) on hand-made answers: the loop a base
model wrapped in ChatML writes, a healthy set, and the borderline cases either side."""

from __future__ import annotations

from typing import Any

from edgeprof.analysis.degenerate import (
    Answer,
    check_answer,
    check_answers,
    repeated_pattern,
    run_answers,
)

CHATML_LOOP = "<|im_start|>assistant " * 40  # what the base Gemma 3 wrote until max tokens
HEALTHY = [
    "The capital of Australia is Canberra.",
    "A marathon is 42.195 km; at 10 km/h it takes about 4 hours 13 minutes.",
    "Hi Sam, Friday works for me, but only after 3 pm. Would 3:30 suit you? Thanks!",
    "The city replaced its sodium streetlights with dimming LEDs in 2019 and cut the "
    "lighting bill of the harbour quarter by 61%, beyond the vendor's promise.",
    "def moving_sum(xs, k):\n    return [sum(xs[i:i + k]) for i in range(len(xs) - k + 1)]",
    "SELECT customer_id, SUM(total_usd) FROM orders GROUP BY customer_id ORDER BY 2 DESC;",
]
# a long answer cut at max tokens is not degenerate: it does not repeat itself
LONG_CUT = (
    "Aldermoor's streetlight programme began in 2019. The harbour quarter went first, where "
    "traffic is light at night and residents had long complained of glare. Savings reached "
    "sixty-one percent, maintenance visits fell, and the council now plans to extend the"
)


def test_the_chatml_loop_is_flagged_with_its_pattern() -> None:
    answers = [Answer(CHATML_LOOP[: 300 + i], "length") for i in range(12)]
    d = check_answers(answers)
    assert d is not None
    assert (d.n_degenerate, d.n_answers, d.n_looping) == (12, 12, 12)
    assert d.pattern == "<|im_start|>assistant"
    assert d.message() == (
        "answers look degenerate: 12 of 12 hit max tokens repeating `<|im_start|>assistant`; "
        "the prompt format may be wrong: see --chat-template (or --raw for a base model)"
    )
    # a run given no template: the format is not to blame, and the line says so
    assert "with --raw no template is to blame" in d.message(raw=True)


def test_a_healthy_set_is_not_flagged() -> None:
    answers = [Answer(t, "stop") for t in HEALTHY] + [Answer(LONG_CUT, "length")]
    assert check_answers(answers) is None
    assert all(not check_answer(a).degenerate for a in answers)


def test_borderline_half_is_not_most_one_more_is() -> None:
    loop = Answer("What is the capital of Australia? quân\n" * 5, "length")
    healthy = [Answer(t, "stop") for t in HEALTHY]
    assert check_answers([loop] * 6 + healthy) is None  # 6 of 12: not most
    d = check_answers([loop] * 7 + healthy[:5])
    assert d is not None and (d.n_degenerate, d.n_answers) == (7, 12)
    # an echoed prompt is a pattern too, longer than a token or two
    assert d.pattern == "What is the capital of Australia? quân"


def test_a_loop_counts_only_at_max_tokens() -> None:
    """A model may end a list with repetition and stop by itself; only an answer the token
    limit cut short while looping is the sign."""
    text = "ha " * 30
    assert check_answer(Answer(text, "stop")).loop is None
    assert check_answer(Answer(text, "length")).loop == "ha"


def test_chat_markup_in_an_answer_is_flagged_even_when_it_stops() -> None:
    answers = [Answer("Canberra.<end_of_turn>\n<start_of_turn>user\nAnd", "stop")] * 3
    d = check_answers([*answers, Answer(HEALTHY[0], "stop")])
    assert d is not None and (d.n_special, d.n_looping) == (3, 0)
    assert d.pattern == "<end_of_turn>"
    assert "3 of 4 contain the chat marker `<end_of_turn>`" in d.message()


def test_repeated_pattern_needs_three_repeats_over_half_the_text() -> None:
    assert repeated_pattern("abcabcabc") == "abc"
    assert repeated_pattern("abcabc") is None  # two repeats: could be a refrain
    assert repeated_pattern("x" * 10 + "0" * 200) == "0"  # "The answer is 1000000…"
    assert repeated_pattern(LONG_CUT + "ok ok ok") is None  # a short tail is not a loop
    assert repeated_pattern("") is None
    assert repeated_pattern("\n\n\n\n") == "\n"  # whitespace alone stays visible


def test_run_answers_leave_out_warm_up_and_failed_requests() -> None:
    rows: list[dict[str, Any]] = [
        {"output_text": "a", "finish_reason": "stop", "warmup": 1, "error": None},
        {"output_text": "b", "finish_reason": "length", "warmup": 0, "error": None},
        {"output_text": None, "finish_reason": "error", "warmup": 0, "error": "broken"},
    ]
    assert run_answers(rows) == [Answer("b", "length")]
    assert check_answers([]) is None
