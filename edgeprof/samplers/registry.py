"""The one list of sensor sources. Built-ins and plugins join it through `register_sampler`.

Registration order is the probe order and the energy precedence: when two sources measure the
same domain, `energy.select_domains` uses the one registered first. The estimator is the fallback
for machines without a sensor, so it stays last whatever registers after it.
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass
from typing import Literal

from edgeprof.errors import UsageError
from edgeprof.plugins import check_replacement, load_plugins
from edgeprof.samplers.base import Sampler

Role = Literal["power", "resource"]
# Used only when no measured power source is found (see edgeprof.samplers.discover).
FALLBACK_SOURCE = "estimate"


@dataclass
class _Entry:
    sampler: type[Sampler] | str  # the class, or "module:Class" imported on first use
    role: Role


_REGISTRY: dict[str, _Entry] = {}
BUILTINS: frozenset[str] = frozenset()  # edgeprof's own sources, once registered
_lock = threading.Lock()


def register_sampler(source: str, sampler: type[Sampler] | str, *, role: Role = "power") -> None:
    """Make the sensor source `source` known to probe, run and energy attribution.

    `sampler` is a Sampler subclass, or a "package.module:Class" string imported on first use,
    so that a heavy library (pynvml) loads only on machines that use it. `role="resource"`
    marks a sampler that is always run and never measures power (memory, CPU use).
    Registering a source again replaces its sampler and keeps its place in the order.
    """
    if not source or not source.replace("-", "_").isidentifier():
        raise ValueError(f"sensor source must be a short identifier, got {source!r}")
    if isinstance(sampler, str) and ":" not in sampler:
        raise ValueError(f"a lazy sampler is given as 'package.module:Class', got {sampler!r}")
    if not isinstance(sampler, str) and not (
        isinstance(sampler, type) and issubclass(sampler, Sampler)
    ):
        raise TypeError(f"sampler must be a Sampler subclass or 'module:Class', got {sampler!r}")
    with _lock:
        check_replacement("sensor source", source, source in BUILTINS)
        if source in _REGISTRY or FALLBACK_SOURCE not in _REGISTRY:
            _REGISTRY[source] = _Entry(sampler, role)
            return
        # Insert before the fallback: rebuild the dict, since dicts keep insertion order.
        items = list(_REGISTRY.items())
        at = next(i for i, (name, _) in enumerate(items) if name == FALLBACK_SOURCE)
        items.insert(at, (source, _Entry(sampler, role)))
        _REGISTRY.clear()
        _REGISTRY.update(items)


def mark_builtins() -> None:
    """The sources registered so far are edgeprof's own: a plugin may not replace them."""
    global BUILTINS
    BUILTINS = frozenset(_REGISTRY)


def unregister_sampler(source: str) -> None:
    """Forget `source` (a no-op when it is not registered); for tests and plugin reloads."""
    with _lock:
        _REGISTRY.pop(source, None)


def sampler_sources(role: Role | None = None) -> list[str]:
    """Registered source names in probe (and energy precedence) order; plugins included."""
    _load_plugins()
    with _lock:
        return [name for name, e in _REGISTRY.items() if role is None or e.role == role]


def sampler_class(source: str) -> type[Sampler]:
    """The Sampler subclass registered as `source`, imported now if it was given lazily."""
    _load_plugins()
    with _lock:
        entry = _REGISTRY.get(source)
    if entry is None:
        known = ", ".join(sampler_sources())
        raise UsageError(f"unknown sensor {source!r}; choose from: {known}")
    if isinstance(entry.sampler, type):
        return entry.sampler
    module_name, _, class_name = entry.sampler.partition(":")
    cls: type[Sampler] = getattr(importlib.import_module(module_name), class_name)
    with _lock:
        entry.sampler = cls
    return cls


def _load_plugins() -> None:
    # Imported here: edgeprof.plugins may import plugin modules that import this one.
    load_plugins()
