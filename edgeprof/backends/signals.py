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
    """Scratch space for `LogitSignals.add`, one vocabulary long: the exps, and ones (a sum as
    a BLAS dot product). One set serves any number of answers decoded in turn or side by side
    (a batch's sequences): each `add` uses it and leaves nothing in it."""

    __slots__ = ("exp", "ones")

    def __init__(self, n_vocab: int) -> None:
        import numpy as np

        self.exp = np.empty(n_vocab, dtype=np.float32)
        self.ones = np.ones(n_vocab, dtype=np.float32)


# |logit of the chosen token| up to which exp(logits) is summed unshifted: for a greedy token
# (the largest logit) every exp is then at most e^50, and 49,152 of them stay far below
# float32's 3.4e38; exps that flush to 0 are e^-37 or less of the top one's probability.
RAW_EXP_LIMIT = 50.0


class LogitSignals:
    """One answer's figures from the logits of each step and the token chosen there.

    Per step, over logits x (float32, one per vocabulary entry), with e = exp(x), S = sum(e):
    log Z = log S (log-sum-exp); the chosen token t's logprob = x[t] - log Z; the entropy
    = log Z - sum(e * x) / S (log Z minus the mean logit under the distribution); and on the
    first step only, the top-1 minus top-2 logit (= log-probability) gap.

    It sits in the decode loop, after each `llama_decode` has streamed the weights through the
    caches, where every numpy call pays to fetch its code and data again: so three calls a
    step (exp into a buffer made once, `SignalBuffers`; two float32 BLAS dot products, for S
    and for sum(e * x): numpy's own `sum` took 20 us there, a dot with ones 13), no max pass
    and no allocation. The exps are not shifted by the largest logit: that is safe while the
    chosen token's logit is within +-RAW_EXP_LIMIT, as a greedy token's is in the models seen
    so far (the demo model's are 10 to 30); otherwise, and for logits that are not float32,
    masked (-inf, numpy warns once) or overflow the sum, a step takes the careful path
    (shifted by the maximum, in float64). The entropy is log Z minus the mean logit, two
    float32 sums of similar size: good to about 1e-4 nats. Cost: docs/benchmarks.md. `add`
    must run before the logits it reads are overwritten (llama.cpp and ONNX Runtime reuse one
    buffer per step).
    """

    __slots__ = (
        "broken", "buffers", "entropy_sum", "logprob_min", "logprob_sum", "margin", "tokens",
    )  # fmt: skip

    def __init__(self, buffers: SignalBuffers | int) -> None:
        self.buffers = SignalBuffers(buffers) if isinstance(buffers, int) else buffers
        self.tokens = 0
        # a step whose logits held NaN or +inf (an overflowing fp16 export): no figure of the
        # answer can be trusted then, so it has none
        self.broken = False
        self.logprob_sum = 0.0
        self.logprob_min = math.inf
        self.entropy_sum = 0.0
        self.margin: float | None = None

    def add(self, logits: np.ndarray, token: int) -> None:
        """One step: the logits (one per vocabulary entry) and the token chosen."""
        import numpy as np

        chosen = float(logits.item(token))
        log_z = mean = math.nan
        if logits.dtype == np.float32 and -RAW_EXP_LIMIT <= chosen <= RAW_EXP_LIMIT:
            e = self.buffers.exp
            np.exp(logits, out=e)
            s = float(np.dot(e, self.buffers.ones))
            if 0.0 < s < math.inf:
                log_z, mean = math.log(s), float(np.dot(e, logits)) / s
        if not math.isfinite(mean):  # NaN from 0 * -inf (a masked token), or not taken
            log_z, mean = _careful(logits)
        logprob = chosen - log_z
        self.tokens += 1
        if not (math.isfinite(logprob) and math.isfinite(mean)):
            self.broken = True
            return
        self.logprob_sum += logprob
        self.logprob_min = min(self.logprob_min, logprob)
        self.entropy_sum += max(0.0, log_z - mean)
        if self.tokens == 1:
            self.margin = self._margin(logits)

    def _margin(self, logits: np.ndarray) -> float | None:
        """Top-1 minus top-2 logit: 0 where two tokens tie for the top."""
        if len(logits) < 2:
            return None
        scratch = self.buffers.exp
        scratch[:] = logits
        top = int(scratch.argmax())
        best = float(scratch[top])
        scratch[top] = -math.inf
        margin = best - float(scratch.max())
        return margin if math.isfinite(margin) else None  # one finite logit: no runner-up

    def result(self) -> AnswerSignals | None:
        if not self.tokens or self.broken:
            return None
        return AnswerSignals(
            source="logits",
            tokens=self.tokens,
            logprob_mean=self.logprob_sum / self.tokens,
            logprob_min=self.logprob_min,
            entropy_mean=self.entropy_sum / self.tokens,
            first_margin=self.margin,
        )


def _careful(logits: np.ndarray) -> tuple[float, float]:
    """(log Z, mean logit under the distribution) shifted by the largest logit, in float64:
    for any logits; masked ones (-inf) have probability 0."""
    import numpy as np

    x = np.asarray(logits, dtype=np.float64)
    m = float(x.max())
    if not math.isfinite(m):
        return math.nan, math.nan
    e = np.exp(x - m)
    s = float(e.sum())
    live = e > 0
    return m + math.log(s), m + float(np.dot(e[live], x[live] - m)) / s


class TopLogprobSignals:
    """One answer's figures from an API's log-probabilities (OpenAI's `logprobs.content`):
    per token, the chosen token's log-probability and those of the k most likely tokens
    (`top_logprobs`; they may include the chosen one).

    The chosen token's log-probability is the API's own, over the whole vocabulary. The
    entropy and the first margin see only the k tokens listed: the entropy is that of those k
    renormalized to sum to 1 (not the model's entropy: the rest of the vocabulary is left out,
    so it reads 0 when k = 1 and at most log k), and the margin is the gap between the two
    best of them. A step with no list leaves the answer's entropy unknown (None), a first step
    listing fewer than two its margin.
    """

    __slots__ = (
        "broken", "entropy_steps", "entropy_sum", "logprob_min", "logprob_sum", "margin",
        "tokens",
    )  # fmt: skip

    def __init__(self) -> None:
        self.tokens = 0
        self.broken = False  # a token without a log-probability: see `add_unknown`
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

    def add_unknown(self) -> None:
        """A token the API listed without a usable log-probability (llama-server writes a
        zero-probability token's -inf as null): the answer's figures would be over fewer
        tokens than it has, its margin maybe at the wrong step, so it gets none."""
        self.tokens += 1
        self.broken = True

    def result(self) -> AnswerSignals | None:
        if not self.tokens or self.broken:
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
