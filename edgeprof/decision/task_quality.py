"""Task quality in the verdict: a pass-rate floor applied to device and cloud targets alike,
$ and J per passing answer, and the sentences the verdict opens with (docs/quality.md).

A target's pass rate comes from the graded runs of the suite (`--prompts`): a device or live
cloud target's own run, or for a cloud model from the price list, the latest graded remote run
of that model on the suite in the database. A cloud model without one is assumed to pass, and
the verdict says so; a device target without one is left out by an active floor, as the
quantization floor leaves out device targets it cannot check.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from edgeprof.decision.compare import CloudTarget, Comparison
from edgeprof.errors import UsageError
from edgeprof.grading.rates import PassRate, TaskQuality
from edgeprof.store.db import Store

Side = Literal["device", "cloud"]


@dataclass(frozen=True)
class TaskFloor:
    min_pass_rate: float | None = None  # 0..1
    suite: str | None = None  # the suite whose grades count (the prompts' suite name)

    def check(self) -> None:
        if self.min_pass_rate is not None and not 0 <= self.min_pass_rate <= 1:
            raise UsageError(
                f"`min_pass_rate` is a share from 0 to 1 (0.8 for 80%), got {self.min_pass_rate}"
            )


@dataclass(frozen=True)
class TargetTaskQuality:
    name: str
    side: Side
    run_id: str | None  # the graded run its pass rate comes from
    pass_rate: PassRate | None  # None: not measured
    usd_per_request: float | None = None
    usd_per_passing_answer: float | None = None
    j_per_request: float | None = None
    j_per_passing_answer: float | None = None
    meets_floor: bool | None = None  # None: no floor, or not measured (a cloud: assumed)


@dataclass(frozen=True)
class TaskQualityReport:
    floor: TaskFloor
    suite: str | None
    targets: tuple[TargetTaskQuality, ...]
    left_out: tuple[tuple[str, str], ...]  # (target, why)
    sentences: tuple[str, ...]  # what the verdict paragraph opens with: pass rates
    closing: tuple[str, ...]  # ...and closes with: what was not measured
    expectations: bool  # the suite has any


def per_passing(per_request: float | None, rate: PassRate | None) -> float | None:
    """A request's cost or energy divided by the share of answers that pass: what one
    passing answer costs. None where nothing passes or nothing was measured."""
    if per_request is None or rate is None or rate.rate <= 0:
        return None
    return per_request / rate.rate


def short_name(name: str) -> str:
    """`llamacpp:SmolLM2-135M-Instruct-Q4_1.gguf [01J...]` -> `SmolLM2-135M-Instruct-Q4_1`."""
    head = name.split(" [", 1)[0]
    head = head.split(":", 1)[1] if ":" in head else head
    return head.removesuffix(".gguf").removesuffix(".onnx")


def rate_phrase(r: PassRate) -> str:
    return f"{r.rate:.0%} [{r.low:.0%}–{r.high:.0%}]"


def floor_reason(r: PassRate | None, floor: float, suite: str | None) -> str:
    if r is None:
        return f"task quality not measured on suite {suite or '?'}: grade a run of it"
    return f"passes {rate_phrase(r)} of the suite's checks (n={r.n}), below the {floor:.0%} floor"


def _device_figures(c: Comparison, name: str) -> tuple[float | None, float | None]:
    pair = next((p for p in c.pairs if p.device == name), None)
    if pair is None:
        return None, None
    return pair.result.device_cost_per_request_usd, pair.result.device_energy_j_per_request


def _cloud_usd(c: Comparison, name: str) -> float | None:
    pair = next((p for p in c.pairs if p.cloud == name), None)
    return None if pair is None else pair.result.cloud_cost_per_request_usd


def _cloud_run(store: Store, cloud: CloudTarget, suite: str | None) -> str | None:
    """The run whose grades stand for a cloud target: its own, or the latest graded remote run
    of the same model on the suite."""
    if cloud.run_id is not None or cloud.kind != "model" or suite is None:
        return cloud.run_id
    model = cloud.name.split(":", 1)[-1]
    row = store.db.execute(
        "SELECT r.id FROM runs r WHERE r.target_kind = 'remote' AND r.target = ? "
        "AND r.prompt_suite = ? AND r.status = 'complete' "
        "AND EXISTS (SELECT 1 FROM grades g WHERE g.run_id = r.id) ORDER BY r.id DESC LIMIT 1",
        [model, suite],
    ).fetchone()
    return str(row[0]) if row else None


def _suite_matches(store: Store, run_id: str | None, suite: str | None) -> bool:
    if run_id is None:
        return False
    if suite is None:
        return True
    row = store.db.execute("SELECT prompt_suite FROM runs WHERE id = ?", [run_id]).fetchone()
    return bool(row and row[0] == suite)


def _target(
    name: str, side: Side, run_id: str | None, quality: Mapping[str, TaskQuality],
    usd: float | None, j: float | None, floor: float | None,
) -> TargetTaskQuality:  # fmt: skip
    q = quality.get(run_id or "")
    rate = q.pass_rate if q is not None else None
    meets = None if floor is None or rate is None else rate.rate >= floor
    return TargetTaskQuality(
        name, side, run_id, rate, usd, per_passing(usd, rate), j, per_passing(j, rate), meets
    )


def task_targets(
    store: Store, c: Comparison, floor: TaskFloor
) -> tuple[list[TargetTaskQuality], bool]:
    """Every target's pass rate on the suite, and whether the suite has expectations."""
    from edgeprof.grading.grade_runs import quality_of_runs

    runs: dict[str, str | None] = {d.name: d.run_id for d in c.devices}
    runs.update({t.name: _cloud_run(store, t, floor.suite) for t in c.clouds})
    runs = {k: v if _suite_matches(store, v, floor.suite) else None for k, v in runs.items()}
    quality = quality_of_runs(store, [r for r in runs.values() if r])
    out = []
    for d in c.devices:
        usd, j = _device_figures(c, d.name)
        out.append(_target(d.name, "device", runs[d.name], quality, usd, j, floor.min_pass_rate))
    for t in c.clouds:
        out.append(_target(t.name, "cloud", runs[t.name], quality, _cloud_usd(c, t.name), None,
                           floor.min_pass_rate))  # fmt: skip
    return out, _has_expectations(store, floor.suite)


def _has_expectations(store: Store, suite: str | None) -> bool:
    if suite is None:
        return store.db.execute("SELECT 1 FROM expectations LIMIT 1").fetchone() is not None
    row = store.db.execute("SELECT 1 FROM expectations WHERE suite = ? LIMIT 1", [suite])
    return row.fetchone() is not None


def verdict_sentences(
    targets: Sequence[TargetTaskQuality], floor: TaskFloor, expectations: bool
) -> tuple[list[str], list[str]]:
    """(opening, closing): the verdict opens with the devices' pass rates (one below the
    floor first) and closes with what was not measured. Pure."""
    if not expectations:
        return [], ["Task quality not measured: the suite has no expectations (docs/quality.md)."]
    devices = [t for t in targets if t.side == "device"]
    clouds = [t for t in targets if t.side == "cloud"]
    rated = [(t, t.pass_rate) for t in clouds if t.pass_rate is not None]
    best = max(rated, key=lambda pair: pair[1].rate, default=None)
    against = f" against {best[1].rate:.0%} for {short_name(best[0].name)}" if best else ""
    ranked: list[tuple[bool, str]] = []
    for d in devices:
        if d.pass_rate is None:
            continue
        below = d.meets_floor is False and floor.min_pass_rate is not None
        tail = f": below the {floor.min_pass_rate:.0%} floor" if below else ""
        text = (f"{short_name(d.name)} passes {rate_phrase(d.pass_rate)} of the suite's checks"
                f"{against}{tail}.")  # fmt: skip
        ranked.append((not below, text))
    opening = [text for _, text in sorted(ranked, key=lambda r: r[0])]  # below the floor first
    closing = []
    unmeasured = [short_name(t.name) for t in clouds if t.pass_rate is None]
    if unmeasured:
        closing.append(
            f"Task quality not measured for the cloud side ({', '.join(unmeasured)}): "
            "assumed to pass."
        )
    if any(t.pass_rate is None for t in devices):
        closing.append("Task quality not measured for some device targets: grade their runs.")
    return opening, closing


def apply_task_floor(
    store: Store, c: Comparison, floor: TaskFloor
) -> tuple[Comparison, TaskQualityReport]:
    """Leave out the targets below the floor (device and cloud alike) and the pairs they
    were in; the report holds every target's pass rate and the verdict's sentences."""
    floor.check()
    targets, expectations = task_targets(store, c, floor)
    opening, closing = verdict_sentences(targets, floor, expectations)
    left: list[tuple[str, str]] = []
    if floor.min_pass_rate is not None and expectations:
        for t in targets:
            if t.meets_floor is False or (t.side == "device" and t.pass_rate is None):
                left.append((t.name, floor_reason(t.pass_rate, floor.min_pass_rate, floor.suite)))
    report = TaskQualityReport(floor, floor.suite, tuple(targets), tuple(left),
                               tuple(opening), tuple(closing), expectations)  # fmt: skip
    if not left:
        return c, report
    gone = {name for name, _ in left}
    devices = tuple(d for d in c.devices if d.name not in gone)
    clouds = tuple(t for t in c.clouds if t.name not in gone)
    if not devices:
        raise NoDeviceMeetsFloor(report)
    if not clouds:
        why = "; ".join(f"{short_name(n)} {w}" for n, w in left)
        raise UsageError(
            f"no cloud target meets the task floor (`min_pass_rate` {floor.min_pass_rate:.0%}): "
            f"{why}; lower the floor or add another `cloud_models` target"
        )
    pairs = tuple(p for p in c.pairs if p.device not in gone and p.cloud not in gone)
    notes = (*c.notes, *(f"left out by the task floor: {n}: {w}" for n, w in left))
    return dataclasses.replace(c, devices=devices, clouds=clouds, pairs=pairs, notes=notes), report


class NoDeviceMeetsFloor(UsageError):
    """Every on-device target is below the task floor: the verdict is the cloud's, without a
    break-even to compute. The message opens with the verdict's sentences."""

    def __init__(self, report: TaskQualityReport) -> None:
        self.report = report
        winner, sentence = cloud_only_verdict(report)
        super().__init__(
            " ".join([*report.sentences, sentence, *report.closing])
            + " (lower `min_pass_rate` to price the device anyway)"
        )
        self.winner = winner


def cloud_only_verdict(report: TaskQualityReport) -> tuple[str, str]:
    """(winner, sentence) when no device target passes the floor: the cheapest cloud target
    per passing answer among those that pass (or are assumed to). Pure."""
    left = dict(report.left_out)
    clouds = [t for t in report.targets if t.side == "cloud" and t.name not in left]
    priced = [t for t in clouds if t.usd_per_passing_answer is not None]
    best = min(priced, key=lambda t: t.usd_per_passing_answer or 0.0, default=None)
    if best is None:
        best = clouds[0] if clouds else None
    if best is None:
        return "none", "No target meets the task floor."
    cost = (
        f" at ${best.usd_per_passing_answer:.6f}".rstrip("0").rstrip(".") + " per passing answer"
        if best.usd_per_passing_answer is not None
        else ""
    )
    return best.name, (
        f"No on-device target does the feature well enough: {short_name(best.name)} in the "
        f"cloud is the option that does{cost}."
    )


def report_dict(report: TaskQualityReport) -> dict[str, object]:
    return dataclasses.asdict(report)
