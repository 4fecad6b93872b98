"""Text normalization for checks: case, punctuation and spacing folded (pure)."""

from __future__ import annotations

import unicodedata


def norm(text: str) -> str:
    """Case-, punctuation- and space-insensitive form: NFKC, casefolded, punctuation and
    symbols as spaces, runs of space as one."""
    text = unicodedata.normalize("NFKC", text).casefold()
    kept = [" " if unicodedata.category(c)[0] in "PSZ" else c for c in text]
    return " ".join("".join(kept).split())


def fuzzy_match(answer: str, ideal: str) -> bool:
    """OpenAI evals' fuzzy match: after normalizing (case, punctuation, articles, spaces),
    either text contains the other."""
    a, b = norm_fuzzy(answer), norm_fuzzy(ideal)
    return bool(a and b) and (a in b or b in a)


def norm_fuzzy(text: str) -> str:
    return " ".join(w for w in norm(text).split() if w not in {"a", "an", "the"})
