"""Which prompt format a GGUF gets: its own template, a llama.cpp built-in, a file, or none.

A model answers well only in the format it was trained on. A GGUF that carries
`tokenizer.chat_template` gets that template. One that carries none gets the llama.cpp built-in
template of its family, chosen here from the architecture and tokenizer metadata (a chat
template the model never saw makes it answer with noise: a base Gemma wrapped in ChatML repeats
`<|im_start|>assistant` until max tokens). `--chat-template NAME|FILE` overrides the choice;
`--raw` sends the messages' text as the whole prompt, for base (pretrained) models.

Pure functions over the metadata mapping; the rendering itself is `edgeprof.models.chat`'s.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

FormatSource = Literal["gguf", "builtin", "file", "raw"]

# general.architecture -> llama.cpp's built-in template name (llama_chat_builtin_templates).
# The llama architecture is shared by several families; `_llama_family` tells them apart.
ARCH_TEMPLATES = {
    "gemma": "gemma", "gemma2": "gemma", "gemma3": "gemma", "gemma3n": "gemma",
    "qwen": "chatml", "qwen2": "chatml", "qwen2moe": "chatml", "qwen3": "chatml",
    "qwen3moe": "chatml", "smollm3": "chatml",
    "phi3": "phi3",
    "mistral": "mistral-v7-tekken", "mistral3": "mistral-v7-tekken",
    "llama4": "llama4",
    "granite": "granite", "granitemoe": "granite",
    "exaone": "exaone3", "exaone4": "exaone4",
    "command-r": "command-r", "cohere2": "command-r",
    "chatglm": "chatglm4", "glm4": "chatglm4",
    "minicpm": "minicpm",
    "deepseek": "deepseek", "deepseek2": "deepseek2",
}  # fmt: skip
FALLBACK_TEMPLATE = "chatml"
# Words in a model's name that say it was tuned to follow chat turns.
_TUNED = re.compile(r"(^|[^a-z0-9])(it|instruct|chat|sft|dpo|rlhf)([^a-z0-9]|$)", re.IGNORECASE)
_NAME_KEYS = ("general.name", "general.basename", "general.finetune", "general.file_name")


@dataclass(frozen=True)
class PromptFormat:
    """How prompts are formatted for one model; `label` and `describe()` go into the run."""

    source: FormatSource
    name: str | None = None  # the built-in's name, or the template file's path
    template: str | None = None  # Jinja text (source "gguf" or "file")
    reason: str = ""
    # no template, and nothing in the metadata says instruction-tuned: maybe a base model
    base_model_suspected: bool = False

    @property
    def label(self) -> str:
        """ "gguf", "builtin:gemma", "file:my.jinja" or "raw": what a table shows."""
        if self.source == "builtin":
            return f"builtin:{self.name}"
        if self.source == "file":
            return f"file:{Path(self.name or '').name}"
        return self.source

    def describe(self) -> str:
        """ "builtin:gemma (chosen from architecture gemma3)"."""
        return f"{self.label} ({self.reason})" if self.reason else self.label

    def record(self) -> dict[str, Any]:
        """What the run stores in its params (the template's hash, not its text)."""
        out: dict[str, Any] = {"label": self.label, "source": self.source, "reason": self.reason}
        if self.name is not None:
            out["name"] = self.name
        if self.template is not None:
            out["template_sha256"] = hashlib.sha256(self.template.encode()).hexdigest()
        if self.base_model_suspected:
            out["base_model_suspected"] = True
        return out


def choose_format(
    metadata: Mapping[str, Any],
    *,
    chat_template: str | None = None,
    raw: bool = False,
    file_name: str | None = None,
) -> PromptFormat:
    """The format for a model with this GGUF metadata. `chat_template` is what the user gave
    (a built-in name, or a path to a Jinja file: `template_choice` tells which)."""
    if raw:
        return PromptFormat("raw", reason="--raw: the messages' text is the whole prompt")
    if chat_template is not None:
        return template_choice(chat_template)
    own = metadata.get("tokenizer.chat_template")
    if isinstance(own, str) and own.strip():
        return PromptFormat("gguf", template=own, reason="the GGUF's tokenizer.chat_template")
    name, why = builtin_for(metadata)
    return PromptFormat(
        "builtin",
        name=name,
        reason=why,
        base_model_suspected=not looks_instruction_tuned(metadata, file_name),
    )


def template_choice(value: str) -> PromptFormat:
    """`--chat-template VALUE`: a Jinja file when VALUE names an existing file, else a
    llama.cpp built-in name (checked against the installed llama.cpp by the caller)."""
    path = Path(value).expanduser()
    if path.is_file():
        return PromptFormat(
            "file", name=str(path), template=path.read_text("utf-8"), reason="--chat-template"
        )
    return PromptFormat("builtin", name=value, reason="--chat-template")


def builtin_for(metadata: Mapping[str, Any]) -> tuple[str, str]:
    """(llama.cpp built-in template name, why) from the architecture and tokenizer."""
    arch = str(metadata.get("general.architecture") or "").lower()
    if arch == "llama":
        name, why = _llama_family(metadata)
        return name, f"chosen from architecture llama, {why}"
    if arch in ARCH_TEMPLATES:
        return ARCH_TEMPLATES[arch], f"chosen from architecture {arch}"
    return FALLBACK_TEMPLATE, f"architecture {arch or 'unknown'} has no known format: ChatML"


def _llama_family(metadata: Mapping[str, Any]) -> tuple[str, str]:
    """Llama 2 and 3, Mistral, SmolLM and others share the llama architecture; the
    tokenizer (`tokenizer.ggml.pre`, `.model`) and the name tell them apart."""
    pre = str(metadata.get("tokenizer.ggml.pre") or "").lower()
    tok = str(metadata.get("tokenizer.ggml.model") or "").lower()
    names = " ".join(str(metadata.get(k) or "") for k in _NAME_KEYS).lower()
    if pre in ("llama-bpe", "llama3"):
        return "llama3", f"tokenizer {pre} (Llama 3)"
    if re.search(r"mistral|mixtral|ministral", names):
        if pre == "tekken":
            return "mistral-v7-tekken", "a Mistral model with the tekken tokenizer"
        return "mistral-v3", "a Mistral model"
    if pre == "smollm" or "smollm" in names:
        return "chatml", "a SmolLM model"
    if tok == "llama":  # SentencePiece: Llama 2 and its fine-tunes
        return "llama2", "SentencePiece tokenizer (Llama 2)"
    return FALLBACK_TEMPLATE, f"tokenizer {pre or tok or 'unknown'}: ChatML"


def looks_instruction_tuned(metadata: Mapping[str, Any], file_name: str | None = None) -> bool:
    """Whether the model's names say instruction-tuned (`-it`, `-Instruct`, `chat`, ...)."""
    names = [str(metadata.get(k) or "") for k in _NAME_KEYS]
    if file_name:
        names.append(Path(file_name).stem)
    return any(_TUNED.search(n) for n in names if n)


def base_model_warning(fmt: PromptFormat, model: str) -> str | None:
    """The loud line for a model that may be a base model; None when it looks tuned."""
    if not fmt.base_model_suspected:
        return None
    return (
        f"{model} carries no chat template and its metadata does not name an "
        f"instruction-tuned model (no -it/-instruct/chat): it may be a base model, which "
        f"answers a chat format ({fmt.label}) with noise; pass --raw to give it plain text, "
        "or --chat-template NAME if it is instruction-tuned"
    )
