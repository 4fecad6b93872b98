"""What both batched engines (llama.cpp's `llama_batch`, ONNX Runtime's `onnx_batch`) share:
the jobs they take, the results they yield, how a request's window is shared out among the
sequences active in it, and how big a KV cache a set of requests needs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeprof.backends.base import Generation, Request


@dataclass(frozen=True)
class BatchJob:
    key: Any  # the caller's handle, returned with the result
    tokens: list[int]  # the rendered prompt
    max_tokens: int


@dataclass
class BatchResult:
    key: Any
    t_start_ns: int  # when the request got a slot (its window opens)
    t_end_ns: int
    events: list[tuple[int, int]]  # (t_ns, n_tokens) per generated token
    generation: Generation
    # (t0_ns, t1_ns, sequences active) pieces of this request's window, for sharing energy
    shares: list[tuple[int, int, int]] = field(default_factory=list)


def forget_before(spans: list[tuple[int, int]], t_ns: int | None) -> None:
    """Drop the spans no active request's window reaches back to (keep the one in force)."""
    if t_ns is None:
        spans.clear()
        return
    while len(spans) > 1 and spans[1][0] <= t_ns:
        del spans[0]


def window_shares(
    spans: list[tuple[int, int]], t_start_ns: int, t_end_ns: int
) -> list[tuple[int, int, int]]:
    """The (t0_ns, t1_ns, sequences active) pieces of one request's window, from the spans
    (t_ns, sequences active from then on) recorded as requests joined and left."""
    shares = []
    for (t0, n), (t1, _) in zip(spans, [*spans[1:], (t_end_ns, 0)], strict=True):
        lo, hi = max(t0, t_start_ns), min(t1, t_end_ns)
        if hi > lo and n > 0:
            shares.append((lo, hi, n))
    return shares


def batch_jobs(
    vocab_path: Path, requests: Sequence[Request], prompt: Mapping[str, Any] | None = None
) -> list[BatchJob]:
    """The requests as token jobs, tokenized with the model's vocabulary alone (milliseconds;
    nothing is loaded): what both engines size their KV caches from before a run. `prompt`:
    the backend's prompt settings (`edgeprof.models.tokens.prompt_given`)."""
    from edgeprof.models.tokens import load_vocab, model_format, prompt_tokens

    vocab = load_vocab(vocab_path)
    try:
        fmt = model_format(vocab, **dict(prompt or {}))
        return [BatchJob(r.prompt_id, prompt_tokens(vocab, r.messages, fmt), r.max_tokens)
                for r in requests]  # fmt: skip
    finally:
        vocab.close()


def kv_cells_needed(jobs: Iterable[BatchJob], n_seq: int) -> int:
    """KV cells a context serving these requests n_seq at a time needs: n_seq streams, each as
    long as the longest request (prompt + max tokens), since any slot may get it."""
    return n_seq * max((len(j.tokens) + j.max_tokens for j in jobs), default=0)
