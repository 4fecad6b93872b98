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
    "RunConfig": "edgeprof.measure.runner",
    "profile": "edgeprof.measure.runner",
    "open_store": "edgeprof.store",
    "Store": "edgeprof.store",
    "summarize_run": "edgeprof.analysis.summary",
    "load_suite": "edgeprof.measure.workload",
    "probe_all": "edgeprof.samplers",
    "SensorEnv": "edgeprof.samplers",
    "fingerprint": "edgeprof.measure.device",
    "break_even": "edgeprof.decision.economics",
    "sensitivity": "edgeprof.decision.economics",
    "BreakEven": "edgeprof.decision.economics",
    "CloudPrice": "edgeprof.decision.economics",
    "DeviceCosts": "edgeprof.decision.economics",
    "DevicePerformance": "edgeprof.decision.economics",
    "SensitivityRow": "edgeprof.decision.economics",
    "Workload": "edgeprof.decision.economics",
    "compare_profiles": "edgeprof.decision.compare:compare",
    "decide": "edgeprof.decision.orchestrate",
    "DecideConfig": "edgeprof.decision.orchestrate",
    "Decision": "edgeprof.decision.orchestrate",
    "load_presets": "edgeprof.decision.presets",
    "plot_costs": "edgeprof.report.plots",
    "RunSummary": "edgeprof.analysis.summary",
    "register_backend": "edgeprof.backends",
    "register_sampler": "edgeprof.samplers",
    "EdgeprofError": "edgeprof.errors",
    # task quality (docs/quality.md)
    "make_assertion": "edgeprof.grading.assertions",
    "grade": "edgeprof.grading.checks",
    "grade_rules": "edgeprof.grading.grade_runs",
    "quality_of_runs": "edgeprof.grading.grade_runs",
    "wilson_interval": "edgeprof.grading.rates",
    # hybrid routing replayed over stored runs (docs/hybrid.md)
    "route": "edgeprof.routing.replay",
    "RouteOptions": "edgeprof.routing.replay",
    "RouteReport": "edgeprof.routing.replay",
    "load_replay": "edgeprof.routing.load",
    "evaluate_replay": "edgeprof.routing.replay:evaluate",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    spec = _EXPORTS.get(name)
    if spec is None:
        raise AttributeError(f"module 'edgeprof' has no attribute {name!r}")
    module_name, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module_name), attr or name)
