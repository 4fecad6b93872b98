"""`edgeprof decide`: device or cloud, answered in one call.

1. Probe this device once: its fingerprint, which power sensors read, a preset's match.
2. Profile every on-device target of one GGUF: llama.cpp, and ONNX Runtime on an int4 export
   of the same weights (converted once, verified, cached: `edgeprof.models.export_cache`). A run in
   the database that measured the same thing (`edgeprof.decision.reuse`) stands in for a new one.
3. Price the cloud targets at the token counts measured on the user's prompts; profile an
   endpoint live when one is given, so that its latency is measured too.
4. Compare (`edgeprof.decision.compare`) in the chosen deployment, and say what wins in one
   paragraph (`edgeprof.decision.verdict`), naming what was measured, estimated and assumed.

Every input the comparator uses is a `Figure` with its provenance and source: a flag, a
preset (with its source and date), or a default named here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from edgeprof.decision.compare import Comparison, Figure, compare
from edgeprof.decision.config import (
    DEFAULT_CLOUDS,
    DEFAULT_ELECTRICITY_USD_PER_KWH,
    DEFAULT_LIFETIME_YEARS,
    DEFAULT_UTILIZATION,
    ELECTRICITY_SOURCE,
    DecideConfig,
    StepEvent,
    StepFn,
    TargetRun,
)
from edgeprof.decision.economics import Deployment, DeviceCosts, parse_deployment
from edgeprof.decision.verdict import (
    DecisionRow,
    decision_rows,
    target_names,
    verdict_paragraph,
)
from edgeprof.errors import UsageError


@dataclass(frozen=True)
class Decision:
    verdict: str
    winner: str
    deployment: Deployment
    comparison: Comparison
    runs: tuple[TargetRun, ...]
    inputs: tuple[Figure, ...]  # every input, with provenance and source
    rows: tuple[DecisionRow, ...]  # one per device × cloud pair
    notes: tuple[str, ...] = field(default=())
    device: dict[str, Any] = field(default_factory=dict)
    task_quality: Any = None  # decision.task_quality.TaskQualityReport
    # degenerate answers, suspected base models (edgeprof.analysis.summary.answer_warnings)
    warnings: tuple[str, ...] = field(default=())
    # `--hybrid`: the best cascade of each device × cloud pair (decision/hybrid.py)
    hybrids: tuple[Any, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        from edgeprof.decision.compare import to_dict

        out = asdict(self)
        out["comparison"] = to_dict(self.comparison)
        if self.hybrids:
            from edgeprof.decision.hybrid import hybrid_dict

            out["hybrids"] = [hybrid_dict(h) for h in self.hybrids]
        return out


# -- inputs --------------------------------------------------------------------------------


def _preset_figure(
    name: str, given: float | None, flag: str, preset: Any, key: str, default: float | None
) -> Figure:
    """A cost input: the flag when given, else the preset's figure, else the default."""
    unit = {"device_price_usd": "USD", "lifetime_years": "years", "battery_wh": "Wh"}.get(name, "")
    if given is not None:
        return Figure(name, float(given), unit, "assumed", flag)
    figure = getattr(preset, key, None) if preset is not None else None
    if figure is not None:
        source = f"preset {preset.id}: {figure.source} (as of {figure.as_of})"
        return Figure(name, float(figure.value), unit, "assumed", source)
    return Figure(name, default, unit, "assumed", f"default (set {flag})")


def cost_inputs(
    config: DecideConfig, preset: Any, battery: Any = None
) -> tuple[DeviceCosts, list[Figure]]:
    """The owner's side of the comparison, each figure with where it came from."""
    mode = parse_deployment(config.deployment)
    price = _preset_figure(
        "device_price_usd", config.device_price_usd, "--device-price", preset, "price_usd", None
    )
    if price.value is None:
        if mode == "dedicated":
            raise UsageError(
                "a dedicated device needs a price: give `device` PRESET (see `edgeprof devices`) "
                "or `device_price_usd` USD"
            )
        price = Figure("device_price_usd", 0.0, "USD", "assumed", "not needed: " + mode)
    life = _preset_figure(
        "lifetime_years",
        config.lifetime_years,
        "--lifetime-years",
        preset,
        "lifetime_years",
        DEFAULT_LIFETIME_YEARS,
    )
    elec = (
        Figure("electricity_usd_per_kwh", config.electricity_usd_per_kwh, "USD/kWh", "assumed",
               "--electricity")
        if config.electricity_usd_per_kwh is not None
        else Figure("electricity_usd_per_kwh", DEFAULT_ELECTRICITY_USD_PER_KWH, "USD/kWh",
                    "assumed", ELECTRICITY_SOURCE)
    )  # fmt: skip
    util = Figure(
        "utilization",
        DEFAULT_UTILIZATION if config.utilization is None else config.utilization,
        "fraction of the day",
        "assumed",
        "--utilization" if config.utilization is not None else "default (set --utilization)",
    )
    battery_fig = _battery_figure(config, preset, battery)
    figures = [
        Figure("deployment", mode, "", "assumed", "--deployment"),
        price,
        life,
        elec,
        util,
        battery_fig,
    ]
    if mode == "owned":
        figures.append(
            Figure("owned_devices", config.owned_devices, "devices", "assumed", "--owned-devices")
        )
    costs = DeviceCosts(
        device_price_usd=float(price.value or 0.0),
        lifetime_years=float(life.value or DEFAULT_LIFETIME_YEARS),
        electricity_usd_per_kwh=float(elec.value or 0.0),
        utilization=float(util.value or DEFAULT_UTILIZATION),
        deployment=mode,
        owned_devices=config.owned_devices,
        battery_wh=None if battery_fig.value is None else float(battery_fig.value),
    )
    return costs, figures


def _battery_figure(config: DecideConfig, preset: Any, battery: Any) -> Figure:
    """--battery-wh, else the preset's, else this machine's battery as sysfs reports it."""
    fig = _preset_figure(
        "battery_wh", config.battery_wh, "--battery-wh", preset, "battery_wh", None
    )
    if fig.value is None and battery is not None:
        return Figure("battery_wh", battery.wh, "Wh", "measured", f"this machine: {battery.source}")
    if fig.value is None:
        return Figure("battery_wh", None, "Wh", "assumed", "none: no battery (set --battery-wh)")
    return fig


def _run_inputs(config: DecideConfig, clouds: Sequence[str]) -> list[Figure]:
    cloud_source = "--cloud" if config.clouds else "default: low-cost and mid-tier catalog models"
    return [
        Figure("requests_per_day", config.requests_per_day, "requests/day", "assumed",
               "--requests-per-day"),
        Figure("prompts", config.prompts or "default", "", "assumed",
               "--prompts" if config.prompts else "default: the bundled suite"),
        Figure("max_tokens", config.max_tokens, "tokens", "assumed", "--max-tokens"),
        Figure("repetitions", config.repetitions, "passes", "assumed", "--repetitions"),
        Figure("clouds", ", ".join(clouds), "", "assumed", cloud_source),
        Figure("max_ttft_s", config.max_ttft_s, "s", "assumed",
               "--max-ttft-s" if config.max_ttft_s is not None else "none (set --max-ttft-s)"),
        Figure("quality_floor", config.floor.describe() or None, "", "assumed",
               "--max-kld / --max-ppl-increase / --min-top1" if config.floor.active
               else "none (set --max-kld, --max-ppl-increase or --min-top1)"),
    ]  # fmt: skip


# -- the call ------------------------------------------------------------------------------


def decide(config: DecideConfig, on_step: StepFn | None = None) -> Decision:
    """Profile (or reuse), price and compare; returns the decision. Raises EdgeprofError on
    bad input before any profiling; KeyboardInterrupt keeps every finished run."""
    from edgeprof.decision.server_targets import profile_servers
    from edgeprof.decision.targets import Probe, profile_clouds, profile_devices
    from edgeprof.decision.task_quality import NoDeviceMeetsFloor
    from edgeprof.store.db import Store, default_db_path

    step = on_step or (lambda _e: None)
    _check(config)
    clouds = list(config.clouds) or list(DEFAULT_CLOUDS)
    step(StepEvent("probe", "start"))
    probe = Probe.this_device(config.tdp_w, config.device)
    costs, cost_figures = cost_inputs(config, probe.preset, probe.battery)
    step(StepEvent("probe", "done", detail=probe.summary()))
    db_path = Path(config.db or default_db_path())
    notes = list(probe.notes)
    crashed: list[str] = []
    builtin = config.model is not None or not config.device_targets
    runs = profile_devices(config, probe, db_path, step, notes, crashed) if builtin else []
    runs += profile_servers(config, probe, db_path, step)
    live = profile_clouds(config, clouds, db_path, step) if config.base_url else []
    step(StepEvent("compare", "start"))
    with Store(db_path) as store:
        comparison = compare(
            store,
            costs,
            requests_per_day=config.requests_per_day,
            input_tokens=config.input_tokens,
            output_tokens=config.output_tokens,
            run_ids=[r.run_id for r in [*runs, *live]],
            # live runs carry their prices; catalog targets would price the same models twice
            cloud_models=[] if live else clouds,
            price_in_usd_per_m=None if live else config.price_in_usd_per_m,
            price_out_usd_per_m=None if live else config.price_out_usd_per_m,
            floor=config.floor,
            shared_prefix_tokens=config.shared_prefix_tokens,
            cache_device=config.cache_device,
            cache_cloud=config.cache_cloud,
            max_ttft_s=config.max_ttft_s,
        )
        energy_notes = probe.energy_sources(store, [r.run_id for r in runs])
        try:
            comparison, task = _task_floor(store, comparison, config)
        except NoDeviceMeetsFloor as e:
            named = target_names(comparison, [*runs, *live])
            hybrids = _hybrids(store, e.report, costs, config, notes, named)
            step(StepEvent("compare", "done"))
            inputs = [*_run_inputs(config, clouds), *cost_figures, *probe.figures()]
            decision = _cloud_only(e, comparison, costs, [*runs, *live], inputs, notes, probe)
            return _with_hybrids(decision, hybrids, config)
        warnings, degenerate = _answer_warnings(store, runs)
        hybrids = _hybrids(store, task, costs, config, notes, target_names(comparison, runs))
    tokens = [f for f in comparison.assumptions
              if f.name in ("input_tokens", "output_tokens", "shared_prefix_tokens")]  # fmt: skip
    inputs = [*_run_inputs(config, clouds), *cost_figures, *tokens, *probe.figures()]
    comparison = replace(comparison, assumptions=tuple(inputs))
    rows = decision_rows(comparison, config.max_ttft_s)
    winner, paragraph = verdict_paragraph(
        comparison,
        rows,
        runs=[*runs, *live],
        device_name=probe.device_name(),
        energy=energy_notes,
        max_ttft_s=config.max_ttft_s,
        suite=Path(config.prompts).name if config.prompts else "bundled default",
        degenerate=degenerate,
    )
    if crashed:  # a target that could not be measured is part of the answer
        paragraph = f"{paragraph} Not compared: {'; '.join(crashed)}; see the notes."
    step(StepEvent("compare", "done"))
    decision = Decision(
        # pass rates first: whether the device does the feature comes before its price
        verdict=" ".join([*task.sentences, paragraph, *task.closing]),
        winner=winner,
        deployment=costs.deployment,
        comparison=comparison,
        runs=tuple([*runs, *live]),
        inputs=tuple(inputs),
        rows=tuple(rows),
        notes=tuple(notes + list(comparison.notes)),
        device=probe.device_dict(),
        task_quality=task,
        warnings=tuple(warnings),
    )
    return _with_hybrids(decision, hybrids, config)


def _hybrids(store: Any, task: Any, costs: DeviceCosts, config: DecideConfig,
             notes: list[str], names: dict[str, str]) -> list[Any]:  # fmt: skip
    """`--hybrid`: every device target × cloud target with a graded run of the suite,
    replayed (decision/hybrid.py); notes where a pair cannot be."""
    if not config.hybrid:
        return []
    from edgeprof.decision.hybrid import task_hybrids
    from edgeprof.routing.replay import RouteOptions

    options = RouteOptions(folds=config.hybrid_folds, min_pass_rate=config.min_pass_rate)
    found, why = task_hybrids(store, task, costs, config.requests_per_day, options, names)
    notes.extend(why)
    return found


def _with_hybrids(decision: Decision, hybrids: Sequence[Any], config: DecideConfig) -> Decision:
    """The decision with its cascades: their sentences close the verdict, and a cascade that
    meets the floor and costs less than every target that does (its own two sides, and each
    target the decision priced) becomes the winner."""
    if not hybrids:
        return decision
    from edgeprof.decision.hybrid import cheapest_meeting, hybrid_sentence

    sentences = [hybrid_sentence(h, config.min_pass_rate) for h in hybrids]
    winner, why = cheapest_meeting(hybrids, decision, config.min_pass_rate)
    if why:
        sentences.append(why)
    return replace(
        decision,
        verdict=" ".join([decision.verdict, *sentences]),
        winner=winner,
        hybrids=tuple(hybrids),
    )


def _answer_warnings(store: Any, runs: Sequence[TargetRun]) -> tuple[list[str], dict[str, str]]:
    """(the warnings of the device runs, {target: why} for those whose answers look
    degenerate): the verdict must not call such a target a winner without saying so."""
    from edgeprof.analysis.summary import answer_warnings, summarize_run

    lines: list[str] = []
    degenerate: dict[str, str] = {}
    for run in runs:
        summary = summarize_run(store, run.run_id)
        lines += [f"{run.target}: {w}" for w in answer_warnings([summary])]
        if summary.degenerate is not None:
            d = summary.degenerate
            degenerate[run.target] = f"{d.n_degenerate} of {d.n_answers} answers"
    return lines, degenerate


def _task_floor(store: Any, comparison: Comparison, config: DecideConfig) -> tuple[Any, Any]:
    from edgeprof.decision.task_quality import TaskFloor, apply_task_floor
    from edgeprof.measure.workload import load_suite

    suite = load_suite(config.prompts)[0].suite
    return apply_task_floor(store, comparison, TaskFloor(config.min_pass_rate, suite))


def _cloud_only(
    e: Any, comparison: Comparison, costs: Any, runs: list[Any], inputs: list[Figure],
    notes: list[str], probe: Any,
) -> Decision:  # fmt: skip
    """Every device target is below the task floor: the verdict is the cloud's."""
    return Decision(
        verdict=str(e), winner=e.winner, deployment=costs.deployment, comparison=comparison,
        runs=tuple(runs), inputs=tuple(inputs), rows=(), notes=tuple(notes),
        device=probe.device_dict(), task_quality=e.report,
    )  # fmt: skip


def _check(config: DecideConfig) -> None:
    parse_deployment(config.deployment)
    if not config.requests_per_day > 0 or config.requests_per_day == float("inf"):
        raise UsageError(
            f"`requests_per_day` must be a number above 0 (got {config.requests_per_day})"
        )
    if config.max_ttft_s is not None and not config.max_ttft_s > 0:
        raise UsageError(f"`max_ttft_s` must be above 0 seconds (got {config.max_ttft_s})")
    if (config.price_in_usd_per_m is None) != (config.price_out_usd_per_m is None):
        raise UsageError("give both `price_in_usd_per_m` and `price_out_usd_per_m`, or neither")
    if config.raw and config.chat_template is not None:
        raise UsageError("`raw` takes no `chat_template`: give one of the two")
    from edgeprof.decision.server_targets import check_server_targets

    check_server_targets(config.device_targets, config.on_device)
    if config.api_key_env and not config.base_url:
        raise UsageError("`api_key_env` goes with `base_url`: the endpoint to profile live")
    from edgeprof.decision import prices

    priced_by_user = config.base_url and config.price_in_usd_per_m is not None
    for ref in [] if priced_by_user else config.clouds:
        prices.lookup_price(ref)  # an unknown model fails now, not after minutes of profiling
    if config.device:
        from edgeprof.decision.presets import get_preset

        get_preset(config.device)  # an unknown id fails now, not after the probe
    elif config.deployment == "dedicated" and config.device_price_usd is None:
        cost_inputs(config, None)  # raises: a dedicated device needs a price


__all__ = [
    "DEFAULT_CLOUDS",
    "DecideConfig",
    "Decision",
    "StepEvent",
    "TargetRun",
    "cost_inputs",
    "decide",
]
