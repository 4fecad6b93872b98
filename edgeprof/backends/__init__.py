"""Backend registry. Built-in backends register the same way a plugin would."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from edgeprof.backends.base import (
    Backend,
    BackendOptions,
    Generation,
    ModelInfo,
    Request,
    TokenEvent,
)
from edgeprof.errors import UsageError

BackendFactory = Callable[[BackendOptions], Backend]

# name -> "module:Class"; imported lazily so `edgeprof --help` never loads llama.cpp or ORT.
_BUILTIN: dict[str, str] = {
    "llamacpp": "edgeprof.backends.llamacpp:LlamaCppBackend",
    "onnx": "edgeprof.backends.onnxrt:OnnxBackend",
    "openai": "edgeprof.backends.openai_compat:OpenAIBackend",
    "anthropic": "edgeprof.backends.anthropic:AnthropicBackend",
}
_REGISTERED: dict[str, BackendFactory] = {}


def register_backend(name: str, factory: BackendFactory) -> None:
    _REGISTERED[name] = factory


def backend_names() -> list[str]:
    return sorted({*_BUILTIN, *_REGISTERED})


def create_backend(name: str, options: BackendOptions) -> Backend:
    if name in _REGISTERED:
        return _REGISTERED[name](options)
    if name not in _BUILTIN:
        raise UsageError(f"unknown backend {name!r}; choose one of: {', '.join(backend_names())}")
    module_name, _, class_name = _BUILTIN[name].partition(":")
    cls: BackendFactory = getattr(importlib.import_module(module_name), class_name)
    return cls(options)


__all__ = [
    "Backend",
    "BackendOptions",
    "Generation",
    "ModelInfo",
    "Request",
    "TokenEvent",
    "backend_names",
    "create_backend",
    "register_backend",
]
