"""Hand-made graded runs for the routing tests: a device run and a cloud run of one suite,
each answer's grades, signals, tokens, times and energy written directly, so that every figure
of a replayed policy can be computed by hand.

Every prompt carries two checks: `icontains` (index 0, needs the expected answer: never a
reason to escalate) and `is-json` (index 1, a format check). An answer passes when both pass.

The device run: every request decodes at 10 tok/s and prefills at 100 tok/s and draws 10 W
(energy = 10 W × e2e), with an idle baseline of `IDLE_W`; so J/input token = 0.1, J/output
token = 1, busy seconds = in/100 + out/10, and net energy = gross − IDLE_W × busy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from edgeprof.grading.assertions import Assertion
from edgeprof.grading.grades import RULE, Grade
from edgeprof.grading.records import replace_grades, save_expectations
from edgeprof.measure.prompt import Prompt
from edgeprof.store import Store
from edgeprof.store.ids import ulid
from tests.builders import device_row, prompt_row, request_row

SUITE = "routing-demo"
IDLE_W = 2.0
POWER_W = 10.0
PREFILL_TPS = 100.0
DECODE_TPS = 10.0
CLOUD_PRICES = {"price_in_usd_per_m": 1.0, "price_out_usd_per_m": 2.0}
CHECKS = (Assertion("icontains", value="x"), Assertion("is-json"))


@dataclass(frozen=True)
class Said:
    """One answer: whether its content and its format passed, and what it measured."""

    content: bool = True
    form: bool = True
    input_tokens: int = 50
    output_tokens: int = 10
    e2e_s: float | None = None  # device: busy seconds by default; cloud: 0.4 s
    signals: dict[str, float] = field(default_factory=dict)
    cached_input_tokens: int = 0
    error: str | None = None
    cost_usd: float | None = None

    @property
    def passed(self) -> bool:
        return self.content and self.form and not self.error


@dataclass(frozen=True)
class Case:
    name: str
    device: Sequence[Said]
    cloud: Sequence[Said]
    kind: str | None = None


def prompt_ids(names: Sequence[str]) -> dict[str, str]:
    """The ids the hand-made prompts get (their folds follow from them)."""
    return {n: str(prompt_row(f"prompt {n}", SUITE)["id"]) for n in names}


def add_pair(
    store: Store,
    cases: Sequence[Case],
    *,
    suite: str = SUITE,
    cloud_suite: str | None = None,
    grade: bool = True,
    cloud_params: dict[str, Any] | None = None,
    device_label: str | None = None,
) -> tuple[str, str]:
    """A device run and a cloud run of `cases`, graded; their ids. `device_label`: what the
    device calls itself (a board's name: "Raspberry Pi 5 Model B"); 8 GiB of RAM."""
    device = device_row("routing-host", device_label)
    store.upsert_device(device)
    prompts = {c.name: {**prompt_row(f"prompt {c.name}", suite), "name": c.name} for c in cases}
    store.insert_prompts(prompts.values())
    save_expectations(store, [
        Prompt(str(prompts[c.name]["id"]), suite, c.name, (), CHECKS, kind=c.kind) for c in cases
    ])  # fmt: skip
    device_id = _run(store, device, "device", suite, {})
    prices = CLOUD_PRICES if cloud_params is None else cloud_params
    cloud_id = _run(store, device, "remote", cloud_suite or suite, prices)
    for run_id, side in ((device_id, "device"), (cloud_id, "cloud")):
        seq = 0
        grades: list[Grade] = []
        ids: list[str] = []
        for c in cases:
            pid = str(prompts[c.name]["id"])
            for rep, said in enumerate(c.device if side == "device" else c.cloud):
                request_id = _request(store, run_id, seq, rep, pid, said, side)
                ids.append(request_id)
                grades += _grades(run_id, request_id, pid, said)
                seq += 1
        if grade:
            replace_grades(store, ids, [RULE], grades)
    return device_id, cloud_id


def _run(store: Store, device: dict[str, Any], kind: str, suite: str,
         params: dict[str, Any]) -> str:  # fmt: skip
    run_id = ulid()
    store.insert_run({
        "id": run_id, "device_id": device["id"],
        "backend": "llamacpp" if kind == "device" else "openai",
        "target": "tiny.gguf" if kind == "device" else "gpt-test",
        "target_kind": kind, "model_path": "/m/tiny.gguf" if kind == "device" else None,
        "model_sha256": "ab" * 32, "quant": "Q4_1", "label": None, "prompt_suite": suite,
        "params": {"threads": 4, "max_tokens": 16, **params}, "environment": {},
        "edgeprof_version": "0.1.0", "started_at": "2026-05-01T10:00:00Z",
        "ended_at": "2026-05-01T10:01:00Z", "status": "complete",
        "idle_power_w": IDLE_W if kind == "device" else None,
        "idle_method": "measured" if kind == "device" else None, "t0_ns": 0,
    })  # fmt: skip
    return run_id


def device_busy_s(said: Said) -> float:
    return said.input_tokens / PREFILL_TPS + said.output_tokens / DECODE_TPS


def _request(store: Store, run_id: str, seq: int, rep: int, pid: str, said: Said,
             side: str) -> str:  # fmt: skip
    e2e = said.e2e_s
    if e2e is None:
        e2e = device_busy_s(said) if side == "device" else 0.4
    row = request_row(
        run_id, seq, prompt_id=pid, repetition=rep, input_tokens=said.input_tokens,
        output_tokens=said.output_tokens, e2e_s=e2e, t_end_ns=seq * 1_000_000_000 + int(e2e * 1e9),
        prefill_tps=PREFILL_TPS, decode_tps=DECODE_TPS, error=said.error,
        cached_input_tokens=said.cached_input_tokens, cost_usd=said.cost_usd,
        **(_energy(e2e) if side == "device" else _no_energy()), **said.signals,
    )  # fmt: skip
    if said.signals:
        row["signal_source"], row["signal_tokens"] = "logits", said.output_tokens
    store.insert_request(row)
    return str(row["id"])


def _energy(e2e: float) -> dict[str, Any]:
    return {"energy_j": POWER_W * e2e, "energy_net_j": (POWER_W - IDLE_W) * e2e,
            "avg_power_w": POWER_W, "energy_method": "measured"}  # fmt: skip


def _no_energy() -> dict[str, Any]:
    return {"energy_j": None, "energy_net_j": None, "avg_power_w": None, "energy_method": None}


def _grades(run_id: str, request_id: str, pid: str, said: Said) -> list[Grade]:
    content, form = (said.content, said.form) if not said.error else (False, False)
    return [
        Grade(run_id, request_id, pid, 0, "icontains", RULE, content, float(content), "test"),
        Grade(run_id, request_id, pid, 1, "is-json", RULE, form, float(form), "test"),
    ]
