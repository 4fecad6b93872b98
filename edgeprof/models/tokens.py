"""Prompt tokenization shared by the llama.cpp and ONNX backends and by `edgeprof convert`.

Every local runtime tokenizes through llama.cpp's own vocabulary (the GGUF, or the vocab-only
GGUF an export carries), so input token counts and the tokens themselves agree across runtimes.
Kept outside `backends/` so that the ONNX backend and the converter do not depend on the
llama.cpp backend module for it.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from edgeprof.errors import ModelLoadError
from edgeprof.models.chat import render_chat

if TYPE_CHECKING:
    from llama_cpp import Llama


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


def load_vocab(path: Path) -> Llama:
    """A tokenizer-only llama.cpp model (no weights, milliseconds to load)."""
    import llama_cpp

    try:
        # llama.cpp prints its load log on the C side; it would tear through progress bars
        with contextlib.redirect_stderr(io.StringIO()):
            return llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    except (ValueError, RuntimeError) as e:
        raise ModelLoadError(
            f"llama.cpp could not load the tokenizer {path} ({e}); re-run `edgeprof convert`"
        ) from e


def eog_token_ids(llm: Llama) -> list[int]:
    """The end-of-generation set llama.cpp itself stops on (eos, eot, <|im_end|>, ...)."""
    import llama_cpp

    vocab = llm._model.vocab
    return [t for t in range(llm.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab, t)]
