"""How sure a model was of its answer (backends/signals.py): the accumulators on hand-computed
steps, against a plain float64 computation on random logits, and as hypothesis properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edgeprof.backends.signals import (
    SIGNAL_COLUMNS,
    AnswerSignals,
    LogitSignals,
    SignalBuffers,
    TopLogprobSignals,
    renormalized_entropy,
)

LN2 = math.log(2)


def _logits(values: list[float]) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def test_two_steps_by_hand() -> None:
    """Step 1: probabilities 1/8, 2/8, 1/8, 4/8 (logits their logs, shifted by 30: only
    differences count), the 4/8 token chosen: logprob -ln 2, entropy
    2·(1/8)·ln 8 + (1/4)·ln 4 + (1/2)·ln 2 = 1.75 ln 2, margin ln 4 - ln 2 = ln 2.
    Step 2: uniform over 4, token 0: logprob -2 ln 2, entropy 2 ln 2."""
    acc = LogitSignals(4)
    acc.add(_logits([30 + math.log(p) for p in (1, 2, 1, 4)]), 3)
    acc.add(_logits([7, 7, 7, 7]), 0)
    got = acc.result()
    assert got is not None
    assert (got.source, got.tokens) == ("logits", 2)
    assert got.logprob_mean == pytest.approx(-1.5 * LN2, abs=1e-6)
    assert got.logprob_min == pytest.approx(-2 * LN2, abs=1e-6)
    assert got.entropy_mean == pytest.approx((1.75 + 2) / 2 * LN2, abs=1e-6)
    assert got.first_margin == pytest.approx(LN2, abs=1e-5)  # the first step's, only


def test_the_chosen_token_need_not_be_the_best() -> None:
    acc = LogitSignals(3)
    acc.add(_logits([0.0, math.log(3), 0.0]), 0)  # p = 1/5, 3/5, 1/5
    got = acc.result()
    assert got is not None
    assert got.logprob_mean == got.logprob_min == pytest.approx(math.log(1 / 5), abs=1e-6)
    assert got.first_margin == pytest.approx(math.log(3), abs=1e-6)


def test_a_tie_for_the_top_has_no_margin() -> None:
    acc = LogitSignals(3)
    acc.add(_logits([1.0, 3.0, 3.0]), 1)
    got = acc.result()
    assert got is not None and got.first_margin == 0.0
    assert got.logprob_mean == pytest.approx(-math.log(2 + math.exp(-2)), abs=1e-6)
    assert got.entropy_mean == pytest.approx(_entropy64([1.0, 3.0, 3.0]), abs=1e-6)


@pytest.mark.filterwarnings("ignore:invalid value encountered in dot:RuntimeWarning")
def test_masked_tokens_count_as_probability_zero() -> None:
    """-inf logits (a token ruled out) make 0 · -inf = NaN in the entropy's sum (numpy warns
    of it): the step is computed again, carefully."""
    acc = LogitSignals(4)
    acc.add(_logits([0.0, 0.0, -math.inf, -math.inf]), 1)
    got = acc.result()
    assert got is not None
    assert got.logprob_mean == pytest.approx(-LN2, abs=1e-6)
    assert got.entropy_mean == pytest.approx(LN2, abs=1e-6)
    assert got.first_margin == 0.0


@pytest.mark.filterwarnings("ignore:overflow encountered in exp:RuntimeWarning")
def test_huge_logits_do_not_overflow() -> None:
    """The chosen token's logit is small, another's is not: exp overflows (numpy warns), and
    the step is computed again, shifted."""
    acc = LogitSignals(2)
    acc.add(_logits([1000.0, 0.0]), 1)
    got = acc.result()
    assert got is not None
    assert got.logprob_mean == pytest.approx(-1000.0)
    assert got.entropy_mean is not None and 0.0 <= got.entropy_mean < 1e-30
    assert got.first_margin == pytest.approx(1000.0)


@pytest.mark.parametrize(
    ("offset", "dtype"), [(0.0, np.float32), (35.0, np.float32), (-45.0, np.float32),
                          (200.0, np.float32), (-200.0, np.float32), (3.0, np.float16)],
)  # fmt: skip
def test_logits_far_from_zero_or_not_float32(offset: float, dtype: type) -> None:
    """Within +-RAW_EXP_LIMIT the exps are summed unshifted; beyond it (or for float16 logits,
    as an fp16 ONNX export's prefill gives) a step is shifted by the maximum."""
    rng = np.random.default_rng(3)
    x: np.ndarray = (rng.standard_normal(1000) * 3 + offset).astype(dtype)
    token = int(np.argmax(x))
    acc = LogitSignals(len(x))
    acc.add(x, token)
    got = acc.result()
    lp = _log_softmax64(x)
    assert got is not None
    assert got.logprob_mean == pytest.approx(float(lp[token]), abs=1e-5)
    assert got.entropy_mean == pytest.approx(_entropy64(x), abs=2e-4)
    assert got.first_margin == pytest.approx(float(np.diff(np.sort(x.astype(float))[-2:])[0]))


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_logits_that_are_not_numbers_leave_the_answer_without_figures(bad: float) -> None:
    """NaN or +inf logits (an fp16 export that overflowed): no figure of the answer can be
    trusted, so it has none, rather than a NaN mean beside a finite, confident minimum."""
    acc = LogitSignals(4)
    acc.add(_logits([0.0, 0.0, bad, 0.0]), 2)
    acc.add(_logits([0.0, 1.0, 0.0, 0.0]), 1)
    assert acc.result() is None


@pytest.mark.filterwarnings("ignore:invalid value encountered in dot:RuntimeWarning")
def test_a_single_finite_logit_has_no_runner_up() -> None:
    acc = LogitSignals(3)
    acc.add(_logits([0.0, -math.inf, -math.inf]), 0)
    got = acc.result()
    assert got is not None and got.first_margin is None and got.logprob_mean == 0.0


def test_no_tokens_no_figures() -> None:
    assert LogitSignals(8).result() is None
    assert TopLogprobSignals().result() is None


def _entropy64(x: list[float] | np.ndarray) -> float:
    lp = _log_softmax64(np.asarray(x))
    p = np.exp(lp)
    return float(-(p[p > 0] * lp[p > 0]).sum())


def _log_softmax64(x: np.ndarray) -> np.ndarray:
    x64 = x.astype(np.float64)
    return x64 - np.log(np.exp(x64 - x64.max()).sum()) - x64.max()


def _naive(steps: list[tuple[np.ndarray, int]]) -> tuple[float, float, float, float]:
    lps = [float(_log_softmax64(x)[t]) for x, t in steps]
    top2 = np.sort(steps[0][0].astype(np.float64))[-2:]
    entropies = [_entropy64(x) for x, _ in steps]
    return float(np.mean(lps)), min(lps), float(np.mean(entropies)), float(top2[1] - top2[0])


@pytest.mark.parametrize("scale", [1.0, 4.0, 12.0])
def test_random_logits_agree_with_a_float64_computation(scale: float) -> None:
    """The demo model's vocabulary size, logits spread as a model's are (a few units, offset
    far from 0), each step's token drawn from the distribution itself."""
    rng = np.random.default_rng(int(scale))
    n = 49_152
    steps = []
    for _ in range(16):
        x = (rng.standard_normal(n) * scale + 25).astype(np.float32)
        p = np.exp(_log_softmax64(x))
        steps.append((x, int(rng.choice(n, p=p / p.sum()))))
    acc = LogitSignals(n)
    for x, t in steps:
        acc.add(x, t)
    got = acc.result()
    assert got is not None and got.tokens == 16
    mean, low, entropy, margin = _naive(steps)
    assert got.logprob_mean == pytest.approx(mean, rel=1e-5, abs=1e-5)
    assert got.logprob_min == pytest.approx(low, rel=1e-5, abs=1e-5)
    # the entropy is log Z minus the mean logit, both ~40 here, from float32 sums
    assert got.entropy_mean == pytest.approx(entropy, abs=2e-4)
    assert got.first_margin == pytest.approx(margin, rel=1e-6, abs=1e-6)


def test_answers_sharing_buffers_score_as_apart() -> None:
    """A batch's sequences share one scratch, their steps interleaved."""
    rng = np.random.default_rng(7)
    rows = [(rng.standard_normal(64) * 3).astype(np.float32) for _ in range(6)]
    copies = [row.copy() for row in rows]
    shared = SignalBuffers(64)
    a, b = LogitSignals(shared), LogitSignals(shared)
    alone_a, alone_b = LogitSignals(64), LogitSignals(64)
    for i, row in enumerate(rows):
        (a if i % 2 else b).add(row, i)
        (alone_a if i % 2 else alone_b).add(row, i)
    assert a.result() == alone_a.result() and b.result() == alone_b.result()
    assert all((row == copy).all() for row, copy in zip(rows, copies, strict=True))  # untouched


LOGITS = hnp.arrays(
    np.float32, st.integers(2, 300), elements=st.floats(-60, 60, width=32, allow_nan=False)
)


@settings(max_examples=60, deadline=None)
@given(LOGITS, st.data())
def test_properties(x: np.ndarray, data: st.DataObject) -> None:
    token = data.draw(st.integers(0, len(x) - 1))
    before = x.copy()
    acc = LogitSignals(len(x))
    acc.add(x, token)
    got = acc.result()
    assert got is not None
    assert (x == before).all()
    assert got.logprob_mean == got.logprob_min <= 1e-6
    assert got.entropy_mean is not None
    assert 0.0 <= got.entropy_mean <= math.log(len(x)) + 1e-5
    assert got.first_margin is not None and got.first_margin >= 0.0
    if token == int(np.argmax(x)):  # the best token's logprob is at least -ln n
        assert got.logprob_mean >= -math.log(len(x)) - 1e-5


# -- an API's top-k log-probabilities ---------------------------------------------------


def test_top_logprobs_by_hand() -> None:
    """Step 1: the top 3 are 0.5, 0.25, 0.25 (all the mass): entropy 1.5 ln 2, margin ln 2.
    Step 2: the top 2 are 0.2 and 0.2 (of the whole vocabulary), renormalized to 0.5 and 0.5:
    entropy ln 2. The chosen tokens' logprobs are the API's own."""
    acc = TopLogprobSignals()
    acc.add(math.log(0.25), [math.log(0.25), math.log(0.5), math.log(0.25)])  # any order
    acc.add(math.log(0.2), [math.log(0.2), math.log(0.2)])
    got = acc.result()
    assert got is not None
    assert (got.source, got.tokens) == ("api-top-logprobs", 2)
    assert got.logprob_mean == pytest.approx((math.log(0.25) + math.log(0.2)) / 2)
    assert got.logprob_min == pytest.approx(math.log(0.2))
    assert got.entropy_mean == pytest.approx((1.5 * LN2 + LN2) / 2)
    assert got.first_margin == pytest.approx(LN2)


def test_top_logprobs_missing_leave_entropy_and_margin_unknown() -> None:
    acc = TopLogprobSignals()
    acc.add(-0.1, [-0.1])  # one listed: entropy 0, no second for a margin
    acc.add(-0.3, [])
    got = acc.result()
    assert got is not None and got.tokens == 2
    assert got.logprob_mean == pytest.approx(-0.2) and got.logprob_min == pytest.approx(-0.3)
    assert got.entropy_mean is None and got.first_margin is None


def test_renormalized_entropy_is_at_most_log_k() -> None:
    assert renormalized_entropy([-3.0] * 5) == pytest.approx(math.log(5))
    assert renormalized_entropy([-0.01]) == 0.0
    assert 0 < renormalized_entropy([-0.1, -2.0, -9.0]) < math.log(3)


def test_row_fills_the_m011_columns() -> None:
    row = AnswerSignals("logits", 3, -0.5, -1.0, 2.0, 0.25).row()
    assert tuple(row) == SIGNAL_COLUMNS
    assert row == {"signal_source": "logits", "signal_tokens": 3, "logprob_mean": -0.5,
                   "logprob_min": -1.0, "entropy_mean": 2.0, "first_margin": 0.25}  # fmt: skip


def test_an_api_token_without_a_logprob_leaves_the_answer_without_figures() -> None:
    """llama-server writes a zero-probability token's -inf as null: skipping it would score
    the answer over fewer tokens than it has, and take the margin at its second step."""
    from edgeprof.backends.openai_compat import _logprobs
    from edgeprof.backends.streaming import StreamState

    def entry(lp: float | None) -> dict[str, object]:
        return {"logprob": lp, "top_logprobs": [{"logprob": -0.1}, {"logprob": -3.0}]}

    state = StreamState()
    _logprobs({"content": [entry(None), entry(-0.1)]}, state)
    assert state.signals is not None and state.signals.tokens == 2
    assert state.signals.result() is None
    fine = StreamState()
    _logprobs({"content": [entry(-0.1), entry(-0.5)]}, fine)
    got = fine.signals.result() if fine.signals is not None else None
    assert got is not None and got.tokens == 2 and got.first_margin == pytest.approx(2.9)
