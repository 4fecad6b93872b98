"""`--backend ort-genai`: ONNX Runtime GenAI's own loop and KV cache on an `edgeprof convert`
export, checked against the plain `onnx` backend on the same file: the same tokens and logits
(tiny random-weight models of every family), and token times that mean the same thing (the
demo model's int4 export)."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edgeprof.backends import BackendOptions, create_backend
from edgeprof.backends.base import Backend, Generation, Request
from edgeprof.convert import SUPPORTED_ARCHS, convert_gguf
from edgeprof.errors import UsageError
from tests.builders import cli, write_prompts
from tests.onnx_builders import export_once
from tests.tiny_models import write_tiny

pytest.importorskip("onnxruntime_genai", reason="pip install 'edgeprof[ort-genai]'")

QUESTION = ({"role": "user", "content": "What is the capital of Australia? One sentence."},)


def _loaded(name: str, path: Path) -> Backend:
    backend = create_backend(name, BackendOptions(model=str(path), threads=2))
    backend.load()
    return backend


def _answer(backend: Backend, request: Request) -> tuple[Generation, list[int], int]:
    """The generation, its token times and the time the request started (perf_counter_ns)."""
    t0 = time.perf_counter_ns()
    gen = backend.generate(request)
    times = []
    while True:
        try:
            times.append(next(gen).t_ns)
        except StopIteration as stop:
            return stop.value, times, t0


@pytest.fixture(scope="module")
def tiny_exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("genai")
    return {
        arch: convert_gguf(
            write_tiny(folder / f"{arch}.gguf", arch), folder / f"{arch}.onnx"
        ).onnx_path
        for arch in SUPPORTED_ARCHS
    }


@pytest.mark.parametrize("arch", SUPPORTED_ARCHS)
def test_genai_decodes_what_the_onnx_backend_decodes(
    tiny_exports: dict[str, Path], arch: str
) -> None:
    prompt = [1, *(int(t) for t in np.random.default_rng(2).integers(3, 259, 30))]
    rows: dict[str, list[np.ndarray]] = {}
    texts = {}
    for name in ("onnx", "ort-genai"):
        backend = _loaded(name, tiny_exports[arch])
        try:
            texts[name] = _answer(backend, Request("q", QUESTION, 12))[0]
            stream = backend.logits_stream(prompt, 8)  # type: ignore[attr-defined]
            row = next(stream)
            rows[name] = []
            for _ in range(7):
                rows[name].append(np.array(row))
                row = stream.send(int(np.argmax(row)))
            stream.close()
        finally:
            backend.close()
    assert texts["onnx"].text == texts["ort-genai"].text
    assert texts["onnx"].output_tokens == texts["ort-genai"].output_tokens == 12
    # the signals read from GenAI's logits are those the plain loop reads: each step's
    # logits are the ones its token was chosen from
    plain, genai = texts["onnx"].signals, texts["ort-genai"].signals
    assert plain is not None and genai is not None and genai.tokens == plain.tokens == 12
    for field in ("logprob_mean", "logprob_min", "entropy_mean", "first_margin"):
        assert getattr(genai, field) == pytest.approx(getattr(plain, field), rel=1e-3, abs=1e-4)
    for ours, theirs in zip(rows["onnx"], rows["ort-genai"], strict=True):
        assert np.linalg.norm(ours - theirs) <= 1e-4 * np.linalg.norm(ours)


def test_genai_refuses_a_graph_without_edgeprof_config(tmp_path: Path) -> None:
    src = write_tiny(tmp_path / "q.gguf", "qwen3")
    dst = convert_gguf(src, tmp_path / "q.onnx").onnx_path
    (tmp_path / "q.edgeprof.json").unlink()
    with pytest.raises(UsageError, match="ort-genai backend runs `edgeprof convert` exports"):
        create_backend("ort-genai", BackendOptions(model=str(dst), settings={}))


@pytest.fixture(scope="module")
def demo_int4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_once(tmp_path_factory, "int4")


@pytest.fixture(scope="module")
def both(demo_int4: Path) -> Iterator[dict[str, Backend]]:
    backends = {name: _loaded(name, demo_int4) for name in ("onnx", "ort-genai")}
    yield backends
    for backend in backends.values():
        backend.close()


@pytest.mark.model
def test_genai_token_times_mean_what_the_onnx_backends_mean(both: dict[str, Backend]) -> None:
    """Same export, same prompt, requests taking turns: the first token's time covers the
    prompt (TTFT of the same size as the plain loop's) and each later gap one decode step."""
    request = Request("q", QUESTION, 24)
    ttft: dict[str, list[float]] = {name: [] for name in both}
    step: dict[str, list[float]] = {name: [] for name in both}
    answers = {}
    for _ in range(3):
        for name, backend in both.items():
            gen, times, t0 = _answer(backend, request)
            answers[name] = gen.text
            assert len(times) == gen.output_tokens and times == sorted(times)
            ttft[name].append((times[0] - t0) / 1e9)
            step[name].append(float(np.median(np.diff(times))) / 1e9)
    assert answers["onnx"] == answers["ort-genai"] and "Canberra" in answers["onnx"]
    for metric in (ttft, step):
        ratio = statistics.median(metric["ort-genai"]) / statistics.median(metric["onnx"])
        # one request each on a busy 2-core VM: 1.01 (TTFT, 459 / 453 ms) and 1.08 (per token,
        # 45 / 42 ms); a stamp taken at the wrong point (before the prompt ran, or once per
        # two tokens) would be off by several times
        assert 0.5 < ratio < 2.0, (metric, ratio)


def test_run_records_the_genai_runtime(tiny_exports: dict[str, Path], tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    suite = write_prompts(tmp_path / "s.jsonl", ["Hello there"])
    res = cli("run", "--backend", "ort-genai", "--model", tiny_exports["gemma3"], "--prompts",
              suite, "--max-tokens", "6", "--repetitions", "1", "--warmup", "0",
              "--idle-seconds", "0", "--threads", "2", "--db", db)  # fmt: skip
    assert res.exit_code == 0, res.stderr
    (summary,) = json.loads(cli("report", db, "--json").stdout)
    assert summary["status"] == "complete" and summary["backend"] == "ort-genai"
    assert summary["decode_tps_mean"] > 0 and summary["ttft_p50_s"] > 0
