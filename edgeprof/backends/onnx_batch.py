"""Continuous batching on one ONNX Runtime session: N requests decoded together.

The ONNX counterpart of `llama_batch.BatchDecoder` (same jobs, same results, same energy
shares). It needs an `edgeprof convert` export: its GroupQueryAttention (GQA) reads each row's
length from `attention_mask` (seqlens_k = ones in the row - 1) and its rotary position from
`position_ids`, so rows of different lengths share one call with their KV right-padded.

The KV cache is ours: per layer one float buffer [N, kv_heads, max_len, head_dim], bound as
both `past_key_values.*` and `present.*`. ORT's GQA sees the same address for both and writes
only the new token of each row, at that row's length (past/present buffer sharing, as
onnxruntime-genai runs it): nothing is concatenated or copied per step. Active requests keep
rows 0..n-1, so a step binds the first n rows (a prefix of each buffer) and computes only them.

A request joins by a prefill of its own (batch 1, the same call `OnnxBackend.generate` makes,
so its first token is the same) whose KV is copied into the next free row. A finished request
frees its row; the last row moves into it (one KV copy of its length), and a waiting request
joins at the end. Joining stalls the others for one prefill: ORT's GQA refuses a prompt longer
than one token beside other rows (batch > 1 with past), and with last-position logits a
right-padded prompt's last token is not at the end of its row.

Greedy argmax per row: the tokens match each request run alone (tests/test_onnx_batch.py).
Each row scores its tokens on the same logits (`LogitSignals`, one scratch for all rows).
"""

from __future__ import annotations

import codecs
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from edgeprof.backends.base import Generation
from edgeprof.backends.batching import (
    BatchJob,
    BatchResult,
    forget_before,
    kv_cells_needed,
    window_shares,
)
from edgeprof.backends.signals import LogitSignals, SignalBuffers
from edgeprof.errors import UsageError


class OnnxModel(Protocol):
    """What the decoder needs of a loaded export (`OnnxBackend` is one): its session, KV
    input/output names and shapes, how to bind a prompt, its end-of-generation tokens and
    its vocabulary's pieces."""

    @property
    def session(self) -> Any: ...
    @property
    def io(self) -> Mapping[str, Any]: ...
    @property
    def eog(self) -> frozenset[int]: ...

    n_vocab: int
    kv_heads: int
    head_dim: int
    kv_dtype: Any

    def bind_prefill(self, binding: Any, tokens: list[int], mask: np.ndarray) -> None: ...
    def detokenize(self, token: int) -> bytes: ...


@dataclass
class _Row:
    job: BatchJob
    t_start_ns: int
    length: int = 0  # tokens in its KV cache; its next token goes at this position
    next_token: int = 0  # generated, not yet decoded
    n_out: int = 0
    finish: str = "running"  # then "stop" (end of generation) or "length"
    events: list[tuple[int, int]] = field(default_factory=list)
    pieces: list[str] = field(default_factory=list)
    decoder: Any = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace"))
    signals: LogitSignals | None = None


def kv_bytes_per_token(n_kv_tensors: int, kv_heads: int, head_dim: int, itemsize: int) -> int:
    """Bytes one position of one sequence takes in the KV cache (K and V of every layer)."""
    return n_kv_tensors * kv_heads * head_dim * itemsize


class OnnxBatchDecoder:
    """Serve jobs `n_seq` at a time on a loaded export's session."""

    def __init__(
        self, backend: OnnxModel, n_seq: int, ignore_eos: bool = False, signals: bool = True
    ) -> None:
        self.b, self.n_seq, self.ignore_eos = backend, n_seq, ignore_eos
        self.session = backend.session
        self.pasts: list[str] = backend.io["pasts"]
        self.presents: list[str] = backend.io["presents"]
        self.kv: dict[str, np.ndarray] = {}
        self.logits = np.empty((n_seq, 1, backend.n_vocab), dtype=np.float32)
        self.binding: Any = None
        self.bound_rows = 0
        self.pieces: dict[int, bytes] = {}
        self.buffers = SignalBuffers(backend.n_vocab) if signals else None

    def serve(self, jobs: Iterable[BatchJob]) -> Iterator[BatchResult]:
        """Results in the order requests finish."""
        queue = deque(jobs)
        max_len = max((len(j.tokens) + j.max_tokens for j in queue), default=0)
        self._allocate(max_len)
        rows: list[_Row] = []  # rows[i] holds KV row i
        spans: list[tuple[int, int]] = []  # (t_ns, requests active from then on)
        while queue or rows:
            while queue and len(rows) < self.n_seq:
                row = _Row(queue.popleft(), time.perf_counter_ns())
                if self.buffers is not None:
                    row.signals = LogitSignals(self.buffers)
                rows.append(row)
                spans.append((row.t_start_ns, len(rows)))
                self._join(row, len(rows) - 1)
                if row.finish != "running":  # EOG or max_tokens at its first token
                    yield self._leave(rows, len(rows) - 1, spans)
            if rows:
                self._step(rows)
            for i in sorted((i for i, r in enumerate(rows) if r.finish != "running"), reverse=True):
                yield self._leave(rows, i, spans)
            forget_before(spans, min((r.t_start_ns for r in rows), default=None))

    def _allocate(self, max_len: int) -> None:
        b = self.b
        shape = (self.n_seq, b.kv_heads, max_len, b.head_dim)
        if not self.kv or next(iter(self.kv.values())).shape != shape:
            # zeros: pages the OS maps on first write, so a long max_len costs what is used
            self.kv = {name: np.zeros(shape, dtype=b.kv_dtype) for name in self.pasts}
            self.bound_rows = 0

    # -- joining and leaving ----------------------------------------------------------------
    def _join(self, row: _Row, slot: int) -> None:
        """Prefill the row's prompt alone and copy its KV into row `slot`."""
        tokens = row.job.tokens
        binding = self.session.io_binding()
        self.b.bind_prefill(binding, tokens, np.ones((1, len(tokens)), dtype=np.int64))
        self.session.run_with_iobinding(binding)
        outs = binding.get_outputs()
        logits = outs[0].numpy()[0, -1]
        token = int(np.argmax(logits))
        t_ns = time.perf_counter_ns()
        n = len(tokens)
        for name, value in zip(self.pasts, outs[1:], strict=True):
            self.kv[name][slot, :, :n] = value.numpy()[0]
        row.length = n
        self._take(row, token, t_ns, logits)

    def _leave(self, rows: list[_Row], i: int, spans: list[tuple[int, int]]) -> BatchResult:
        """Free row i: the last row moves into it, so the active rows stay 0..n-1."""
        row, last = rows[i], len(rows) - 1
        if i != last:
            moved = rows[last]
            for buf in self.kv.values():
                buf[i, :, : moved.length] = buf[last, :, : moved.length]
            rows[i] = moved
        rows.pop()
        t_end = time.perf_counter_ns()
        spans.append((t_end, len(rows)))
        gen = Generation(
            input_tokens=len(row.job.tokens),
            output_tokens=row.n_out,
            text="".join(row.pieces) + row.decoder.decode(b"", final=True),
            finish_reason=row.finish,
            signals=row.signals.result() if row.signals is not None else None,
        )
        return BatchResult(row.job.key, row.t_start_ns, t_end, row.events, gen,
                           window_shares(spans, row.t_start_ns, t_end))  # fmt: skip

    # -- one step -----------------------------------------------------------------------------
    def _step(self, rows: list[_Row]) -> None:
        """One session call: the next token of every row, each at its own position."""
        n = len(rows)
        binding = self._bind_rows(n)
        lengths = np.fromiter((r.length for r in rows), dtype=np.int64, count=n)
        ids = np.fromiter((r.next_token for r in rows), dtype=np.int64, count=n)[:, None]
        # right padding: row i attends to its own length + 1 positions (GQA's seqlens_k)
        mask = (np.arange(int(lengths.max()) + 1)[None] <= lengths[:, None]).astype(np.int64)
        positions = lengths[:, None].copy()
        binding.bind_cpu_input("input_ids", ids)
        binding.bind_cpu_input("position_ids", positions)
        binding.bind_cpu_input("attention_mask", mask)
        self.session.run_with_iobinding(binding)
        t_ns = time.perf_counter_ns()
        tokens = self.logits[:n, 0].argmax(axis=-1)
        for i, (row, token) in enumerate(zip(rows, tokens, strict=True)):
            row.length += 1
            self._take(row, int(token), t_ns, self.logits[i, 0])

    def _bind_rows(self, n: int) -> Any:
        """Bind the first n rows of every KV buffer as past and present (the same memory)."""
        if self.binding is not None and self.bound_rows == n:
            return self.binding
        binding = self.session.io_binding()
        for past, present in zip(self.pasts, self.presents, strict=True):
            buf = self.kv[past]
            shape = [n, *buf.shape[1:]]
            binding.bind_input(past, "cpu", 0, buf.dtype, shape, buf.ctypes.data)
            binding.bind_output(present, "cpu", 0, buf.dtype, shape, buf.ctypes.data)
        binding.bind_output(
            "logits", "cpu", 0, np.float32, [n, *self.logits.shape[1:]], self.logits.ctypes.data
        )
        self.binding, self.bound_rows = binding, n
        return binding

    def _take(self, row: _Row, token: int, t_ns: int, logits: np.ndarray) -> None:
        if not self.ignore_eos and token in self.b.eog:
            row.finish = "stop"
            return
        row.n_out += 1
        if row.signals is not None:
            row.signals.add(logits, token)
        piece = self.pieces.get(token)
        if piece is None:
            piece = self.pieces[token] = self.b.detokenize(token)
        row.pieces.append(row.decoder.decode(piece))
        row.events.append((t_ns, 1))
        if row.n_out >= row.job.max_tokens:
            row.finish = "length"
            return
        row.next_token = token


def check_rows_fit(jobs: list[BatchJob], n_seq: int, ctx: int, max_positions: int) -> int:
    """KV cells `n_seq` rows of these jobs take (each as long as the longest request, since
    any row may get it); a `UsageError` naming the fix when they exceed `ctx` or a request
    exceeds the export's positions."""

    cells = kv_cells_needed(jobs, n_seq)
    longest = cells // max(n_seq, 1)
    if longest > max_positions:
        raise UsageError(
            f"a request needs {longest:,} positions (prompt + `max_tokens`), more than the "
            f"export's {max_positions:,}; lower `max_tokens` or shorten the prompts"
        )
    if cells > ctx:
        raise UsageError(
            f"`concurrency` {n_seq} needs {cells:,} KV cells ({n_seq} sequences of {longest:,}: "
            f"the longest request, prompt + `max_tokens`), more than `ctx` {ctx:,}; raise "
            f"`ctx` to {cells} or lower `concurrency`"
        )
    return cells
