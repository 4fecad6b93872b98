"""How sure a model was of its own answer: figures taken from the logits (or an API's
log-probabilities) of the tokens it chose, stored with each request (store m011) so that a
hybrid deployment can be replayed later (`edgeprof route`, docs/hybrid.md).

- `logprob_mean`, `logprob_min`: natural-log probability of each chosen token, mean and
  minimum over the answer. Low means the model found its own words unlikely.
- `entropy_mean`: mean entropy (nats) of the next-token distribution at each step. High means
  the model spread its bet over many tokens.
- `first_margin`: log-probability gap between the best and the second-best first token.
  Small means the answer could have started differently.

`source` says where they came from: `logits` (the full distribution, edgeprof's own decode
loops) or `api-top-logprobs` (an API's log-probabilities of its top-k tokens: the entropy
and margin are then over those k only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

SignalSource = Literal["logits", "api-top-logprobs"]

# The request columns that hold them (store m011), in `AnswerSignals.row` order.
SIGNAL_COLUMNS = (
    "signal_source", "signal_tokens", "logprob_mean", "logprob_min", "entropy_mean",
    "first_margin",
)  # fmt: skip


@dataclass(frozen=True)
class AnswerSignals:
    source: SignalSource
    tokens: int  # chosen tokens the figures are over
    logprob_mean: float
    logprob_min: float
    entropy_mean: float | None = None
    first_margin: float | None = None

    def row(self) -> dict[str, Any]:
        """The request row's signal columns (store m011)."""
        return {
            "signal_source": self.source,
            "signal_tokens": self.tokens,
            "logprob_mean": self.logprob_mean,
            "logprob_min": self.logprob_min,
            "entropy_mean": self.entropy_mean,
            "first_margin": self.first_margin,
        }
