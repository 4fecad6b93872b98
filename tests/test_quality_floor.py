"""The quality floor: which targets a verdict may pick, on hand-made quality rows (the figures
themselves are measured in test_quality.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeprof.decision.compare import compare
from edgeprof.decision.economics import DeviceCosts
from edgeprof.errors import UsageError
from edgeprof.quality.floor import NOT_MEASURED, QualityFloor, TargetQuality
from edgeprof.store.db import Store
from tests.builders import add_run, cli, device_row, quality_row


def _q(
    kld: float | None = 0.02, dppl: float | None = 2.0, top1: float | None = 0.9
) -> TargetQuality:
    return TargetQuality(kld, None, dppl, top1, 20.0, "reference: F16", "bundled: eval.txt")


def test_each_bound_is_checked_and_named() -> None:
    floor = QualityFloor(max_kld=0.05, max_ppl_increase_pct=5, min_top1=0.85)
    assert floor.check(_q())[0] is True
    ok, why = floor.check(_q(kld=0.2, top1=0.5))
    assert ok is False and why == "KLD 0.2000 > 0.05; top-1 50.0% < 85%"
    assert floor.check(_q(dppl=7.5)) == (False, "Δ PPL +7.5 % > 5 %")
    assert floor.check(_q(kld=0.05))[0] is True  # the bound itself passes


def test_unmeasured_is_never_taken_as_equal() -> None:
    floor = QualityFloor(max_kld=0.05)
    assert floor.check(None) == (None, NOT_MEASURED)
    assert floor.check(_q(kld=None))[0] is None
    # no floor: nothing is left out, and what is known is still said
    assert QualityFloor().check(_q())[0] is None
    assert "KLD 0.0200" in QualityFloor().check(_q())[1]
    assert QualityFloor().check(None)[1] == NOT_MEASURED


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(UsageError, match="min_top1"):
        QualityFloor(min_top1=90)
    with pytest.raises(UsageError, match="max_kld"):
        QualityFloor(max_kld=-1)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """Two device targets on one machine: llama.cpp fast (cheaper) and ONNX slower; the fast
    one loses much more against the reference."""
    path = tmp_path / "p.db"
    with Store(path) as store:
        box = device_row("box", label="box")
        fast = add_run(store, box, backend="llamacpp", decode_tps=60.0)
        slow = add_run(store, box, backend="onnx", decode_tps=30.0, model_path="/m/x.onnx")
        runs = {r["id"]: r for r in store.runs()}
        store.insert_quality(quality_row(runs[fast], kld_mean=0.4, delta_ppl_pct=30))
        store.insert_quality(quality_row(runs[slow], kld_mean=0.01, delta_ppl_pct=1))
        add_run(store, box, backend="llamacpp", model_path="/m/other.gguf")
        store.db.execute("UPDATE runs SET model_sha256 = ? WHERE target = 'other.gguf'",
                         ["99" * 32])  # fmt: skip
        store.db.conn.commit()
    return path


COSTS = DeviceCosts(100.0, 3.0, 0.2, 1.0, "owned")
CLOUD = ["openai:gpt-4o-mini"]


def _cheapest_device(c) -> str:  # type: ignore[no-untyped-def]
    return min(c.pairs, key=lambda p: p.result.device_cost_per_day_usd).device


def test_the_floor_leaves_out_what_misses_it(db: Path) -> None:
    with Store(db) as store:
        free = compare(store, COSTS, requests_per_day=1000, cloud_models=CLOUD)
        floored = compare(
            store, COSTS, requests_per_day=1000, cloud_models=CLOUD, floor=QualityFloor(0.05)
        )
    assert len(free.devices) == 3 and not free.below_floor
    assert _cheapest_device(free).startswith("llamacpp:smollm2.gguf")
    assert [d.backend for d in floored.devices] == ["onnx"]
    reasons = dict(floored.below_floor)
    (fast,) = [n for n in reasons if n.startswith("llamacpp:smollm2")]
    assert reasons[fast] == "KLD 0.4000 > 0.05"
    (other,) = [n for n in reasons if n.startswith("llamacpp:other")]
    assert reasons[other] == NOT_MEASURED
    # every device target carries its quality, measured or not
    assert {d.quality is None for d in free.devices} == {True, False}


def test_a_floor_nothing_meets_is_an_error_naming_the_fix(db: Path) -> None:
    with Store(db) as store, pytest.raises(UsageError, match="edgeprof quality"):
        compare(store, COSTS, requests_per_day=1000, cloud_models=CLOUD, floor=QualityFloor(1e-3))


def test_compare_prints_quality_and_what_was_left_out(db: Path) -> None:
    args = ("compare", db, "--requests-per-day", "1000", "--electricity", "0.2",
            "--deployment", "owned", "--cloud", "openai:gpt-4o-mini")  # fmt: skip
    res = cli(*args)
    assert res.exit_code == 0, res.stderr
    assert "KLD 0.4000" in res.stdout and "quality not measured" in res.stdout
    res = cli(*args, "--max-kld", "0.05")
    assert res.exit_code == 0, res.stderr
    assert "note: quality floor: KLD ≤ 0.05" in res.stderr
    assert "left out: llamacpp:smollm2.gguf" in res.stderr and "KLD 0.4000 > 0.05" in res.stderr
