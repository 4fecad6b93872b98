"""Continuous batching on one llama.cpp context: N requests decoded together.

Decode is memory-bound: one `llama_decode` that advances N sequences by a token each reads the
weights once, so it costs little more than advancing one. This is how llama.cpp's own server
serves parallel requests, and what a device serving a feature would do; N threads each calling
a single-sequence decoder would fight over one context instead.

One context with `n_seq_max` = N sequences, each with its own stream of n_ctx / N KV cells.
Each step builds one batch: the next token of every decoding sequence, then as
much of waiting prompts as the batch has room for (logits only for a prompt's last token). A
finished sequence frees its cells and slot, and the next request joins at once (closed loop, as
llmperf keeps N in flight). Greedy argmax per sequence, as `_Decoder` does: the tokens match
the same requests run alone (tests/test_llama_batch.py checks it on the demo model). Each
sequence scores its tokens on the same logits (`LogitSignals`, one scratch for all).
"""

from __future__ import annotations

import codecs
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from edgeprof.backends.base import Generation
from edgeprof.backends.batching import BatchJob, BatchResult, forget_before, window_shares
from edgeprof.backends.signals import LogitSignals, SignalBuffers
from edgeprof.errors import UsageError


@dataclass
class _Seq:
    job: BatchJob
    seq_id: int
    t_start_ns: int
    fed: int = 0  # prompt tokens already in the batch or the cache
    n_past: int = 0  # the next position
    cached: int = 0  # prompt tokens copied from the shared prefix, not computed again
    next_token: int | None = None  # generated, not yet decoded
    logits_at: int = -1  # its row in the current batch's logits
    n_out: int = 0
    finish: str = "running"  # then "stop" (end of generation) or "length"
    events: list[tuple[int, int]] = field(default_factory=list)
    pieces: list[str] = field(default_factory=list)
    decoder: Any = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace"))
    signals: LogitSignals | None = None


def token_piece(llm: Any, cache: dict[int, bytes], token: int) -> bytes:
    """A token's bytes, detokenized once per token id (the decode loops' hot path)."""
    piece = cache.get(token)
    if piece is None:
        piece = cache[token] = llm.detokenize([token])
    return piece


def check_batch_room(concurrency: int, n_batch: int) -> None:
    """Every decode step puts one token of each running sequence into one llama_batch of
    `n_batch` slots."""
    if concurrency > n_batch:
        raise UsageError(
            f"`concurrency` {concurrency} needs a batch of at least {concurrency} tokens, more "
            f"than `n_batch` {n_batch}; raise `n_batch` (--set n_batch={concurrency}) or lower "
            "`concurrency`"
        )


class BatchDecoder:
    """Serve jobs `n_seq` at a time on a context of its own (freed by `close`)."""

    def __init__(
        self,
        llm: Any,
        n_seq: int,
        n_ctx: int,
        ignore_eos: bool = False,
        share_prefix: bool = False,
        signals: bool = True,
    ) -> None:
        """`share_prefix`: the jobs' common leading tokens (a shared system prompt) are
        prefilled once, in a stream of their own, and copied to each request's stream as it
        starts; each request then reads only the rest of its prompt. `signals`: score each
        answer's tokens on their logits (backends/signals.py)."""
        import llama_cpp
        import numpy as np

        self.lc, self.np = llama_cpp, np
        self.llm, self.n_seq, self.ignore_eos = llm, n_seq, ignore_eos
        self.share_prefix = share_prefix
        self.n_streams = n_seq + (1 if share_prefix else 0)  # the prefix has a stream of its own
        params = llama_cpp.llama_context_default_params()
        base = llm.context_params
        for name, _ in params._fields_:  # the loaded context's settings, then ours
            setattr(params, name, getattr(base, name))
        params.n_ctx = n_ctx
        params.n_seq_max = self.n_streams
        # A stream of n_ctx / n_seq cells per sequence. A unified pool would let short and long
        # requests share cells, but a sequence's attention would then run over a cell layout
        # set by the other requests, and its greedy tokens would change with what it was
        # batched with (measured: 3 of 4 demo prompts diverge within 24 tokens).
        params.kv_unified = False
        self.n_batch = int(params.n_batch)
        # a decode step holds one token of every sequence: the batch must have room for all
        check_batch_room(n_seq, self.n_batch)
        self.ctx = llama_cpp.llama_init_from_model(llm._model.model, params)
        if not self.ctx:
            raise UsageError(
                f"llama.cpp could not make a context of {n_ctx} tokens for {n_seq} sequences "
                "(out of memory?); lower `concurrency` or `ctx`"
            )
        self.n_ctx = int(llama_cpp.llama_n_ctx(self.ctx))
        self.mem = llama_cpp.llama_get_memory(self.ctx)
        self.vocab = llm._model.vocab
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self.vocab))
        self.batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        self.pieces: dict[int, bytes] = {}
        self.buffers = SignalBuffers(self.n_vocab) if signals else None

    def close(self) -> None:
        if self.batch is not None:
            self.lc.llama_batch_free(self.batch)
            self.batch = None
        if self.ctx:
            self.lc.llama_free(self.ctx)
            self.ctx = None

    def serve(self, jobs: Iterable[BatchJob]) -> Iterator[BatchResult]:
        """Results in the order requests finish."""
        queue = deque(jobs)
        need = max((len(j.tokens) + j.max_tokens for j in queue), default=0)
        per_seq = self.n_ctx // self.n_streams
        if need > per_seq:
            raise UsageError(
                f"a request needs {need} KV cells, more than the {per_seq} each of "
                f"{self.n_streams} sequences gets from `ctx` {self.n_ctx}; raise `ctx`"
            )
        self.lc.llama_memory_clear(self.mem, True)
        prefix = self._prefill_prefix(list(queue)) if self.share_prefix else 0
        free = list(range(self.n_seq - 1, -1, -1))
        active: list[_Seq] = []
        spans: list[tuple[int, int]] = []  # (t_ns, sequences active from then on)
        while queue or active:
            while queue and free:
                seq = _Seq(queue.popleft(), free.pop(), time.perf_counter_ns())
                if self.buffers is not None:
                    seq.signals = LogitSignals(self.buffers)
                if prefix:  # a copy of the prefix's stream: its cells, not its computation
                    self.lc.llama_memory_seq_cp(self.mem, self.n_seq, seq.seq_id, -1, -1)
                    seq.fed = seq.n_past = seq.cached = prefix
                active.append(seq)
                spans.append((seq.t_start_ns, len(active)))
            self._step(active)
            for s in [s for s in active if s.finish != "running"]:
                active.remove(s)
                self.lc.llama_memory_seq_rm(self.mem, s.seq_id, -1, -1)
                free.append(s.seq_id)
                t_end = time.perf_counter_ns()
                spans.append((t_end, len(active)))
                yield self._result(s, t_end, spans)
            forget_before(spans, min((s.t_start_ns for s in active), default=None))

    def _prefill_prefix(self, jobs: list[BatchJob]) -> int:
        """Decode the tokens every job starts with into the prefix's stream (sequence n_seq),
        before any request's window opens; return their count. At least one token of each
        prompt is left to read, so that every request computes its own first logits."""
        if not jobs:
            return 0
        first = jobs[0].tokens
        common = min(len(j.tokens) for j in jobs) - 1
        for job in jobs[1:]:
            common = next((k for k in range(common) if job.tokens[k] != first[k]), common)
        for start in range(0, max(common, 0), self.n_batch):
            n = 0
            for i in range(start, min(start + self.n_batch, common)):
                n = self._add(n, first[i], i, self.n_seq, False)
            self.batch.n_tokens = n
            if self.lc.llama_decode(self.ctx, self.batch) != 0:
                raise RuntimeError("llama_decode failed on the shared prefix")
        return max(common, 0)

    # -- one step -----------------------------------------------------------------------
    def _step(self, active: list[_Seq]) -> None:
        b, n = self.batch, 0
        for s in active:
            s.logits_at = -1
            if s.next_token is not None:  # decoding: its last token, one position on
                n = self._add(n, s.next_token, s.n_past, s.seq_id, True)
                s.logits_at, s.n_past, s.next_token = n - 1, s.n_past + 1, None
        for s in active:  # prefill whatever room is left, oldest request first
            todo = len(s.job.tokens) - s.fed
            if todo <= 0 or n >= self.n_batch:
                continue
            take = min(todo, self.n_batch - n)
            for i in range(take):
                last = s.fed + i == len(s.job.tokens) - 1
                n = self._add(n, s.job.tokens[s.fed + i], s.n_past + i, s.seq_id, last)
            s.fed += take
            s.n_past += take
            if s.fed == len(s.job.tokens):
                s.logits_at = n - 1
        b.n_tokens = n
        rc = self.lc.llama_decode(self.ctx, b)
        if rc != 0:  # 1: no room in the KV cache for the batch
            raise RuntimeError(
                f"llama_decode failed ({rc}) with {len(active)} sequences; raise `ctx` or lower "
                "`concurrency`"
            )
        t_ns = time.perf_counter_ns()
        for s in active:
            if s.logits_at >= 0:  # else it is still reading its prompt
                logits = self._logits(s.logits_at)
                self._take(s, int(logits.argmax()), t_ns, logits)

    def _add(self, n: int, token: int, pos: int, seq_id: int, logits: bool) -> int:
        b = self.batch
        b.token[n] = token
        b.pos[n] = pos
        b.n_seq_id[n] = 1
        b.seq_id[n][0] = seq_id
        b.logits[n] = logits
        return n + 1

    def _take(self, s: _Seq, token: int, t_ns: int, logits: Any) -> None:
        if not self.ignore_eos and self.lc.llama_vocab_is_eog(self.vocab, token):
            s.finish = "stop"
            return
        s.n_out += 1
        if s.signals is not None:
            s.signals.add(logits, token)
        s.pieces.append(s.decoder.decode(self._piece(token)))
        s.events.append((t_ns, 1))
        if s.n_out >= s.job.max_tokens:
            s.finish = "length"
            return
        s.next_token = token

    def _logits(self, row: int) -> Any:
        """The logits of the batch's token `row`, a view valid until the next decode."""
        ptr = self.lc.llama_get_logits_ith(self.ctx, row)
        return self.np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))

    def _piece(self, token: int) -> bytes:
        return token_piece(self.llm, self.pieces, token)

    def _result(self, s: _Seq, t_end_ns: int, spans: list[tuple[int, int]]) -> BatchResult:
        shares = window_shares(spans, s.t_start_ns, t_end_ns)
        gen = Generation(
            input_tokens=len(s.job.tokens),
            output_tokens=s.n_out,
            text="".join(s.pieces) + s.decoder.decode(b"", final=True),
            finish_reason=s.finish,
            cached_input_tokens=s.cached,
            signals=s.signals.result() if s.signals is not None else None,
        )
        return BatchResult(s.job.key, s.t_start_ns, t_end_ns, s.events, gen, shares)
