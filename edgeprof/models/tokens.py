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
from typing import TYPE_CHECKING, Any

from edgeprof.errors import ModelLoadError
from edgeprof.models.chat import render_builtin, render_chat
from edgeprof.models.prompt_format import PromptFormat, choose_format

if TYPE_CHECKING:
    from llama_cpp import Llama


def token_text(llm: Llama, token: int) -> str:
    return (
        llm.detokenize([token], special=True).decode("utf-8", errors="replace")
        if token >= 0
        else ""
    )


def prompt_tokens(
    llm: Llama, messages: Sequence[Mapping[str, str]], fmt: PromptFormat | None = None
) -> list[int]:
    """The prompt's tokens in the model's format (`fmt`; None: as `choose_format` picks it from
    the GGUF's metadata), tokenized the way llama-cpp-python's chat API does. The ONNX backend
    and `edgeprof convert` call this too, so counts match across runtimes."""
    fmt = fmt or model_format(llm)
    return llm.tokenize(prompt_text(llm, messages, fmt).encode("utf-8"), **_bos(fmt))


def prompt_text(llm: Llama, messages: Sequence[Mapping[str, str]], fmt: PromptFormat) -> str:
    """The text the model is given, before tokenization (BOS aside: see `_bos`)."""
    if fmt.source == "raw":
        # a base model continues text: the messages' text, as written, is the prompt
        return "\n\n".join(m["content"] for m in messages)
    if fmt.source == "builtin":
        return render_builtin(str(fmt.name), messages)
    return render_chat(
        fmt.template,
        messages,
        bos_token=token_text(llm, llm.token_bos()),
        eos_token=token_text(llm, llm.token_eos()),
    )


def _bos(fmt: PromptFormat) -> dict[str, bool]:
    """A Jinja template writes its own special tokens, BOS included, so none is added on top
    (llama-cpp-python's `added_special=True`); a built-in or raw prompt gets the BOS the model
    asks for (`tokenizer.ggml.add_bos_token`: llama.cpp adds it only then)."""
    # raw text is the user's, not a template's: "<|im_start|>" in it stays text
    return {"add_bos": fmt.source in ("builtin", "raw"), "special": fmt.source != "raw"}


def model_format(llm: Llama, **given: Any) -> PromptFormat:
    """`choose_format` on a loaded model's metadata (`given`: chat_template, raw)."""
    return choose_format(llm.metadata, file_name=Path(llm.model_path).name, **given)


def prompt_given(settings: Any) -> dict[str, Any]:
    """A local backend's prompt settings (`chat_template`, `raw`) for `model_format`."""
    return {
        "chat_template": getattr(settings, "chat_template", None),
        "raw": bool(getattr(settings, "raw", False)),
    }


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
