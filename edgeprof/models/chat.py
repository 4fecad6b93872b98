"""The chat template, applied the same way for every prompt on every local backend.

llama.cpp and ONNX Runtime runs of the same GGUF must see the same prompt text and so the same
token count: both render the GGUF's own `tokenizer.chat_template` here, with the variables and
Jinja settings that llama-cpp-python and Hugging Face use.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

# Used only when a model carries no template of its own; the run records that it was used.
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _raise(message: str) -> None:
    raise jinja2.TemplateError(message)


def _tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None, **kw: Any) -> str:
    return json.dumps(
        x, ensure_ascii=ensure_ascii, indent=indent, sort_keys=kw.get("sort_keys", False)
    )


def render_chat(
    template: str | None,
    messages: Sequence[Mapping[str, str]],
    *,
    bos_token: str = "",
    eos_token: str = "",
    add_generation_prompt: bool = True,
) -> str:
    env = ImmutableSandboxedEnvironment(
        loader=jinja2.BaseLoader(),
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[jinja2.ext.loopcontrols],
    )
    env.filters["tojson"] = _tojson
    return env.from_string(template or CHATML_TEMPLATE).render(
        messages=[dict(m) for m in messages],
        bos_token=bos_token,
        eos_token=eos_token,
        add_generation_prompt=add_generation_prompt,
        raise_exception=_raise,
        strftime_now=lambda fmt: datetime.now().strftime(fmt),
    )


def builtin_templates() -> tuple[str, ...]:
    """The names of llama.cpp's built-in chat templates in the installed llama-cpp-python."""
    import ctypes

    import llama_cpp

    n = int(llama_cpp.llama_chat_builtin_templates((ctypes.c_char_p * 0)(), 0))
    names = (ctypes.c_char_p * n)()
    llama_cpp.llama_chat_builtin_templates(names, n)
    return tuple(sorted(bytes(x).decode() for x in names if x is not None))


def check_builtin(name: str) -> None:
    """A UsageError naming the choices when `name` is no built-in template (nor a file)."""
    from edgeprof.errors import UsageError

    names = builtin_templates()
    if name not in names:
        raise UsageError(
            f"chat template {name!r} is neither a file nor one of llama.cpp's built-in "
            f"templates: {', '.join(names)}; give one of these names or a Jinja file's path"
        )


def render_builtin(
    name: str, messages: Sequence[Mapping[str, str]], *, add_generation_prompt: bool = True
) -> str:
    """`messages` in llama.cpp's own built-in template `name` (`llama_chat_apply_template`),
    the text llama.cpp's server would give the model. Built-ins write no BOS: the tokenizer
    adds it where the model wants one."""
    import ctypes

    import llama_cpp

    # keep the encoded strings alive while the C side reads them
    encoded = [(m["role"].encode(), m["content"].encode()) for m in messages]
    chat = (llama_cpp.llama_chat_message * len(encoded))(
        *(llama_cpp.llama_chat_message(role, content) for role, content in encoded)
    )
    size = 2 * sum(len(r) + len(c) for r, c in encoded) + 256
    for _ in range(2):
        buf = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_chat_apply_template(
            name.encode(), chat, len(encoded), add_generation_prompt, buf, size
        )
        if n < 0:
            raise ValueError(f"llama.cpp has no built-in chat template {name!r}")
        if n <= size:
            return buf.raw[:n].decode("utf-8", errors="replace")
        size = n + 1  # too small: llama.cpp says how much it needs
    raise RuntimeError("llama_chat_apply_template kept asking for a larger buffer")


def check_prompt_settings(chat_template: str | None, raw: bool, owner: str) -> None:
    """The `chat_template` and `raw` settings a local backend takes, checked before a run."""
    from pathlib import Path

    from edgeprof.errors import UsageError

    if raw and chat_template is not None:
        raise UsageError(
            f"{owner}: `raw` sends the text with no template, so it takes no `chat_template`; "
            "give one of the two"
        )
    if chat_template is not None and not Path(chat_template).expanduser().is_file():
        check_builtin(chat_template)
