"""`--chat-template` and `--raw`: the prompt format flags of `run` and `decide`."""

from __future__ import annotations

from typing import Any

CHAT_TEMPLATE_HELP = (
    "Prompt format: a llama.cpp built-in template (gemma, llama3, chatml, phi3, mistral-v7, "
    "...) or a Jinja file, instead of the GGUF's own template (or, where it has none, the "
    "one its architecture uses)."
)
RAW_HELP = (
    "No chat template: the prompt's text is the whole prompt (BOS as the model wants), for "
    "base (pretrained) models."
)
PROMPT_BACKENDS = ("llamacpp", "onnx")


def prompt_settings(
    backend: str, chat_template: str | None, raw: bool, from_set: dict[str, Any]
) -> dict[str, Any]:
    """The backend settings the two flags give; refused for a backend that formats no
    prompts itself (a cloud API applies its own), and where `--set` names the same setting."""
    from edgeprof.backends import backend_class
    from edgeprof.errors import UsageError
    from edgeprof.models.chat import check_prompt_settings

    check_prompt_settings(chat_template, raw, "--chat-template")  # before anything runs
    given: dict[str, Any] = {"chat_template": chat_template} if chat_template else {}
    if raw:
        given["raw"] = True
    if not given:
        return {}
    fields = getattr(backend_class(backend).Settings, "__dataclass_fields__", {})
    if "chat_template" not in fields:
        flags = " and ".join(f"--{k.replace('_', '-')}" for k in given)
        raise UsageError(
            f"{flags}: {backend} formats no prompts itself (its server applies the model's "
            f"template); these flags are for {', '.join(PROMPT_BACKENDS)}"
        )
    for name in given:
        if name in from_set:
            raise UsageError(f"--{name.replace('_', '-')} and --set {name} both set {name}; "
                             "give one of them")  # fmt: skip
    return given


def format_warning(model: str | None, settings: dict[str, Any]) -> tuple[str, str | None]:
    """(the prompt format a GGUF will get, the base-model warning or None), from its header
    alone (milliseconds), so `run` can say it before the model loads."""
    from edgeprof.models.files import resolve_model
    from edgeprof.models.gguf_header import read_gguf_header
    from edgeprof.models.prompt_format import base_model_warning, choose_format

    path = resolve_model(model)
    fmt = choose_format(
        read_gguf_header(path).metadata,
        chat_template=settings.get("chat_template"),
        raw=bool(settings.get("raw")),
        file_name=path.name,
    )
    return fmt.describe(), base_model_warning(fmt, path.name)
