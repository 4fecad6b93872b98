"""llama.cpp through llama-cpp-python: the on-device reference backend."""

from __future__ import annotations

import codecs
import contextlib
import io
import os
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from edgeprof.backends.base import (
    Backend,
    BackendOptions,
    Generation,
    ModelInfo,
    Request,
    TokenEvent,
)
from edgeprof.backends.llama_batch import token_piece
from edgeprof.backends.signals import LogitSignals, SignalBuffers
from edgeprof.errors import ModelLoadError, UsageError
from edgeprof.models.files import check_gguf, resolve_model
from edgeprof.models.gguf_header import FILE_TYPE_KEY, quant_name
from edgeprof.models.prompt_format import PromptFormat
from edgeprof.models.tokens import model_format, prompt_given, prompt_tokens

if TYPE_CHECKING:
    from llama_cpp import Llama

# general.file_type values (llama.cpp's llama_ftype) for the quantizations people actually use.


def import_llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError as e:
        raise ModelLoadError(import_failure("llama_cpp", "llama-cpp-python", e)) from e
    except (OSError, RuntimeError) as e:  # libllama itself would not load (a missing .so)
        raise ModelLoadError(
            f"llama-cpp-python is installed but its native library would not load ({e}); "
            "reinstall it (`pip install --force-reinstall --no-cache-dir llama-cpp-python`)"
        ) from e
    return llama_cpp


def import_failure(module: str, package: str, e: ImportError) -> str:
    """What an ImportError of a backend's library means: the package itself missing, or
    something it needs (llama-cpp-python without `diskcache`), named with its fix."""
    if e.name == module or (e.name is None and f"'{module}'" in str(e)):
        return (
            f"{package} is not installed; run `pip install {package}`"
            + (" (it compiles llama.cpp, about 10 minutes on 2 cores)" if module == "llama_cpp"
               else "")
        )  # fmt: skip
    missing = f"`pip install {e.name}`, or reinstall {package} with its dependencies"
    return (
        f"{package} is installed but could not be imported: {e}; "
        f"{missing if e.name else f'reinstall {package}'}"
    )


SPLIT_MODES = ("none", "layer", "row")  # llama_cpp.LLAMA_SPLIT_MODE_<NAME>


@dataclass(frozen=True)
class LlamaCppSettings:
    """llama.cpp's own settings. `n_gpu_layers` is a layer count or "all"; "auto" (the default)
    becomes "all" where the installed llama.cpp can offload to a GPU and 0 where it cannot,
    here, when the settings are made, so that a run records, and `decide` compares, the value
    actually used. -1, llama.cpp's own spelling of all, is recorded as "all"."""

    n_batch: int = 512
    n_ubatch: int = 512  # llama-cpp-python uses min(n_batch, n_ubatch)
    n_gpu_layers: int | str = "auto"
    split_mode: str = "layer"
    main_gpu: int = 0
    flash_attn: bool = False
    # Benchmarks only: generate exactly max_tokens even past end-of-generation tokens, so
    # every repetition decodes the same number of tokens (as llama-bench's tg test does).
    ignore_eos: bool = False
    # The prompt format (edgeprof.models.prompt_format): a llama.cpp built-in template's name
    # or a Jinja file, instead of the GGUF's own template or the one chosen for its family;
    # `raw`: no template at all, for base models. Both part of what makes runs comparable.
    chat_template: str | None = None
    raw: bool = False
    # How sure the model was of each answer (backends/signals.py), read from the logits of
    # every step: 60-70 us a token in the decode loop, under 1 % of a 1-thread decode step of
    # the demo model here; more with a larger vocabulary (Gemma 3's 262k: ~290 us, 2 %) or a
    # shorter step (more threads, a GPU; docs/benchmarks.md). Off: the request rows' signal
    # columns stay NULL.
    signals: bool = True

    def __post_init__(self) -> None:
        from edgeprof.models.chat import check_prompt_settings

        check_prompt_settings(self.chat_template, self.raw, "llamacpp")
        for name in ("n_batch", "n_ubatch"):
            if getattr(self, name) < 1:
                raise UsageError(
                    f"llamacpp: `{name}` must be at least 1, got {getattr(self, name)}"
                )
        if self.split_mode not in SPLIT_MODES:
            raise UsageError(
                f"llamacpp: `split_mode` must be none, layer or row, got {self.split_mode!r}"
            )
        if self.main_gpu < 0:
            raise UsageError(
                f"llamacpp: `main_gpu` must be a device index, 0 or more, got {self.main_gpu}"
            )
        object.__setattr__(self, "n_gpu_layers", _gpu_layers(self.n_gpu_layers))


def _gpu_layers(value: int | str) -> int | str:
    """A checked `n_gpu_layers`, with "auto" resolved for the installed llama.cpp."""
    from edgeprof.backends.llama_build import gpu_offload_supported, resolve_gpu_layers

    text = str(value).strip().lower()
    if text == "auto":
        return resolve_gpu_layers("auto", gpu_offload_supported())
    if text in ("all", "-1"):
        return "all"
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise UsageError(
        f'llamacpp: `n_gpu_layers` must be "all" or a number of layers, 0 or more, got {value!r}'
    )


class LlamaCppBackend(Backend):
    name: ClassVar[str] = "llamacpp"
    Settings: ClassVar[type[LlamaCppSettings]] = LlamaCppSettings
    isolated: ClassVar[bool] = True
    native_modules: ClassVar[tuple[str, ...]] = ("llama_cpp",)
    engine: ClassVar[str] = "llama.cpp"

    def __init__(self, options: BackendOptions, settings: LlamaCppSettings | None = None) -> None:
        super().__init__(options, settings)
        self.settings: LlamaCppSettings
        options.check_local()
        self.path: Path = resolve_model(options.model)
        check_gguf(self.path)
        self.threads = options.threads or max(1, (os.cpu_count() or 1))
        self._llm: Llama | None = None
        self._dec: _Decoder | None = None
        self._fmt: PromptFormat | None = None

    def load(self) -> ModelInfo:
        llama_cpp = import_llama_cpp()
        settings = self.settings
        try:
            # llama.cpp prints its load log on the C side; verbose=False silences it.
            with contextlib.redirect_stderr(io.StringIO()):
                self._llm = llama_cpp.Llama(
                    model_path=str(self.path),
                    n_ctx=self.options.ctx,
                    n_threads=self.threads,
                    n_threads_batch=self.threads,
                    n_batch=settings.n_batch,
                    n_ubatch=settings.n_ubatch,
                    # llama-cpp-python's "all" is -1
                    n_gpu_layers=-1 if settings.n_gpu_layers == "all" else settings.n_gpu_layers,
                    split_mode=getattr(
                        llama_cpp, f"LLAMA_SPLIT_MODE_{settings.split_mode.upper()}"
                    ),
                    main_gpu=settings.main_gpu,
                    flash_attn=settings.flash_attn,
                    seed=self.options.seed,
                    verbose=False,
                )
        except (ValueError, RuntimeError) as e:
            raise ModelLoadError(
                f"llama.cpp could not load {self.path} ({e}); check that the file is complete "
                "and its architecture is supported by this llama-cpp-python"
            ) from e
        llm = self._llm
        meta = llm.metadata
        self._fmt = model_format(llm, **prompt_given(settings))
        quant = quant_name(meta.get(FILE_TYPE_KEY))
        return ModelInfo(
            target=self.path.name,
            path=str(self.path),
            sha256=None,  # hashed by the runner after the load window, not inside it
            quant=quant,
            size_bytes=self.path.stat().st_size,
            arch=meta.get("general.architecture"),
            n_params=int(llm._model.n_params()),
            extra={
                "llama_cpp_python": llama_cpp.__version__,
                "chat_template": self.fmt.label,
                "prompt_format": self.fmt.record(),
                "n_ctx": llm.n_ctx(),
                "n_ubatch": llm.context_params.n_ubatch,  # as used: at most n_batch
                "provenance": self._provenance(llama_cpp, llm),
            },
        )

    def _provenance(self, llama_cpp: Any, llm: Llama) -> dict[str, Any]:
        from edgeprof.backends.llama_build import provenance

        s = self.settings
        n_layer = int(llama_cpp.llama_model_n_layer(llm._model.model))
        return provenance(s.n_gpu_layers, n_layer, s.split_mode, s.main_gpu)

    def params(self) -> dict[str, Any]:
        return {
            "threads": self.threads,
            "ctx": self.options.ctx,
            "seed": self.options.seed,
            "keep_cache": self.options.keep_cache,
            "n_batch": self.settings.n_batch,
            "n_gpu_layers": self.settings.n_gpu_layers,
            "flash_attn": self.settings.flash_attn,
            **({"ignore_eos": True} if self.settings.ignore_eos else {}),
        }

    @property
    def fmt(self) -> PromptFormat:
        """The prompt format chosen at load (edgeprof.models.prompt_format)."""
        if self._fmt is None:
            raise RuntimeError("load() first")
        return self._fmt

    @property
    def llm(self) -> Llama:
        if self._llm is None:
            raise RuntimeError("load() first")
        return self._llm

    def generate(self, request: Request) -> Generator[TokenEvent, None, Generation]:
        llm = self.llm
        tokens = prompt_tokens(llm, request.messages, self.fmt)
        if len(tokens) + request.max_tokens > llm.n_ctx():
            given = self.options.ctx
            # llama.cpp silently raises a tiny context to its minimum: name both numbers.
            ctx = f"`ctx` {given}" + (
                f" (llama.cpp used {llm.n_ctx()})" if llm.n_ctx() != given else ""
            )
            raise UsageError(
                f"prompt {request.prompt_id} needs {len(tokens)} + {request.max_tokens} tokens, "
                f"more than {ctx}; raise `ctx`"
            )
        if request.response_schema is not None:
            return (yield from self._constrained(request))
        return (yield from self._decoder().run(tokens, request.max_tokens))

    def _constrained(self, request: Request) -> Generator[TokenEvent, None, Generation]:
        """An answer held to a JSON Schema (a judge's verdict) by llama.cpp's grammar
        sampling, through llama-cpp-python's chat completion: greedy, as every request. No
        signals: the binding's loop does not show the logits (logprobs need a context that
        keeps every position's, `logits_all`)."""
        import json

        chunks = self.llm.create_chat_completion(
            messages=[dict(m) for m in request.messages],  # type: ignore[misc]
            max_tokens=request.max_tokens,
            temperature=0.0,
            seed=request.seed,
            stream=True,
            response_format={
                "type": "json_object",
                "schema": json.loads(json.dumps(request.response_schema)),
            },
        )
        text: list[str] = []
        n_out, finish = 0, None
        for chunk in chunks:
            choice: Any = chunk["choices"][0]  # type: ignore[index]
            piece = str(choice.get("delta", {}).get("content") or "")
            finish = choice.get("finish_reason") or finish
            if piece:
                n_out += 1
                text.append(piece)
                yield TokenEvent(time.perf_counter_ns(), piece)
        n_in = len(prompt_tokens(self.llm, request.messages, self.fmt))
        return Generation(n_in, n_out, "".join(text), finish_reason=finish or "stop")

    batches: ClassVar[bool] = True

    def check_concurrency(self, requests: Sequence[Request], concurrency: int) -> dict[str, Any]:
        """The KV cache `concurrency` sequences of these requests need at once, against `ctx`,
        from the vocabulary alone (milliseconds; nothing is loaded yet)."""
        from edgeprof.backends.batching import batch_jobs, kv_cells_needed
        from edgeprof.backends.llama_batch import check_batch_room

        check_batch_room(concurrency, self.settings.n_batch)
        jobs = batch_jobs(self.path, requests, prompt_given(self.settings))
        # with --keep-cache the shared prefix has a stream of its own
        streams = concurrency + (1 if self.options.keep_cache else 0)
        cells = kv_cells_needed(jobs, streams)
        ctx = self.options.ctx
        if cells > ctx:
            raise UsageError(
                f"`concurrency` {concurrency} needs {cells:,} KV cells ({streams} sequences "
                f"of {cells // streams:,}: the longest request, prompt + `max_tokens`), more "
                f"than `ctx` {ctx:,}; raise `ctx` to {cells} or lower `concurrency`"
            )
        per_cell = kv_bytes_per_cell(self.path)
        return {"kv_cache": {"sequences": concurrency, "cells": ctx, "cells_needed": cells,
                             "bytes": per_cell * ctx if per_cell else None}}  # fmt: skip

    def serve(self, requests: Sequence[Request], concurrency: int) -> Iterator[Any]:
        from edgeprof.backends.batching import BatchJob
        from edgeprof.backends.llama_batch import BatchDecoder

        llm = self.llm
        jobs = [BatchJob(r, prompt_tokens(llm, r.messages, self.fmt), r.max_tokens)
                for r in requests]  # fmt: skip
        batch = BatchDecoder(llm, concurrency, self.options.ctx, self.settings.ignore_eos,
                             share_prefix=self.options.keep_cache,
                             signals=self.settings.signals)  # fmt: skip
        try:
            for result in batch.serve(jobs):
                yield result.key, result
        finally:
            batch.close()

    def _decoder(self) -> _Decoder:
        if self._dec is None:
            s = self.settings
            self._dec = _Decoder(self.llm, self.options.keep_cache, s.ignore_eos, s.signals)
        return self._dec

    def close(self) -> None:
        self._dec = None
        if self._llm is not None:
            self._llm.close()
            self._llm = None


def kv_bytes_per_cell(path: Path) -> int | None:
    """Bytes one KV cell takes (K and V of every layer, f16, llama.cpp's default cache type),
    from the GGUF's header; None when the header does not say."""
    from edgeprof.models.gguf_header import read_gguf_header

    meta = read_gguf_header(path).metadata
    arch = meta.get("general.architecture")
    n_layer = meta.get(f"{arch}.block_count")
    n_head = meta.get(f"{arch}.attention.head_count")
    n_kv = meta.get(f"{arch}.attention.head_count_kv", n_head)
    n_embd = meta.get(f"{arch}.embedding_length")
    if not (n_layer and n_head and n_kv and n_embd):
        return None
    k_len = meta.get(f"{arch}.attention.key_length", n_embd // n_head)
    v_len = meta.get(f"{arch}.attention.value_length", n_embd // n_head)
    return int(n_layer) * int(n_kv) * (int(k_len) + int(v_len)) * 2


class _Decoder:
    """The token loop on llama.cpp's C API, without llama-cpp-python's Python-level generate.

    `Llama.generate` re-fills a llama_batch in Python, trims the KV cache, copies token ids into
    numpy and runs a sampler chain on every token; here a decode step is one `llama_decode` of a
    one-token batch and an argmax over the logits, so the profiler measures llama.cpp rather
    than the binding (see docs/benchmarks.md). Greedy is argmax with the first maximum winning,
    as llama.cpp's greedy sampler picks it, so the tokens are the same as before. With
    `signals`, each answer's token is also scored on the same logits (`LogitSignals`).
    """

    def __init__(self, llm: Llama, keep_cache: bool, ignore_eos: bool, signals: bool) -> None:
        import ctypes

        import numpy as np

        self.llama_cpp = import_llama_cpp()
        self.ctypes, self.np = ctypes, np
        self.llm, self.keep_cache, self.ignore_eos = llm, keep_cache, ignore_eos
        self.ctx = llm._ctx.ctx
        self.vocab = llm._model.vocab
        self.n_vocab = int(self.llama_cpp.llama_vocab_n_tokens(self.vocab))
        self.n_batch = llm.n_batch
        self.cached: list[int] = []  # token ids whose K/V sit in sequence 0, in order
        self.pieces: dict[int, bytes] = {}
        self.logits_at: tuple[int, Any] = (0, None)  # (address, numpy view) of the last logits
        self.buffers = SignalBuffers(self.n_vocab) if signals else None

    def run(self, tokens: list[int], max_tokens: int) -> Generator[TokenEvent, None, Generation]:
        lc = self.llama_cpp
        # llama-cpp-python keeps its own view of the KV cache; this loop bypasses it, so make
        # its next generate() start afresh rather than trust a prefix it did not write.
        self.llm.reset()
        mem = lc.llama_get_memory(self.ctx)
        keep = 0
        if self.keep_cache:
            for a, b in zip(self.cached, tokens, strict=False):
                if a != b:
                    break
                keep += 1
            keep = min(keep, len(tokens) - 1)  # re-decode at least one token: its logits
        if keep > 0:
            lc.llama_memory_seq_rm(mem, 0, keep, -1)
        else:
            # Without --keep-cache every request starts empty: a repeated prompt must pay its
            # prefill again, or its TTFT would measure the cache, not the device.
            lc.llama_memory_clear(mem, True)
        self.cached = tokens[:keep]
        self._decode(tokens[keep:])

        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pieces: list[str] = []
        n_out, finish = 0, "length"
        step = (lc.llama_token * 1)()
        is_eog, ignore_eos = lc.llama_vocab_is_eog, self.ignore_eos
        signals = LogitSignals(self.buffers) if self.buffers is not None else None
        while True:
            token = self._argmax()
            t_ns = time.perf_counter_ns()
            if not ignore_eos and is_eog(self.vocab, token):
                finish = "stop"
                break
            n_out += 1
            if signals is not None:  # the view `_argmax` read, valid until the next decode
                signals.add(self.logits_at[1], token)
            text = decoder.decode(self._piece(token))
            pieces.append(text)
            yield TokenEvent(t_ns=t_ns, text=text)
            if n_out >= max_tokens:
                break
            step[0] = token
            self._check(lc.llama_decode(self.ctx, lc.llama_batch_get_one(step, 1)))
            self.cached.append(token)
        return Generation(
            input_tokens=len(tokens),
            output_tokens=n_out,
            text="".join(pieces) + decoder.decode(b"", final=True),
            finish_reason=finish,
            cached_input_tokens=keep,
            signals=signals.result() if signals is not None else None,
        )

    def _decode(self, tokens: list[int]) -> None:
        lc = self.llama_cpp
        for i in range(0, len(tokens), self.n_batch):
            chunk = tokens[i : i + self.n_batch]
            arr = (lc.llama_token * len(chunk))(*chunk)
            # llama_batch_get_one: positions follow the cache, logits only for the last token.
            self._check(lc.llama_decode(self.ctx, lc.llama_batch_get_one(arr, len(chunk))))
            self.cached.extend(chunk)

    def _check(self, rc: int) -> None:
        if rc != 0:
            self.cached = []  # the cache's contents are unknown now: never reuse them
            raise RuntimeError(f"llama_decode failed ({rc})")

    def _argmax(self) -> int:
        ptr = self.llama_cpp.llama_get_logits_ith(self.ctx, -1)
        address = self.ctypes.cast(ptr, self.ctypes.c_void_p).value or 0
        if address != self.logits_at[0]:
            view = self.np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))
            self.logits_at = (address, view)
        return int(self.logits_at[1].argmax())

    def _piece(self, token: int) -> bytes:
        return token_piece(self.llm, self.pieces, token)
