"""llama.cpp through llama-cpp-python: the on-device reference backend."""

from __future__ import annotations

import codecs
import contextlib
import io
import os
import time
from collections.abc import Generator, Mapping, Sequence
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
from edgeprof.chat import render_chat
from edgeprof.errors import ModelLoadError, UsageError
from edgeprof.models import check_gguf, resolve_model

if TYPE_CHECKING:
    from llama_cpp import Llama

# general.file_type values (llama.cpp's llama_ftype) for the quantizations people actually use.
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1",
    10: "Q2_K", 11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M",
    16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 30: "IQ4_XS",
    32: "BF16",
}  # fmt: skip


def import_llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ModelLoadError(
            "llama-cpp-python is not installed; run `pip install llama-cpp-python` "
            "(it compiles llama.cpp, about 10 minutes on 2 cores)"
        ) from e
    return llama_cpp


def token_text(llm: Llama, token: int) -> str:
    return (
        llm.detokenize([token], special=True).decode("utf-8", errors="replace")
        if token >= 0
        else ""
    )


def prompt_tokens(llm: Llama, messages: Sequence[Mapping[str, str]]) -> list[int]:
    """The GGUF's chat template, rendered and tokenized the way llama-cpp-python's chat API does.

    The template writes its own special tokens, so no BOS is added on top (llama-cpp-python's
    `added_special=True`). The ONNX backend calls this too, so counts match across runtimes.
    """
    template = llm.metadata.get("tokenizer.chat_template")
    text = render_chat(
        template,
        messages,
        bos_token=token_text(llm, llm.token_bos()),
        eos_token=token_text(llm, llm.token_eos()),
    )
    return llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)


class LlamaCppBackend(Backend):
    name: ClassVar[str] = "llamacpp"

    def __init__(self, options: BackendOptions) -> None:
        super().__init__(options)
        if options.threads is not None and options.threads < 1:
            raise UsageError("--threads must be at least 1")
        if options.ctx < 16:
            raise UsageError("--ctx must be at least 16 tokens")
        unknown = set(options.extra) - {"n_batch", "n_gpu_layers", "flash_attn"}
        if unknown:
            raise UsageError(f"llamacpp does not take {', '.join(sorted(unknown))}")
        self.path: Path = resolve_model(options.model)
        check_gguf(self.path)
        self.threads = options.threads or max(1, (os.cpu_count() or 1))
        self._llm: Llama | None = None

    def load(self) -> ModelInfo:
        llama_cpp = import_llama_cpp()
        extra = self.options.extra
        try:
            # llama.cpp prints its load log on the C side; verbose=False silences it.
            with contextlib.redirect_stderr(io.StringIO()):
                self._llm = llama_cpp.Llama(
                    model_path=str(self.path),
                    n_ctx=self.options.ctx,
                    n_threads=self.threads,
                    n_threads_batch=self.threads,
                    n_batch=int(extra.get("n_batch", 512)),
                    n_gpu_layers=int(extra.get("n_gpu_layers", 0)),
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
        file_type = meta.get("general.file_type")
        quant = FILE_TYPES.get(int(file_type), f"ftype {file_type}") if file_type else None
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
                "chat_template": "gguf"
                if meta.get("tokenizer.chat_template")
                else "chatml-fallback",
                "n_ctx": llm.n_ctx(),
            },
        )

    def params(self) -> dict[str, Any]:
        return {
            "threads": self.threads,
            "ctx": self.options.ctx,
            "seed": self.options.seed,
            "keep_cache": self.options.keep_cache,
            "n_batch": int(self.options.extra.get("n_batch", 512)),
        }

    @property
    def llm(self) -> Llama:
        if self._llm is None:
            raise RuntimeError("load() first")
        return self._llm

    def generate(self, request: Request) -> Generator[TokenEvent, None, Generation]:
        llm = self.llm
        llama_cpp = import_llama_cpp()
        tokens = prompt_tokens(llm, request.messages)
        if len(tokens) + request.max_tokens > llm.n_ctx():
            raise UsageError(
                f"prompt {request.prompt_id} needs {len(tokens)} + {request.max_tokens} tokens, "
                f"more than --ctx {llm.n_ctx()}; raise --ctx"
            )
        if not self.options.keep_cache:
            # llama-cpp-python reuses a matching prompt prefix from the KV cache; a repeated
            # prompt would then skip prefill and its TTFT collapse. Start every request empty.
            llm.reset()
            llm._ctx.kv_cache_clear()
        vocab = llm._model.vocab
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pieces: list[str] = []
        n_out = 0
        finish = "length"
        for token in llm.generate(
            tokens, top_k=1, top_p=1.0, min_p=0.0, temp=request.temperature,
            repeat_penalty=1.0, reset=True,
        ):  # fmt: skip
            t_ns = time.perf_counter_ns()
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                finish = "stop"
                break
            n_out += 1
            text = decoder.decode(llm.detokenize([token]))
            pieces.append(text)
            yield TokenEvent(t_ns=t_ns, text=text)
            if n_out >= request.max_tokens:
                break
        return Generation(
            input_tokens=len(tokens),
            output_tokens=n_out,
            text="".join(pieces) + decoder.decode(b"", final=True),
            finish_reason=finish,
        )

    def close(self) -> None:
        if self._llm is not None:
            self._llm.close()
            self._llm = None
