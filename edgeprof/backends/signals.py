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

All four are over the answer's tokens, the ones counted in `output_tokens`: the step that
chose end-of-generation is not one (with `ignore_eos` it is). An answer of no tokens has no
figures (None). Two accumulators build them, one step at a time: `LogitSignals` from a decode
loop's logits, `TopLogprobSignals` from an API's per-token log-probabilities.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import numpy as np

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


class SignalBuffers:
    """Scratch space for `LogitSignals.add`, one vocabulary long: the logits minus their
    maximum, their exponentials, and ones (for a sum as a dot product). One set serves any
    number of answers decoded in turn or side by side (a batch's sequences): each `add` uses
    it and leaves nothing in it."""

    __slots__ = ("exp", "ones", "shifted")

    def __init__(self, n_vocab: int) -> None:
        import numpy as np

        self.shifted = np.empty(n_vocab, dtype=np.float32)
        self.exp = np.empty(n_vocab, dtype=np.float32)
        self.ones = np.ones(n_vocab, dtype=np.float32)


class LogitSignals:
    """One answer's figures from the logits of each step and the token chosen there.

    Per step, over a vocabulary of n (logits x, float32):
    m = max(x); d = x - m; e = exp(d); s = sum(e)  (log-sum-exp: log Z = m + log s)
    logprob of the chosen token t = d[t] - log s
    entropy = log s - sum(e * d) / s  (every term of the sum is <= 0: no cancellation)
    and on the first step only, top-1 minus top-2 logit (= log-probability) gap.

    Five passes over the vocabulary (max, subtract, exp, two dot products), into buffers made
    once (`SignalBuffers`), and nothing allocated per step: about 30 us for the demo model's
    49,152 logits (docs/benchmarks.md). The sums are float32 BLAS dot products (numpy's
    `sum` of float32 is three times slower); logits of -inf (masked tokens) count as
    probability 0. `add` must be called before the logits it reads are overwritten (llama.cpp
    and ONNX Runtime reuse one buffer per step).
    """

    __slots__ = ("buffers", "entropy_sum", "logprob_min", "logprob_sum", "margin", "tokens")

    def __init__(self, buffers: SignalBuffers | int) -> None:
        self.buffers = SignalBuffers(buffers) if isinstance(buffers, int) else buffers
        self.tokens = 0
        self.logprob_sum = 0.0
        self.logprob_min = math.inf
        self.entropy_sum = 0.0
        self.margin: float | None = None

    def add(self, logits: np.ndarray, token: int) -> None:
        """One step: `logits` (float32, one per vocabulary entry) and the token chosen."""
        import numpy as np

        b = self.buffers
        d, e = b.shifted, b.exp
        np.subtract(logits, logits.max(), out=d)
        np.exp(d, out=e)
        with np.errstate(invalid="ignore"):  # 0 * -inf below: said once, not warned
            s = float(np.dot(e, b.ones))
            t = float(np.dot(e, d))
        if t != t:  # NaN: 0 * -inf from a masked token, which contributes nothing
            t = float(np.dot(e, np.where(e > 0, d, 0)))
        log_s = math.log(s)
        logprob = float(d[token]) - log_s
        self.tokens += 1
        self.logprob_sum += logprob
        self.logprob_min = min(self.logprob_min, logprob)
        self.entropy_sum += max(0.0, log_s - t / s)
        if self.tokens == 1:
            self.margin = _logit_margin(d)

    def result(self) -> AnswerSignals | None:
        if not self.tokens:
            return None
        return AnswerSignals(
            source="logits",
            tokens=self.tokens,
            logprob_mean=self.logprob_sum / self.tokens,
            logprob_min=self.logprob_min,
            entropy_mean=self.entropy_sum / self.tokens,
            first_margin=self.margin,
        )


def _logit_margin(shifted: np.ndarray) -> float | None:
    """Top-1 minus top-2 of `shifted` (the logits minus their maximum, which it overwrites):
    0 where two tokens tie for the top."""
    if len(shifted) < 2:
        return None
    top = int(shifted.argmax())
    best = float(shifted[top])
    shifted[top] = -math.inf
    return best - float(shifted.max())


class TopLogprobSignals:
    """One answer's figures from an API's log-probabilities (OpenAI's `logprobs.content`):
    per token, the chosen token's log-probability and those of the k most likely tokens
    (`top_logprobs`; they may include the chosen one).

    The chosen token's log-probability is the API's own, over the whole vocabulary. The
    entropy and the first margin can see only the k tokens listed: the entropy is that of
    those k renormalized to sum to 1 (a lower bound's cousin, not the model's entropy: it
    reads 0 when k = 1 and at most log k), and the margin is the gap between the two best of
    them. A step that lists fewer than two leaves the entropy (one step without a list: for
    the whole answer) or the margin unknown.
    """

    __slots__ = (
        "entropy_steps", "entropy_sum", "logprob_min", "logprob_sum", "margin", "tokens",
    )  # fmt: skip

    def __init__(self) -> None:
        self.tokens = 0
        self.logprob_sum = 0.0
        self.logprob_min = math.inf
        self.entropy_sum = 0.0
        self.entropy_steps = 0
        self.margin: float | None = None

    def add(self, logprob: float, top: Iterable[float] = ()) -> None:
        """One token: its log-probability and those of the top-k tokens at its step."""
        tops = sorted((float(x) for x in top), reverse=True)
        self.tokens += 1
        self.logprob_sum += logprob
        self.logprob_min = min(self.logprob_min, logprob)
        if tops:
            self.entropy_sum += renormalized_entropy(tops)
            self.entropy_steps += 1
        if self.tokens == 1 and len(tops) >= 2:
            self.margin = tops[0] - tops[1]

    def result(self) -> AnswerSignals | None:
        if not self.tokens:
            return None
        return AnswerSignals(
            source="api-top-logprobs",
            tokens=self.tokens,
            logprob_mean=self.logprob_sum / self.tokens,
            logprob_min=self.logprob_min,
            entropy_mean=(
                self.entropy_sum / self.tokens if self.entropy_steps == self.tokens else None
            ),
            first_margin=self.margin,
        )


def renormalized_entropy(logprobs: list[float]) -> float:
    """Entropy (nats) of the distribution the log-probabilities `logprobs` (highest first)
    give once renormalized to sum to 1."""
    m = logprobs[0]
    weights = [math.exp(x - m) for x in logprobs]
    s = sum(weights)
    spread = sum(w * (x - m) for w, x in zip(weights, logprobs, strict=True))
    return max(0.0, math.log(s) - spread / s)
