"""Backend registry. Built-in backends register through `register_backend`, the same call a
plugin makes (see `edgeprof.plugins`); CLI choices and help come from here."""

from __future__ import annotations

import importlib
import threading

from edgeprof.backends.base import (
    Backend,
    BackendOptions,
    Generation,
    ModelInfo,
    NoSettings,
    Request,
    TargetKind,
    TokenEvent,
)
from edgeprof.backends.settings import parse_settings
from edgeprof.errors import UsageError
from edgeprof.plugins import check_replacement, load_plugins

# name -> the class, or "module:Class" imported on first use so that `edgeprof --help` never
# loads llama.cpp or ONNX Runtime.
_REGISTRY: dict[str, type[Backend] | str] = {}
_BUILTINS: frozenset[str] = frozenset()  # set once the built-ins below are registered
_lock = threading.Lock()


def register_backend(name: str, backend: type[Backend] | str) -> None:
    """Make `backend` available as `edgeprof run --backend NAME`.

    `backend` is a Backend subclass, or a "package.module:Class" string imported lazily.
    Registering a name again replaces the earlier entry, except that a plugin may not replace
    a built-in (`edgeprof.plugins.check_replacement`).
    """
    if not name or not name.replace("-", "_").isidentifier():
        raise ValueError(f"backend name must be a short identifier, got {name!r}")
    with _lock:
        check_replacement("backend", name, name in _BUILTINS)
        _REGISTRY[name] = backend


def unregister_backend(name: str) -> None:
    """Forget `name` (a no-op when it is not registered); for tests and plugin reloads."""
    with _lock:
        _REGISTRY.pop(name, None)


def backend_names() -> list[str]:
    _load_plugins()
    return sorted(_REGISTRY)


def backend_class(name: str) -> type[Backend]:
    _load_plugins()
    spec = _REGISTRY.get(name)
    if spec is None:
        raise UsageError(f"unknown backend {name!r}; choose one of: {', '.join(backend_names())}")
    if isinstance(spec, str):
        module_name, _, class_name = spec.partition(":")
        cls: type[Backend] = getattr(importlib.import_module(module_name), class_name)
        with _lock:
            _REGISTRY[name] = cls
        return cls
    return spec


def create_backend(name: str, options: BackendOptions) -> Backend:
    """The backend `name`, with `options.settings` checked against its `Settings` dataclass."""
    cls = backend_class(name)
    settings = parse_settings(cls.Settings, options.settings, owner=f"the {name} backend")
    return cls(options, settings)


def _load_plugins() -> None:
    load_plugins()


register_backend("llamacpp", "edgeprof.backends.llamacpp:LlamaCppBackend")
register_backend("onnx", "edgeprof.backends.onnxrt:OnnxBackend")
register_backend("ort-genai", "edgeprof.backends.ortgenai:OrtGenaiBackend")
register_backend("openai", "edgeprof.backends.openai_compat:OpenAIBackend")
register_backend("anthropic", "edgeprof.backends.anthropic:AnthropicBackend")
register_backend("ollama", "edgeprof.backends.ollama:OllamaBackend")
_BUILTINS = frozenset(_REGISTRY)

__all__ = [
    "Backend",
    "BackendOptions",
    "Generation",
    "ModelInfo",
    "NoSettings",
    "Request",
    "TargetKind",
    "TokenEvent",
    "backend_class",
    "backend_names",
    "create_backend",
    "register_backend",
    "unregister_backend",
]
