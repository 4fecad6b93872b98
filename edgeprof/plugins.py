"""Third-party backends and samplers, found through Python entry points (the way llm does it).

A plugin package declares, in its pyproject.toml::

    [project.entry-points."edgeprof.plugins"]
    mything = "mything.edgeprof_plugin"

and that module calls `edgeprof.backends.register_backend(...)` or
`edgeprof.samplers.register_sampler(...)` when imported, exactly as edgeprof's own built-ins do.
An entry point may also name a callable (`"mything.plugin:register"`), which is called once.
"""

from __future__ import annotations

import importlib.metadata
import logging
import threading

ENTRY_POINT_GROUP = "edgeprof.plugins"

_lock = threading.RLock()  # a plugin may read a registry while it is being imported
_loaded = False
failures: dict[str, str] = {}  # plugin name -> why it did not load (shown by `edgeprof probe`)


def load_plugins() -> None:
    """Import every installed plugin once. A broken plugin is logged, never fatal."""
    global _loaded
    with _lock:
        if _loaded:
            return
        _loaded = True  # set first: a plugin that looks up a registry must not recurse here
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            try:
                obj = ep.load()
                if callable(obj):
                    obj()
            except Exception as e:  # one bad plugin must not break the built-ins
                failures[ep.name] = f"{type(e).__name__}: {e}"
                logging.getLogger("edgeprof").warning("plugin %s did not load: %s", ep.name, e)
