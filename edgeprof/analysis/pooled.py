"""Comparable pooled results: one row per device for each group of runs that measured the same
thing, in a database merged from several devices (`report --by device`, the HTML report).

A run's comparability key is `reuse.RunKey` (backend, model sha256, quant, threads, max
tokens, prompt-suite sha256, backend settings, concurrency) with the device left out, plus
where the model ran (`comparability.accelerator`: "CPU only", "GPU (all 31 layers)", an ONNX
Runtime provider) and the ggml backends llama.cpp was built with ("CPU", "CUDA+CPU"). CPU
instruction-set flags (AVX2, NEON) are not in the key: they describe the device, which is what
differs between the rows of a group by design.

Each row is the median over that device's runs in the group of each run's figure (decode and
prefill tok/s, TTFT p50, J/output token, W), with the number of runs. Groups that measured the
same model but are not comparable are named with the key fields that differ. Energy figures
carry their basis (what the sensors covered); rows of one group on different bases get a note
saying they are not ranked against each other.

`pool` and the functions it calls are pure over summaries, run rows and sensor rows;
`pooled_report` reads them from a store.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from statistics import median
from typing import Any

from edgeprof.analysis.comparability import accelerator
from edgeprof.analysis.energy import SensorSeries, select_domains
from edgeprof.analysis.summary import RunSummary, summarize
from edgeprof.decision.reuse import RunKey
from edgeprof.power import POWER_METRICS, WHOLE_DEVICE, WHOLE_SOC
from edgeprof.report.formatting import DASH
from edgeprof.store.db import Store

# The key's fields as users see them (JSON, notes), in this order.
KEY_FIELDS = ("backend", "model_sha256", "quant", "threads", "max_tokens", "suite_sha256",
              "concurrency", "settings", "accelerator", "build")  # fmt: skip
# The figures of a row: each the median of the device's runs' own (RunSummary attribute).
FIGURES = {
    "decode_tps": "decode_tps_mean",
    "prefill_tps": "prefill_tps_mean",
    "ttft_p50_s": "ttft_p50_s",
    "j_per_output_token": "j_per_output_token",
    "avg_power_w": "avg_power_w",
}
ESTIMATED = "estimated"
NOT_RANKED = "not ranked against each other"


@dataclass(frozen=True)
class ComparabilityKey:
    """What runs on different devices must share to sit in one table."""

    run: RunKey  # device_id "": the same measurement on whichever device
    accelerator: str | None  # where the model ran: "CPU only", "GPU (all 31 layers)", a provider
    build: str | None  # the ggml backends llama.cpp was built with: "CPU", "CUDA+CPU"

    def fields(self) -> dict[str, Any]:
        """The key as JSON values, in KEY_FIELDS order (settings as a name -> value map)."""
        r = self.run
        return {
            "backend": r.backend,
            "model_sha256": r.model_sha256,
            "quant": r.quant,
            "threads": r.threads,
            "max_tokens": r.max_tokens,
            "suite_sha256": r.suite_sha256,
            "concurrency": r.concurrency,
            "settings": {name: json.loads(value) for name, value in r.settings},
            "accelerator": self.accelerator,
            "build": self.build,
        }

    @property
    def key_id(self) -> str:
        """8 hex digits naming the group, the same in every database and export."""
        text = json.dumps(self.fields(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:8]


@dataclass(frozen=True)
class RunFacts:
    """One run as pooling sees it."""

    summary: RunSummary
    key: ComparabilityKey
    energy_basis: str | None  # "whole board", "package+DRAM", "GPU only", "estimated", ...


@dataclass(frozen=True)
class DeviceRow:
    device_id: str
    device_label: str | None
    cpu_model: str | None
    run_ids: tuple[str, ...]
    decode_tps: float | None
    prefill_tps: float | None
    ttft_p50_s: float | None
    j_per_output_token: float | None
    avg_power_w: float | None
    energy_basis: str | None

    @property
    def n_runs(self) -> int:
        return len(self.run_ids)

    @property
    def name(self) -> str:
        return self.device_label or self.device_id[:8]

    def to_dict(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "device_label": self.device_label,
            "cpu_model": self.cpu_model,
            "n_runs": self.n_runs,
            "run_ids": list(self.run_ids),
            **{name: getattr(self, name) for name in FIGURES},
            "energy_basis": self.energy_basis,
        }


@dataclass(frozen=True)
class PooledGroup:
    key: ComparabilityKey
    target: str | None  # the model's name as the runs recorded it (first run's)
    rows: tuple[DeviceRow, ...]  # fastest decode first
    notes: tuple[str, ...]  # e.g. energy on different bases

    @property
    def title(self) -> str:
        """ "group 3f9a1c2e: smollm2.gguf · llamacpp · Q4_1 · 4 threads · 64 tokens · CPU only"."""
        k = self.key.fields()
        return (
            f"group {self.key.key_id}: {self.target or DASH} · {k['backend']} · "
            f"{k['quant'] or DASH} · {k['threads'] or DASH} threads · {k['max_tokens']} tokens"
            f" · {k['accelerator'] or DASH}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "key_id": self.key.key_id,
            "key": self.key.fields(),
            "target": self.target,
            "rows": [r.to_dict() for r in self.rows],
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class PooledReport:
    groups: tuple[PooledGroup, ...]
    notes: tuple[str, ...]  # groups of one model that are not comparable; runs left out

    @property
    def n_devices(self) -> int:
        return len({r.device_id for g in self.groups for r in g.rows})

    def to_dict(self) -> dict[str, Any]:
        return {"groups": [g.to_dict() for g in self.groups], "notes": list(self.notes)}


# -- a run's key and energy basis (pure) ------------------------------------------------------


def comparability_key(
    run: Mapping[str, Any], summary: RunSummary, prompt_ids: Iterable[str] = ()
) -> ComparabilityKey:
    """The key of `run` (a `runs` row, params parsed). Runs recorded before the runner kept
    the suite's hash are keyed on the hash of the prompt ids their requests used (each id is
    the sha256 of a prompt's messages), marked "prompts:"."""
    params = run.get("params")
    params = params if isinstance(params, dict) else {}
    settings = params.get("settings")
    suite = params.get("suite_sha256") or _prompts_hash(prompt_ids)
    key = RunKey(
        device_id="",
        backend=str(run.get("backend")),
        model_sha256=str(run.get("model_sha256") or ""),
        quant=run.get("quant"),
        threads=params.get("threads"),
        max_tokens=int(params.get("max_tokens") or 0),
        suite_sha256=suite,
        settings=tuple(sorted((str(k), json.dumps(v, sort_keys=True)) for k, v in settings.items()))
        if isinstance(settings, dict)
        else (),
        concurrency=int(params.get("concurrency") or 1),
    )
    backends = summary.provenance.get("backends")
    build = "+".join(str(b) for b in backends) if isinstance(backends, list) and backends else None
    return ComparabilityKey(run=key, accelerator=accelerator(summary), build=build)


def _prompts_hash(prompt_ids: Iterable[str]) -> str:
    ids = sorted({str(p) for p in prompt_ids if p})
    return "prompts:" + hashlib.sha256("\n".join(ids).encode()).hexdigest() if ids else ""


def energy_basis(sensors: Sequence[Mapping[str, Any]], energy_method: str | None) -> str | None:
    """What a run's energy figures cover, from its `sensors` rows: "whole board", "SoC",
    "package+DRAM", "rails", "GPU only" (each "+ GPU" where a discrete GPU is added), or
    "estimated" where any of it came from the estimator; None without energy figures."""
    if not energy_method:
        return None
    if ESTIMATED in energy_method:
        return ESTIMATED
    series = [
        SensorSeries(str(s["sensor"]), str(s.get("domain") or ""), str(s["metric"]),
                     str(s.get("method") or "measured"), ())
        for s in sensors
        if s.get("metric") in POWER_METRICS
    ]  # fmt: skip
    domains = {s.domain for s in select_domains(series)}
    gpu = "gpu" in domains
    base = _base(domains - {"gpu"})
    if base is None:
        return "GPU only" if gpu else "unknown"
    return f"{base} + GPU" if gpu else base


def _base(domains: set[str]) -> str | None:
    if domains & set(WHOLE_DEVICE):
        return "whole board"
    if domains & set(WHOLE_SOC):
        return "SoC"
    if domains & {"package", "dram"}:
        return "package+DRAM" if {"package", "dram"} <= domains else "package only"
    if "rail" in domains:
        return "rails"
    return None


# -- pooling (pure) ---------------------------------------------------------------------------


def pool(facts: Sequence[RunFacts]) -> PooledReport:
    """Complete local runs grouped by key, one row per device per group; notes for what was
    left out and for groups of one model that are not comparable."""
    kept = [f for f in facts if not f.summary.is_remote and f.summary.status == "complete"]
    by_key: dict[ComparabilityKey, list[RunFacts]] = {}
    for f in kept:
        by_key.setdefault(f.key, []).append(f)
    groups = tuple(_group(key, runs) for key, runs in by_key.items())
    return PooledReport(groups, (*_left_out(facts), *_differences(groups)))


def _group(key: ComparabilityKey, runs: list[RunFacts]) -> PooledGroup:
    by_device: dict[str, list[RunFacts]] = {}
    for f in runs:
        by_device.setdefault(f.summary.device_id, []).append(f)
    rows = sorted(
        (_row(device_runs) for device_runs in by_device.values()),
        key=lambda r: (r.decode_tps is None, -(r.decode_tps or 0.0), r.name),
    )
    return PooledGroup(key, runs[0].summary.target, tuple(rows), tuple(_basis_notes(rows)))


def _row(runs: list[RunFacts]) -> DeviceRow:
    first = runs[0].summary
    bases = sorted({f.energy_basis for f in runs if f.energy_basis})
    figures = {name: _median(getattr(f.summary, attr) for f in runs)
               for name, attr in FIGURES.items()}  # fmt: skip
    return DeviceRow(
        device_id=first.device_id,
        device_label=first.device_label,
        cpu_model=first.cpu_model,
        run_ids=tuple(f.summary.run_id for f in runs),
        energy_basis=" / ".join(bases) if bases else None,
        **figures,
    )


def _median(values: Iterable[float | None]) -> float | None:
    known = [float(v) for v in values if v is not None]
    return median(known) if known else None


def _basis_notes(rows: Sequence[DeviceRow]) -> list[str]:
    with_energy = [r for r in rows if r.j_per_output_token is not None]
    if len({r.energy_basis for r in with_energy}) < 2:
        return []
    each = "; ".join(f"{r.name}: {r.energy_basis or DASH}" for r in with_energy)
    return [f"J/output token and W have different bases ({each}): {NOT_RANKED}"]


def _left_out(facts: Sequence[RunFacts]) -> list[str]:
    remote = [f for f in facts if f.summary.is_remote]
    unfinished = [f for f in facts if not f.summary.is_remote and f.summary.status != "complete"]
    notes = []
    if remote:
        notes.append(f"{_runs(remote)} left out: remote targets (by device compares local runs)")
    if unfinished:
        states = ", ".join(sorted({f.summary.status for f in unfinished}))
        notes.append(f"{_runs(unfinished)} left out: not complete ({states})")
    return notes


def _runs(facts: Sequence[RunFacts]) -> str:
    ids = [f.summary.run_id[-8:] for f in facts]
    return f"run {ids[0]}" if len(ids) == 1 else f"runs {', '.join(ids)}"


def _differences(groups: Sequence[PooledGroup]) -> list[str]:
    """For each model measured in several groups: the key fields that keep them apart."""
    by_model: dict[str, list[PooledGroup]] = {}
    for g in groups:
        by_model.setdefault(g.key.run.model_sha256, []).append(g)
    notes = []
    for same_model in by_model.values():
        if len(same_model) < 2:
            continue
        named = ", ".join(
            f"{g.key.key_id} ({', '.join(r.name for r in g.rows)})" for g in same_model
        )
        differ = "; ".join(differing_fields([g.key for g in same_model]))
        notes.append(
            f"groups {named} measured the same model ({same_model[0].target or DASH}) but are "
            f"not comparable: they differ in {differ}"
        )
    return notes


def differing_fields(keys: Sequence[ComparabilityKey]) -> list[str]:
    """ "threads (4 vs 8)", "setting n_ctx (2048 vs 4096)": each key field whose value is not
    the same in all `keys`, with the values in the keys' order."""
    fields = [k.fields() for k in keys]
    out = []
    for name in KEY_FIELDS:
        if name == "settings":
            out += _differing_settings([f["settings"] for f in fields])
        elif len({_text(f[name]) for f in fields}) > 1:
            out.append(f"{name} ({' vs '.join(_text(f[name]) for f in fields)})")
    return out


def _differing_settings(settings: Sequence[Mapping[str, Any]]) -> list[str]:
    names = sorted({n for s in settings for n in s})
    return [
        f"setting {n} ({' vs '.join(_text(s.get(n)) for s in settings)})"
        for n in names
        if len({_text(s.get(n)) for s in settings}) > 1
    ]


def _text(value: Any) -> str:
    if value is None:
        return DASH
    if (isinstance(value, str) and len(value) == 64) or str(value).startswith("prompts:"):
        return str(value)[-64:][:12]  # a sha256: its first 12 hex digits say enough
    return value if isinstance(value, str) else json.dumps(value)


# -- from a store -----------------------------------------------------------------------------


def run_facts(store: Store, summaries: Sequence[RunSummary]) -> list[RunFacts]:
    """Each summary's key and energy basis, from its run, request and sensor rows."""
    runs = {str(r["id"]): r for r in store.runs([s.run_id for s in summaries])}
    facts = []
    for s in summaries:
        params = runs[s.run_id].get("params")
        prompt_ids: list[str] = []
        if not (isinstance(params, dict) and params.get("suite_sha256")):
            prompt_ids = [r["prompt_id"] for r in store.requests(s.run_id) if not r["warmup"]]
        key = comparability_key(runs[s.run_id], s, prompt_ids)
        facts.append(RunFacts(s, key, energy_basis(store.sensors(s.run_id), s.energy_method)))
    return facts


def pooled_report(
    store: Store,
    run_ids: Sequence[str] | None = None,
    summaries: Sequence[RunSummary] | None = None,
) -> PooledReport:
    """The by-device report of the runs in `store` (or `run_ids`; `summaries` when the caller
    has them already)."""
    if summaries is None:
        summaries = summarize(store, list(run_ids) if run_ids else None)
    return pool(run_facts(store, summaries))
