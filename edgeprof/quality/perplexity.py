"""How much a model variant loses: perplexity on a text, and divergence from a reference.

Perplexity follows llama.cpp's `llama-perplexity`, so the figures match what users of
llama.cpp already know: the text is tokenized once (with BOS where the vocabulary adds one),
cut into ⌊n_tokens / ctx⌋ chunks of `ctx` tokens, each chunk evaluated from an empty KV cache
with its first token replaced by BOS, and only the second half scored: the logits at positions
ctx/2 … ctx-2 against the tokens that follow them. PPL = exp(mean NLL); its standard error is
llama-perplexity's, sd(NLL) / sqrt(n - 1) × PPL.

Against a reference (the F32 or F16 model the variants came from) the same positions give, per
position, KL(reference ‖ target) of the next-token distributions, whether both pick the same
top token, and the difference of the two NLLs. The reference is evaluated chunk by chunk beside
the target, never stored whole: memory is the two models plus two chunks of log-probabilities
(2 × ctx/2 × n_vocab × 4 bytes, 100 MB at ctx 512 with SmolLM2's 49,152-token vocabulary) plus
four numbers per scored position, whatever the length of the text. The price is that the
reference runs once per target.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgeprof.errors import UsageError

BUNDLED_TEXT = "eval.txt"
DEFAULT_CTX = 512


# --- the text ----------------------------------------------------------------------------
def bundled_text_path() -> Path:
    return Path(str(files("edgeprof.data").joinpath(BUNDLED_TEXT)))


def bundled_text() -> str:
    return read_text_exactly(bundled_text_path())


def read_text_exactly(path: Path) -> str:
    """The file's characters as they are: no newline translation (a CRLF text is tokenized
    with its CRs, as llama-perplexity reads it)."""
    return path.read_bytes().decode("utf-8")


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def chunk_tokens(tokens: Sequence[int], ctx: int, bos: int | None) -> list[list[int]]:
    """⌊len / ctx⌋ chunks of `ctx` tokens; the first token of each is BOS when the vocabulary
    adds one (`bos` not None), as llama-perplexity does."""
    if ctx < 8 or ctx % 2:
        raise UsageError(f"`--ctx` must be an even number of tokens, at least 8, got {ctx}")
    n_chunks = len(tokens) // ctx
    if n_chunks < 1:
        raise UsageError(
            f"the text has {len(tokens)} tokens, fewer than one chunk of --ctx {ctx}; "
            "give a longer --text or a smaller --ctx"
        )
    chunks = []
    for i in range(n_chunks):
        chunk = list(tokens[i * ctx : (i + 1) * ctx])
        if bos is not None:
            chunk[0] = bos
        chunks.append(chunk)
    return chunks


def first_scored(ctx: int) -> int:
    """The first position whose prediction is scored: the second half of the chunk."""
    return ctx // 2


# --- the statistics (pure) ---------------------------------------------------------------
def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float32, shifted by each row's max for stability."""
    x = np.asarray(logits, dtype=np.float32)
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True, dtype=np.float64)).astype(
        np.float32
    )


def next_token_nll(logp: np.ndarray, next_tokens: Sequence[int]) -> np.ndarray:
    """-log p(next token) per row, in float64."""
    rows = np.arange(len(next_tokens))
    return -logp[rows, np.asarray(next_tokens)].astype(np.float64)


def kl_divergence(ref_logp: np.ndarray, logp: np.ndarray) -> np.ndarray:
    """KL(reference ‖ target) per row, in nats, summed in float64."""
    p_ref = np.exp(ref_logp)
    return np.einsum("ij,ij->i", p_ref, ref_logp - logp, dtype=np.float64).clip(min=0.0)


@dataclass(frozen=True)
class Perplexity:
    ppl: float
    ppl_se: float
    nll_mean: float
    n_chunks: int
    n_scored: int
    ctx: int
    text_tokens: int


def perplexity_of(nll: np.ndarray, n_chunks: int, ctx: int, text_tokens: int) -> Perplexity:
    """PPL and its standard error from per-position NLLs, as llama-perplexity prints them."""
    n = len(nll)
    mean = float(np.mean(nll))
    var = float(np.mean(nll**2)) - mean * mean
    ppl = math.exp(mean)
    se = math.sqrt(var / (n - 1)) * ppl if n > 1 and var > 0 else 0.0
    return Perplexity(ppl, se, mean, n_chunks, n, ctx, text_tokens)


@dataclass(frozen=True)
class Divergence:
    """A target against the reference, over the same scored positions."""

    kld_mean: float
    kld_se: float
    kld_p99: float
    kld_max: float
    top1_agreement: float  # share of positions where both pick the same next token
    top1_se: float
    ppl_ratio: float  # exp(mean(NLL_target - NLL_reference)) = PPL_target / PPL_reference
    delta_ppl: float  # PPL_target - PPL_reference
    delta_ppl_pct: float
    delta_ppl_pct_se: float


def divergence_of(
    kld: np.ndarray, same_top1: np.ndarray, nll: np.ndarray, ref_nll: np.ndarray
) -> Divergence:
    n = len(kld)
    sd = float(np.std(kld, ddof=1)) if n > 1 else 0.0
    top1 = float(np.mean(same_top1))
    diff = nll - ref_nll
    ln_ratio = float(np.mean(diff))
    ln_se = float(np.std(diff, ddof=1)) / math.sqrt(n) if n > 1 else 0.0
    ratio = math.exp(ln_ratio)
    return Divergence(
        kld_mean=float(np.mean(kld)),
        kld_se=sd / math.sqrt(n) if n else 0.0,
        kld_p99=float(np.percentile(kld, 99)),
        kld_max=float(np.max(kld)),
        top1_agreement=top1,
        top1_se=math.sqrt(top1 * (1 - top1) / (n - 1)) if n > 1 else 0.0,
        ppl_ratio=ratio,
        delta_ppl=math.exp(float(np.mean(nll))) - math.exp(float(np.mean(ref_nll))),
        delta_ppl_pct=(ratio - 1) * 100,
        delta_ppl_pct_se=ratio * ln_se * 100,
    )


# --- the models --------------------------------------------------------------------------
class LogitSource(Protocol):
    """A loaded model that gives next-token logits for every scored position of a chunk."""

    name: str
    backend: str
    quant: str | None
    model_sha256: str  # as `runs.model_sha256` records it, so quality rows join runs
    file_sha256: str
    size_bytes: int
    n_vocab: int

    def scored_logits(self, chunk: Sequence[int], first: int) -> np.ndarray: ...

    def close(self) -> None: ...


class LlamaCppLogits:
    """llama.cpp: the whole chunk in one `llama_decode`, logits kept for the scored half."""

    backend = "llamacpp"

    def __init__(self, path: Path, ctx: int, threads: int | None) -> None:
        from edgeprof.backends.base import BackendOptions
        from edgeprof.backends.llamacpp import LlamaCppBackend, LlamaCppSettings
        from edgeprof.models.files import sha256_file

        # n_batch = ctx: one decode per chunk, like llama-perplexity with -b = -c
        settings = LlamaCppSettings(n_batch=ctx, n_ubatch=min(ctx, 512))
        self._backend = LlamaCppBackend(
            BackendOptions(model=str(path), threads=threads, ctx=ctx), settings
        )
        info = self._backend.load()
        self.path = self._backend.path
        self.name, self.quant, self.size_bytes = info.target, info.quant, info.size_bytes
        self.file_sha256 = self.model_sha256 = sha256_file(self.path)
        llm = self._backend._llm
        assert llm is not None
        self._llm = llm
        self.n_vocab = int(llm.n_vocab())
        import llama_cpp

        self._lib = llama_cpp
        self._batch = llama_cpp.llama_batch_init(ctx, 0, 1)

    def scored_logits(self, chunk: Sequence[int], first: int) -> np.ndarray:
        lib, llm, batch = self._lib, self._llm, self._batch
        n = len(chunk)
        llm._ctx.kv_cache_clear()
        for i, token in enumerate(chunk):
            batch.token[i] = token
            batch.pos[i] = i
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = first <= i < n - 1
        batch.n_tokens = n
        rc = lib.llama_decode(llm._ctx.ctx, batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode failed ({rc}) on {self.name}")
        out = np.empty((n - 1 - first, self.n_vocab), dtype=np.float32)
        for j in range(n - 1 - first):
            ptr = lib.llama_get_logits_ith(llm._ctx.ctx, first + j)
            out[j] = np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))
        return out

    def close(self) -> None:
        if self._batch is not None:
            self._lib.llama_batch_free(self._batch)
            self._batch = None
        self._backend.close()


class OnnxLogits:
    """ONNX Runtime: the first half in one call, then the scored tokens one by one through the
    KV cache (teacher forcing), which works whether the export keeps all logits or the last."""

    backend = "onnx"

    def __init__(self, path: Path, threads: int | None, provider: str | None = None) -> None:
        from edgeprof.backends.base import BackendOptions
        from edgeprof.backends.onnxrt import OnnxBackend, OnnxSettings

        settings = OnnxSettings(providers=provider) if provider else None
        self._backend = OnnxBackend(BackendOptions(model=str(path), threads=threads), settings)
        info = self._backend.load()
        self.path = self._backend.path
        self.name, self.quant, self.size_bytes = info.target, info.quant, info.size_bytes
        self.model_sha256 = info.sha256 or ""
        self.file_sha256 = _onnx_sha256(self.path)
        self.n_vocab = int(self._backend.n_vocab)

    def scored_logits(self, chunk: Sequence[int], first: int) -> np.ndarray:
        n = len(chunk)
        out = np.empty((n - 1 - first, self.n_vocab), dtype=np.float32)
        stream = self._backend.logits_stream(list(chunk[: first + 1]), n - 1 - first)
        out[0] = next(stream)
        for j in range(1, n - 1 - first):
            out[j] = stream.send(chunk[first + j])
        stream.close()
        return out

    def close(self) -> None:
        self._backend.close()


def _onnx_sha256(path: Path) -> str:
    """The export's own hash: the graph and its external weights, in that order."""
    h = hashlib.sha256()
    for part in (path, path.with_name(path.name + ".data")):
        if part.is_file():
            with part.open("rb") as f:
                while block := f.read(1 << 20):
                    h.update(block)
    return h.hexdigest()


def open_model(path: Path, ctx: int, threads: int | None, provider: str | None = None) -> Any:
    """A LogitSource for a GGUF or an ONNX export."""
    if path.suffix.lower() == ".onnx":
        return OnnxLogits(path, threads, provider)
    return LlamaCppLogits(path, ctx, threads)


def tokenizer_path(path: Path) -> Path:
    """The GGUF whose vocabulary tokenizes the text for `path` (an export names its own)."""
    if path.suffix.lower() != ".onnx":
        return path
    from edgeprof.backends.base import BackendOptions
    from edgeprof.backends.onnxrt import OnnxBackend

    return OnnxBackend(BackendOptions(model=str(path)))._tokenizer_path()


def tokenize_text(gguf: Path, text: str) -> tuple[list[int], int | None]:
    """The text's tokens with BOS where the vocabulary adds one, and that BOS (or None)."""
    import llama_cpp

    from edgeprof.models.tokens import load_vocab

    vocab = load_vocab(gguf)
    try:
        add_bos = bool(llama_cpp.llama_vocab_get_add_bos(vocab._model.vocab))
        tokens = vocab.tokenize(text.encode("utf-8"), add_bos=True, special=False)
        return tokens, (int(vocab.token_bos()) if add_bos else None)
    finally:
        vocab.close()


# --- one evaluation ----------------------------------------------------------------------
@dataclass(frozen=True)
class QualityResult:
    target: str
    path: str
    backend: str
    quant: str | None
    model_sha256: str
    file_sha256: str
    size_bytes: int
    text_name: str
    text_sha256: str
    perplexity: Perplexity
    reference: str | None = None
    reference_sha256: str | None = None
    reference_note: str | None = None
    reference_perplexity: Perplexity | None = None
    divergence: Divergence | None = None
    seconds: float = 0.0
    peak_rss_bytes: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate(
    target: LogitSource,
    chunks: Sequence[Sequence[int]],
    reference: LogitSource | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[Perplexity, Perplexity | None, Divergence | None]:
    """Score `target` (and compare it with `reference`) chunk by chunk; `progress(i)` after
    each chunk. Holds at most one chunk of each model's log-probabilities."""
    if reference is not None and reference.n_vocab != target.n_vocab:
        raise UsageError(
            f"{target.name} has a vocabulary of {target.n_vocab} tokens and the reference "
            f"{reference.name} {reference.n_vocab}: compare variants of the same model"
        )
    ctx = len(chunks[0])
    first = first_scored(ctx)
    nll: list[np.ndarray] = []
    ref_nll: list[np.ndarray] = []
    kld: list[np.ndarray] = []
    same: list[np.ndarray] = []
    for i, chunk in enumerate(chunks):
        following = list(chunk[first + 1 :])
        logp = log_softmax(target.scored_logits(chunk, first))
        nll.append(next_token_nll(logp, following))
        if reference is not None:
            ref_logp = log_softmax(reference.scored_logits(chunk, first))
            ref_nll.append(next_token_nll(ref_logp, following))
            kld.append(kl_divergence(ref_logp, logp))
            same.append(ref_logp.argmax(axis=1) == logp.argmax(axis=1))
            del ref_logp
        del logp
        if progress:
            progress(i + 1)
    n_tokens = len(chunks) * ctx
    ppl = perplexity_of(np.concatenate(nll), len(chunks), ctx, n_tokens)
    if reference is None:
        return ppl, None, None
    all_nll, all_ref = np.concatenate(nll), np.concatenate(ref_nll)
    ref_ppl = perplexity_of(all_ref, len(chunks), ctx, n_tokens)
    div = divergence_of(np.concatenate(kld), np.concatenate(same), all_nll, all_ref)
    return ppl, ref_ppl, div


def perplexity(
    model_path: Path, text: str, *, ctx: int = DEFAULT_CTX, threads: int | None = None
) -> Perplexity:
    """llama-perplexity's figure for one model on one text (no reference)."""
    tokens, bos = tokenize_text(tokenizer_path(model_path), text)
    chunks = chunk_tokens(tokens, ctx, bos)
    model = open_model(model_path, ctx, threads)
    try:
        ppl, _, _ = evaluate(model, chunks)
    finally:
        model.close()
    return Perplexity(**{**asdict(ppl), "text_tokens": len(tokens)})


def reference_note(path: Path) -> str:
    """How the reference came to be: from `edgeprof quantize`'s manifest beside it, or its own
    type ("reference: the source, F16")."""
    import json

    manifest = path.parent / "edgeprof-quantize.json"
    if manifest.is_file():
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        ref = data.get("reference") or {}
        if Path(str(ref.get("path", ""))).name == path.name and ref.get("note"):
            return str(ref["note"])
    from edgeprof.models.gguf_header import file_quant

    name = file_quant(path)
    return f"reference: {path.name}" + (f", {name}" if name else "")
