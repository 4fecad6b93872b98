"""Third-party backends and samplers, found through Python entry points (the way llm does it).

A plugin package declares, in its pyproject.toml::

    [project.entry-points."edgeprof.plugins"]
    mything = "mything.edgeprof_plugin"

and that module calls `edgeprof.backends.register_backend(...)` or
`edgeprof.samplers.register_sampler(...)` when imported, exactly as edgeprof's own built-ins do.
An entry point may also name a callable (`"mything.plugin:register"`), which is called once.

`EDGEPROF_LOAD_PLUGINS` chooses which installed plugins load (as llm's `LLM_LOAD_PLUGINS`):
unset, all of them; empty, none (the test suite runs so); a comma-separated list, those
entry-point names only. A plugin may add backends and sensor sources but not replace a
built-in one: such a registration is refused, named in `edgeprof probe` and in a warning.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import threading

ENTRY_POINT_GROUP = "edgeprof.plugins"
LOAD_PLUGINS_ENV = "EDGEPROF_LOAD_PLUGINS"

_lock = threading.RLock()  # a plugin may read a registry while it is being imported
_loaded = False
failures: dict[str, str] = {}  # plugin name -> why it did not load (shown by `edgeprof probe`)
_loading: list[str] = []  # the plugin being imported now (registrations are checked against it)


def wanted(name: str) -> bool:
    """Whether `EDGEPROF_LOAD_PLUGINS` lets the plugin `name` load."""
    chosen = os.environ.get(LOAD_PLUGINS_ENV)
    if chosen is None:
        return True
    return name in {n.strip() for n in chosen.split(",") if n.strip()}


def check_replacement(kind: str, name: str, builtin: bool) -> None:
    """Called by a registry before it registers `name`: a plugin being loaded may not replace
    a built-in backend or sensor source (a user would measure something else than they asked
    for without a word). Raises `PluginConflict`, which `load_plugins` records."""
    if builtin and _loading:
        raise PluginConflict(
            f"plugin {_loading[-1]} tried to replace the built-in {kind} {name!r}; refused "
            f"(register it under another name)"
        )


class PluginConflict(RuntimeError):
    pass


def load_plugins() -> None:
    """Import every installed plugin once. A broken plugin is logged, never fatal."""
    global _loaded
    with _lock:
        if _loaded:
            return
        _loaded = True  # set first: a plugin that looks up a registry must not recurse here
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if not wanted(ep.name):
                continue
            _loading.append(ep.name)
            try:
                obj = ep.load()
                if callable(obj):
                    obj()
            except Exception as e:  # one bad plugin must not break the built-ins
                failures[ep.name] = f"{type(e).__name__}: {e}"
                logging.getLogger("edgeprof").warning("plugin %s did not load: %s", ep.name, e)
            finally:
                _loading.pop()
