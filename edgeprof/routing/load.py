"""A replay's inputs from a profile database: the prompts a device run and a cloud run of the
same suite both answered and graded (matched by prompt id, warm-ups aside), and the figures
that price them, built from the runs as `compare` builds its targets."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from edgeprof.decision.compare import Figure, targets_from_runs
from edgeprof.decision.economics import CloudPrice, DeviceCosts
from edgeprof.errors import PricingError, UsageError
from edgeprof.grading.grades import PAIRWISE_INDEX, RULE, Expectations, Grade
from edgeprof.grading.rates import answer_outcome
from edgeprof.grading.records import grades_of_runs, load_expectations
from edgeprof.routing.cases import CloudSide, DeviceAnswer, PromptCase
from edgeprof.routing.pricing import RoutePricing
from edgeprof.routing.signals import FORMAT_CHECKS, SIGNALS, Signal
from edgeprof.store.db import Store
from edgeprof.store.rows import RequestRow, RunRow

NO_SIGNALS = (
    "the device run has no signals: profile again with a current edgeprof; only rule-check "
    "and prompt policies are evaluated"
)


@dataclass(frozen=True)
class Replay:
    """Everything a replay needs, read once; `replay.evaluate` works on it alone."""

    device_run_id: str
    cloud_run_id: str
    suite: str
    device_name: str  # as compare names targets: backend:model [run id]
    cloud_name: str
    cases: tuple[PromptCase, ...]
    pricing: RoutePricing
    inputs: tuple[Figure, ...]  # the device's performance and the cloud's price, with sources
    signals: tuple[Signal, ...]  # stored for every device answer: the ones a cascade tries
    format_checks: tuple[str, ...]  # the format checks the matched prompts carry
    missing_on_device: tuple[str, ...]  # prompts (names) the cloud run answered, not the device
    missing_on_cloud: tuple[str, ...]
    ungraded: tuple[str, ...]  # prompts answered on a side without a grade there
    notes: tuple[str, ...]


def load_replay(
    store: Store,
    device_run: str,
    cloud_run: str,
    costs: DeviceCosts,
    *,
    cloud_price: CloudPrice | None = None,
    format_checks: Iterable[str] = FORMAT_CHECKS,
) -> Replay:
    """Read and match two graded runs. `cloud_price` replaces the cloud run's own price (the
    price list's, or what it recorded); `format_checks` are the check types whose failure on
    a device answer is a reason to escalate (checks that need no expected answer)."""
    device_id, cloud_id = store.resolve_run_id(device_run), store.resolve_run_id(cloud_run)
    if device_id == cloud_id:
        raise UsageError("`device_run` and `cloud_run` are the same run; give one of each")
    runs = {r["id"]: r for r in store.runs([device_id, cloud_id])}
    device, cloud = runs[device_id], runs[cloud_id]
    _check_kinds(device, cloud)
    suite = _same_suite(device, cloud)
    expectations = load_expectations(store, suite)
    if not expectations:
        raise UsageError(
            f"suite {suite!r} has no expectations, so nothing says which answers pass; add "
            "checks to its prompts and re-grade with `edgeprof grade RUN --prompts FILE` "
            "(docs/quality.md)"
        )
    grades = _grades_by_request(store, [device_id, cloud_id])
    names = _prompt_names(store)
    checks = frozenset(format_checks)
    device_answers, device_skipped = _device_answers(
        store.requests(device_id), grades, expectations, checks
    )
    cloud_sides, cloud_skipped = _cloud_sides(store.requests(cloud_id), grades, expectations)
    device_ungraded, cloud_ungraded = device_skipped.ungraded, cloud_skipped.ungraded
    matched = [p for p in device_answers if p in cloud_sides]
    if not matched:
        raise UsageError(
            f"no prompt was answered and graded in both run {device_id[:8]} and run "
            f"{cloud_id[:8]}; replay two runs of the same prompts, graded (`edgeprof grade`)"
        )
    cases = tuple(
        PromptCase(p, names.get(p, p[:8]), _kind(expectations.get(p)),
                   tuple(device_answers[p]), cloud_sides[p])
        for p in matched
    )  # fmt: skip
    pricing, inputs, device_name, cloud_name = _pricing(
        store, device_id, cloud_id, costs, cloud_price
    )
    signals, notes = _signals(cases)
    unjudged = device_skipped.unjudged + cloud_skipped.unjudged
    if unjudged:
        notes.append(
            f"{unjudged} answers have a judged check (llm-rubric) without a verdict: they pass "
            "or fail on their other checks; judge them (`edgeprof grade RUN --judge BACKEND:MODEL`)"
        )
    notes += _status_notes(device, cloud)
    found_checks = sorted(
        {a.type for p in matched if (e := expectations.get(p)) for a in e.assertions} & checks
    )
    if not found_checks:
        asked = (f"the suite's prompts carry no format check ({', '.join(sorted(checks))})"
                 if checks else "no format check asked (`--format-checks`)")  # fmt: skip
        notes.append(f"{asked}: no cascade escalates on a failed check")
    # answered = graded or not: a prompt answered on both sides but graded on one only is
    # "not graded", not "answered by one run only"
    on_device, on_cloud = set(device_answers) | device_ungraded, set(cloud_sides) | cloud_ungraded
    partly = sorted(set(matched) & (device_ungraded | cloud_ungraded))
    if partly:
        notes.append(
            f"{len(partly)} prompts partly graded, replayed on their graded answers only: "
            + ", ".join(_named(set(partly), names)[:5])
            + (f" and {len(partly) - 5} more" if len(partly) > 5 else "")
        )
    return Replay(
        device_id, cloud_id, suite, device_name, cloud_name, cases, pricing, inputs,
        signals, tuple(found_checks),
        missing_on_device=_named(on_cloud - on_device, names),
        missing_on_cloud=_named(on_device - on_cloud, names),
        ungraded=_named((on_device & on_cloud) - set(matched), names),
        notes=tuple(notes),
    )  # fmt: skip


def _check_kinds(device: RunRow, cloud: RunRow) -> None:
    if device.get("target_kind") == "remote":
        raise UsageError(
            f"run {device['id'][:8]} ({device['backend']}:{device['target']}) is a cloud run; "
            "give a device run as `device_run`"
        )
    if cloud.get("target_kind") != "remote":
        raise UsageError(
            f"run {cloud['id'][:8]} ({cloud['backend']}:{cloud['target']}) ran on the device; "
            "give a cloud run as `cloud_run`"
        )


def _same_suite(device: RunRow, cloud: RunRow) -> str:
    a, b = device.get("prompt_suite"), cloud.get("prompt_suite")
    if not a or a != b:
        raise UsageError(
            f"the runs answered different suites (device run {device['id'][:8]}: {a!r}, cloud "
            f"run {cloud['id'][:8]}: {b!r}); replay two runs of the same suite"
        )
    return str(a)


def _grades_by_request(store: Store, run_ids: Sequence[str]) -> dict[str, list[Grade]]:
    grades = grades_of_runs(store, run_ids)
    for run_id in run_ids:
        if not any(g.run_id == run_id for g in grades):
            raise UsageError(f"run {run_id[:8]} is not graded: run `edgeprof grade {run_id}` first")
    out: dict[str, list[Grade]] = defaultdict(list)
    for g in grades:
        if g.assertion_index != PAIRWISE_INDEX:
            out[g.request_id].append(g)
    return out


def _prompt_names(store: Store) -> dict[str, str]:
    return {str(r[0]): str(r[1]) for r in store.db.execute("SELECT id, name FROM prompts")}


def _kind(exp: Expectations | None) -> str | None:
    return exp.kind if exp is not None and exp.kind else None


def _measured(rows: Sequence[RequestRow]) -> list[RequestRow]:
    return [r for r in rows if not r["warmup"] and r["prompt_id"]]


@dataclass
class _Skipped:
    """What reading one run's graded answers passed over."""

    ungraded: set[str] = field(default_factory=set)  # prompts with an answer without grades
    unjudged: int = 0  # answers with a judged check (llm-rubric) that has no verdict


def _graded(
    rows: Sequence[RequestRow],
    grades: Mapping[str, list[Grade]],
    expectations: Mapping[str, Expectations],
    skipped: _Skipped,
) -> Iterator[tuple[str, RequestRow, list[Grade], bool]]:
    """The measured answers with their grades and whether they pass, by prompt id; the
    prompt of an answer with no grade goes into `skipped` instead."""
    for r in _measured(rows):
        prompt, mine = str(r["prompt_id"]), grades.get(str(r["id"]), [])
        if not mine:
            skipped.ungraded.add(prompt)
            continue
        passed, unjudged = answer_outcome(mine, expectations.get(prompt))
        skipped.unjudged += unjudged > 0
        yield prompt, r, mine, passed


def _device_answers(
    rows: Sequence[RequestRow],
    grades: Mapping[str, list[Grade]],
    expectations: Mapping[str, Expectations],
    checks: frozenset[str],
) -> tuple[dict[str, list[DeviceAnswer]], _Skipped]:
    out: dict[str, list[DeviceAnswer]] = defaultdict(list)
    skipped = _Skipped()
    for prompt, r, mine, passed in _graded(rows, grades, expectations, skipped):
        check_failed = any(
            g.grader == RULE and g.assertion_type in checks and not g.passed for g in mine
        )
        out[prompt].append(
            DeviceAnswer(
                str(r["id"]), passed, bool(r["error"]), check_failed,
                int(r["input_tokens"] or 0), int(r["output_tokens"] or 0),
                None if r["error"] else r["e2e_s"],
                r.get("logprob_mean"), r.get("logprob_min"), r.get("entropy_mean"),
                r.get("first_margin"),
            )
        )  # fmt: skip
    return out, skipped


def _cloud_sides(
    rows: Sequence[RequestRow],
    grades: Mapping[str, list[Grade]],
    expectations: Mapping[str, Expectations],
) -> tuple[dict[str, CloudSide], _Skipped]:
    by_prompt: dict[str, list[tuple[RequestRow, bool]]] = defaultdict(list)
    skipped = _Skipped()
    for prompt, r, _mine, passed in _graded(rows, grades, expectations, skipped):
        by_prompt[prompt].append((r, passed))
    return {p: _side(answers) for p, answers in by_prompt.items()}, skipped


def _side(answers: Sequence[tuple[RequestRow, bool]]) -> CloudSide:
    n = len(answers)

    def mean(values: Sequence[float]) -> float | None:
        return sum(values) / len(values) if values else None

    rows = [r for r, _ in answers]
    costs = [float(c) for r in rows if (c := r["cost_usd"]) is not None]
    times = [float(t) for r in rows if not r["error"] and (t := r["e2e_s"]) is not None]
    return CloudSide(
        n=n,
        passed=sum(ok for _, ok in answers) / n,
        input_tokens=sum(r["input_tokens"] or 0 for r in rows) / n,
        output_tokens=sum(r["output_tokens"] or 0 for r in rows) / n,
        cached_input_tokens=sum(r.get("cached_input_tokens") or 0 for r in rows) / n,
        recorded_cost_usd=mean(costs),
        e2e_s=mean(times),
    )


def _pricing(
    store: Store, device_id: str, cloud_id: str, costs: DeviceCosts, price: CloudPrice | None
) -> tuple[RoutePricing, tuple[Figure, ...], str, str]:
    devices, clouds, notes = targets_from_runs(store, [device_id, cloud_id])
    if not devices:
        why = "; ".join(notes) or "no speeds or energy"
        raise UsageError(f"the device run cannot be priced ({why})")
    device = devices[0]
    inputs = list(device.inputs)
    if price is not None:
        run = store.runs([cloud_id])[0]
        cloud_name = f"{run['backend']}:{run['target']} [{cloud_id[:8]}]"
        inputs += [
            Figure("price_in_usd_per_m", price.input_usd_per_m, "USD/1M tokens", "assumed",
                   "--price-in"),
            Figure("price_out_usd_per_m", price.output_usd_per_m, "USD/1M tokens", "assumed",
                   "--price-out"),
        ]  # fmt: skip
        if price.cached_input_usd_per_m is not None:
            inputs.append(Figure("price_cached_in_usd_per_m", price.cached_input_usd_per_m,
                                 "USD/1M tokens", "assumed", "--price-cached-in"))  # fmt: skip
    elif clouds:
        price, cloud_name = clouds[0].price, clouds[0].name
        inputs += clouds[0].inputs
    else:
        why = "; ".join(n for n in notes if cloud_id[:8] in n) or f"cloud run {cloud_id[:8]}"
        raise PricingError(
            f"{why}; give the cloud's price with `price_in_usd_per_m` and `price_out_usd_per_m`"
        )
    pricing = RoutePricing(device.performance, costs, price)
    return pricing, tuple(inputs), device.name, cloud_name


def _signals(cases: Sequence[PromptCase]) -> tuple[tuple[Signal, ...], list[str]]:
    """The signals every device answer carries (failed requests aside), and notes on the rest."""
    answers = [a for c in cases for a in c.device if not a.failed]
    counts = {s: sum(a.signal(s) is not None for a in answers) for s in SIGNALS}
    if not answers or not any(counts.values()):
        return (), [NO_SIGNALS]
    whole = tuple(s for s in SIGNALS if counts[s] == len(answers))
    notes = [
        f"{s} is stored for {counts[s]} of {len(answers)} device answers: not tried"
        for s in SIGNALS
        if 0 < counts[s] < len(answers)
    ]
    missing = [s for s in SIGNALS if counts[s] == 0]
    if missing:
        notes.append(f"not stored by the device run: {', '.join(missing)}")
    return whole, notes


def _status_notes(*runs: RunRow) -> list[str]:
    return [
        f"run {r['id'][:8]} is {r['status']}: only the prompts it answered are replayed"
        for r in runs
        if r["status"] != "complete"
    ]


def _named(prompt_ids: Iterable[str], names: Mapping[str, str]) -> tuple[str, ...]:
    return tuple(sorted(names.get(p, p[:8]) for p in prompt_ids))
