"""edgeprof: should this AI feature run on the device or in the cloud? Measure it.

The Python API behind the command line::

    import edgeprof
    run_id = edgeprof.profile(edgeprof.RunConfig(max_tokens=64, db="profiles/mine.db"))
    with edgeprof.open_store("profiles/mine.db") as store:
        print(edgeprof.summarize_run(store, run_id))

Names are imported on first use, so `import edgeprof` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "RunConfig": "edgeprof.runner",
    "profile": "edgeprof.runner",
    "open_store": "edgeprof.store",
    "Store": "edgeprof.store",
    "summarize_run": "edgeprof.summary",
    "load_suite": "edgeprof.workload",
    "probe_all": "edgeprof.samplers",
    "SensorEnv": "edgeprof.samplers",
    "fingerprint": "edgeprof.device",
    "break_even": "edgeprof.economics",
    "sensitivity": "edgeprof.economics",
    "BreakEven": "edgeprof.economics",
    "CloudPrice": "edgeprof.economics",
    "DeviceCosts": "edgeprof.economics",
    "DevicePerformance": "edgeprof.economics",
    "SensitivityRow": "edgeprof.economics",
    "Workload": "edgeprof.economics",
    "compare_profiles": "edgeprof.compare:compare",
    "decide": "edgeprof.decision",
    "DecideConfig": "edgeprof.decision",
    "Decision": "edgeprof.decision",
    "load_presets": "edgeprof.presets",
    "plot_costs": "edgeprof.plots",
    "RunSummary": "edgeprof.summary",
    "register_backend": "edgeprof.backends",
    "register_sampler": "edgeprof.samplers",
    "EdgeprofError": "edgeprof.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    spec = _EXPORTS.get(name)
    if spec is None:
        raise AttributeError(f"module 'edgeprof' has no attribute {name!r}")
    module_name, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module_name), attr or name)
