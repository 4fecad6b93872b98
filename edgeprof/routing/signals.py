"""What a policy may look at before it escalates: the device's confidence figures (stored per
request, `backends/signals.py`), each with its direction, and the deterministic checks that
need no expected answer. Pure.

A threshold policy escalates a request whose figure is past the threshold on the *unsure*
side: below it where higher means surer (log-probabilities, the first token's margin), above
it where higher means less sure (entropy).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from typing import Literal

Signal = Literal["logprob_mean", "logprob_min", "entropy_mean", "first_margin"]
SIGNALS: tuple[Signal, ...] = ("logprob_mean", "logprob_min", "entropy_mean", "first_margin")

# "higher": a higher figure means the model was surer (escalate below the threshold);
# "lower": a lower figure means surer (escalate above it).
Surer = Literal["higher", "lower"]
SURER: dict[Signal, Surer] = {
    "logprob_mean": "higher",
    "logprob_min": "higher",
    "entropy_mean": "lower",
    "first_margin": "higher",
}

# Deterministic checks that hold of any good answer whatever the expected one: a product can
# run them on a live answer, so their failure is a fair reason to escalate. A check that
# compares with the expected answer (`number`, `choice`, `icontains`, `equals`, ...) cannot run
# in production: escalating on it would be the oracle, not a policy. `regex`, `starts-with`
# and `not-contains` may be either, depending on the suite: name them to include them.
FORMAT_CHECKS: frozenset[str] = frozenset({"is-json", "contains-json", "max-words", "bullets"})

# At most this many thresholds are tried per signal (quantiles of the values beyond it).
MAX_THRESHOLDS = 200


def escalates(value: float, threshold: float, surer: Surer) -> bool:
    """Whether `value` is past `threshold` on the unsure side."""
    return value < threshold if surer == "higher" else value > threshold


def unsure_sign(surer: Surer) -> str:
    """The comparison that escalates, for a policy's description: `<` or `>`."""
    return "<" if surer == "higher" else ">"


def thresholds(values: Iterable[float], limit: int = MAX_THRESHOLDS) -> tuple[float, ...]:
    """The thresholds worth trying on these values: the midpoints between consecutive distinct
    values (a threshold between two observations generalizes to a value between them), at
    most `limit`, spread over the values' quantiles. Escalating nothing and escalating
    everything are tried apart (families.py)."""
    xs = sorted({v for v in values if math.isfinite(v)})
    mids = [(a + b) / 2 for a, b in itertools.pairwise(xs)]
    if len(mids) <= limit:
        return tuple(mids)
    step = (len(mids) - 1) / (limit - 1)
    return tuple(sorted({mids[round(i * step)] for i in range(limit)}))
