"""Perplexity and divergence from a reference: the statistics on hand-made numbers, the scored
positions checked against llama.cpp's own per-position logits, an ONNX export against its GGUF,
and the stored rows (reuse, Ctrl-C) through the Python API and the command."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from edgeprof.errors import UsageError
from edgeprof.quality import perplexity as q
from edgeprof.quality.store import QualityText, assess
from edgeprof.store import Store
from tests.builders import cli
from tests.onnx_builders import export_once

CTX = 64  # small chunks keep the model tests quick; the convention does not depend on size


# --- statistics ------------------------------------------------------------------------
def test_log_softmax_is_a_distribution_and_ignores_a_shift() -> None:
    x = np.array([[1.0, 2.0, 3.0], [1000.0, 1000.0, -1000.0]], dtype=np.float32)
    lp = q.log_softmax(x)
    assert np.allclose(np.exp(lp).sum(axis=1), 1.0, atol=1e-6)
    assert np.allclose(lp[1, :2], math.log(0.5), atol=1e-6)  # no overflow at 1000
    assert np.allclose(q.log_softmax(x + 7.5), lp, atol=1e-5)


def test_nll_picks_each_rows_next_token() -> None:
    lp = np.log(np.array([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]], dtype=np.float32))
    assert np.allclose(q.next_token_nll(lp, [1, 2]), [math.log(4), -math.log(0.8)], atol=1e-6)


def test_kl_divergence_by_hand() -> None:
    p = np.log(np.array([[0.5, 0.5], [0.9, 0.1]], dtype=np.float32))
    t = np.log(np.array([[0.5, 0.5], [0.5, 0.5]], dtype=np.float32))
    kld = q.kl_divergence(p, t)
    assert kld[0] == pytest.approx(0.0, abs=1e-7)
    expected = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)
    assert kld[1] == pytest.approx(expected, rel=1e-5)
    assert q.kl_divergence(t, p)[1] != pytest.approx(expected, rel=1e-2)  # not symmetric


def test_perplexity_and_its_standard_error_as_llama_perplexity_prints_them() -> None:
    nll = np.array([1.0, 2.0, 3.0])
    r = q.perplexity_of(nll, n_chunks=1, ctx=8, text_tokens=8)
    assert r.ppl == pytest.approx(math.e**2)
    # llama-perplexity: sqrt((mean(x^2) - mean^2) / (n - 1)) * PPL
    assert r.ppl_se == pytest.approx(math.sqrt((14 / 3 - 4) / 2) * math.e**2)
    assert r.n_scored == 3


def test_divergence_summary_by_hand() -> None:
    kld = np.array([0.0, 0.1, 0.2, 0.3])
    same = np.array([True, True, False, True])
    ref_nll = np.array([1.0, 1.0, 1.0, 1.0])
    nll = ref_nll + np.log(1.1)  # every position 10 % less likely: PPL 10 % higher
    d = q.divergence_of(kld, same, nll, ref_nll)
    assert d.kld_mean == pytest.approx(0.15)
    assert d.kld_max == pytest.approx(0.3)
    assert 0.29 < d.kld_p99 <= 0.3
    assert d.top1_agreement == 0.75
    assert d.delta_ppl_pct == pytest.approx(10.0)
    assert d.delta_ppl == pytest.approx(math.e * 1.1 - math.e)
    assert d.delta_ppl_pct_se == pytest.approx(0.0, abs=1e-9)  # the same shift everywhere


def test_chunks_follow_llama_perplexity() -> None:
    tokens = list(range(100, 350))
    chunks = q.chunk_tokens(tokens, 64, bos=1)
    assert len(chunks) == 250 // 64  # the tail that does not fill a chunk is dropped
    assert [c[0] for c in chunks] == [1, 1, 1]
    assert chunks[1][1:] == tokens[65:128]
    assert q.chunk_tokens(tokens, 64, bos=None)[1][0] == tokens[64]
    with pytest.raises(UsageError, match="fewer than one chunk"):
        q.chunk_tokens(tokens[:50], 64, bos=None)
    with pytest.raises(UsageError, match="even number"):
        q.chunk_tokens(tokens, 63, bos=None)


# --- the models ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def text() -> str:
    return q.bundled_text()


@pytest.fixture(scope="module")
def chunks(demo_model: Path, text: str) -> list[list[int]]:
    tokens, bos = q.tokenize_text(demo_model, text)
    return q.chunk_tokens(tokens, CTX, bos)[:3]


def test_bundled_text_is_long_and_varied(demo_model: Path, text: str) -> None:
    tokens, _ = q.tokenize_text(demo_model, text)
    assert len(tokens) >= 5000
    for marker in ("def ", "SELECT", '"', "$"):  # code, SQL, dialogue, prices
        assert marker in text


def test_scored_positions_are_llama_cpps_own_logits(demo_model: Path, chunks: list) -> None:
    """Row j is the distribution after position ctx/2 + j: the logits a plain sequential
    evaluation with every position's logits kept gives there."""
    import llama_cpp

    model = q.open_model(demo_model, CTX, threads=2)
    try:
        rows = model.scored_logits(chunks[0], q.first_scored(CTX))
    finally:
        model.close()
    llm = llama_cpp.Llama(str(demo_model), n_ctx=CTX, n_batch=CTX, logits_all=True,
                          n_threads=2, verbose=False)  # fmt: skip
    llm.eval(chunks[0])
    first = q.first_scored(CTX)
    expected = np.asarray(llm.scores[first : CTX - 1], dtype=np.float32)
    assert rows.shape == expected.shape == (CTX - 1 - first, llm.n_vocab())
    assert np.allclose(rows, expected, atol=1e-3, rtol=1e-3)


def test_a_model_against_itself_loses_nothing(demo_model: Path, chunks: list) -> None:
    a = q.open_model(demo_model, CTX, threads=2)
    b = q.open_model(demo_model, CTX, threads=2)
    try:
        ppl, ref_ppl, div = q.evaluate(a, chunks, b)
    finally:
        a.close()
        b.close()
    assert ref_ppl is not None and div is not None
    assert 1.5 < ppl.ppl < 500 and ppl.ppl == pytest.approx(ref_ppl.ppl)
    assert ppl.n_scored == 3 * (CTX - 1 - CTX // 2)
    assert div.kld_mean == pytest.approx(0.0, abs=1e-6) and div.top1_agreement == 1.0


def test_onnx_export_scored_against_its_gguf(
    demo_model: Path, chunks: list, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """fp32 export vs the GGUF it came from: the same model in two runtimes, so small KLD and
    high agreement (a position off by one would give KLD of several nats). fp32 avoids the
    integer kernels whose results depend on the CPU's instruction set."""
    export = export_once(tmp_path_factory, "fp32")
    ref = q.open_model(demo_model, CTX, threads=2)
    onnx = q.open_model(export, CTX, threads=2)
    try:
        _, ref_ppl, div = q.evaluate(onnx, chunks, ref)
    finally:
        ref.close()
        onnx.close()
    assert onnx.backend == "onnx" and ref_ppl is not None and div is not None
    assert div.kld_mean < 0.05, div
    assert div.top1_agreement > 0.85, div
    assert abs(div.delta_ppl_pct) < 5, div


# --- stored rows -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def short_text(text: str) -> QualityText:
    return QualityText("short.txt", text[:2500])  # about 3 chunks of 192 tokens


def test_rows_are_stored_and_reused(
    demo_model: Path, short_text: QualityText, tmp_path_factory: pytest.TempPathFactory
) -> None:
    export = export_once(tmp_path_factory, "fp32")
    db = tmp_path_factory.mktemp("q") / "p.db"
    with Store(db) as store:
        first = assess(store, [export], reference=demo_model, text=short_text, ctx=192,
                       threads=2)  # fmt: skip
        assert [o.reused for o in first] == [False, False]
        ref_row, onnx_row = (o.row for o in first)
        # The reference's own row comes from the comparison's pass, not a second one.
        assert ref_row["target"] == demo_model.name and ref_row["kld_mean"] is None
        assert ref_row["ppl"] == pytest.approx(onnx_row["ref_ppl"])
        assert onnx_row["backend"] == "onnx" and onnx_row["kld_mean"] is not None
        assert onnx_row["reference_sha256"] == ref_row["file_sha256"]
        # an export's model_sha256 is its source GGUF's, as in `runs`
        assert onnx_row["model_sha256"] == ref_row["model_sha256"]

        again = assess(store, [export], reference=demo_model, text=short_text, ctx=192)
        assert [o.reused for o in again] == [True, True]
        assert [o.row["id"] for o in again] == [ref_row["id"], onnx_row["id"]]
        assert store.count("quality") == 2

        other_ctx = assess(store, [demo_model], text=short_text, ctx=128)
        assert [o.reused for o in other_ctx] == [False]
        assert store.count("quality") == 3


def test_ctrl_c_keeps_the_finished_evaluations(
    demo_model: Path, short_text: QualityText, tmp_path: Path
) -> None:
    second = tmp_path / "copy.gguf"
    second.write_bytes(demo_model.read_bytes() + b"")  # same weights, its own file
    seen: list[str] = []

    def interrupt_on_second(what: str, done: int, total: int) -> None:
        seen.append(what)
        if what == second.name:
            raise KeyboardInterrupt

    with Store(tmp_path / "p.db") as store:
        with pytest.raises(KeyboardInterrupt):
            assess(store, [demo_model, second], text=short_text, ctx=192,
                   progress=interrupt_on_second)  # fmt: skip
        rows = store.quality()
    assert [r["target"] for r in rows] == [demo_model.name]


def test_quality_command(demo_model: Path, tmp_path: Path, text: str) -> None:
    src = tmp_path / "domain.txt"
    src.write_text(text[:2500], encoding="utf-8")
    db = tmp_path / "p.db"
    res = cli("quality", "demo", "--text", src, "--ctx", "192", "--db", db, "--threads", "2")
    assert res.exit_code == 0, res.stderr
    assert demo_model.name in res.stdout and "domain.txt" in res.stdout
    rows = json.loads(cli("quality", "demo", "--text", src, "--ctx", "192", "--db", db,
                          "--json").stdout)  # fmt: skip
    assert rows[0]["reused"] is True and rows[0]["ppl"] > 1

    short = tmp_path / "short.txt"
    short.write_text("Too short.", encoding="utf-8")
    res = cli("quality", "demo", "--text", short, "--db", db)
    assert res.exit_code != 0
    assert res.stderr.startswith("edgeprof: error:") and "--ctx" in res.stderr
    res = cli("quality", "nope.gguf", "--db", db)
    assert res.exit_code != 0 and "not found" in res.stderr
