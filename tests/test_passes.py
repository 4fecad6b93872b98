"""Open-ended runs: a soak (`--duration`) and `--target-ci`, pure logic on hand-made rows and
end to end on the fake backend (in-process, seconds)."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

import pytest

from edgeprof.analysis.metrics import t95
from edgeprof.analysis.summary import summarize_run
from edgeprof.errors import UsageError
from edgeprof.measure.passes import Passes, parse_duration_s, parse_share, schedule
from edgeprof.measure.runner import profile
from edgeprof.store import Store
from tests.builders import cli
from tests.test_runner import config, db, prompts

__all__ = ["db", "prompts"]


def _row(rep: int, decode_tps: float, **kw: Any) -> dict[str, Any]:
    return {"repetition": rep, "warmup": 0, "error": None, "decode_tps": decode_tps,
            "prefill_tps": 300.0, "ttft_s": 0.1, "energy_j": None, "output_tokens": 16,
            "e2e_s": 0.5, **kw}  # fmt: skip


def test_a_fixed_count_stops_after_it() -> None:
    p = Passes(3)
    assert list(schedule(p, 2, lambda: 0.0)) == [(r, i) for r in range(3) for i in range(2)]
    assert p.stopped_by == "repetitions" and p.planned_requests(2) == 6


def test_target_ci_stops_once_the_interval_is_narrow_enough() -> None:
    p = Passes(2, target_ci=0.05, max_repetitions=20)
    values = [100.0, 80.0, 90.0, 91.0, 90.0, 89.0, 90.5, 90.0, 89.5, 90.2, 90.1, 89.9]
    passes = []
    for rep, _ in schedule(p, 1, lambda: 0.0):  # one prompt a pass
        passes.append(rep)
        p.observe(_row(rep, values[rep]))

    def relative(n: int) -> float:
        xs = values[:n]
        return t95(n - 1) * statistics.stdev(xs) / math.sqrt(n) / statistics.fmean(xs)

    expected = next(n for n in range(2, len(values)) if relative(n) <= 0.05)
    assert expected == 8 and relative(7) > 0.05  # ±6.0 % after 7 passes, ±4.9 % after 8
    assert passes == list(range(expected))
    assert p.stopped_by == "target-ci"
    assert p.widest() == pytest.approx(relative(expected))
    assert p.params() == {
        "stopped_by": "target-ci", "repetitions_done": expected, "ci_reached": p.widest()
    }  # fmt: skip
    assert p.planned_requests(1) is None


def test_target_ci_is_bounded_by_max_repetitions() -> None:
    p = Passes(2, target_ci=0.001, max_repetitions=4)
    for rep, _ in schedule(p, 1, lambda: 0.0):
        p.observe(_row(rep, 90.0 + 5 * (rep % 2)))
    assert p.stopped_by == "max-repetitions" and p.params()["repetitions_done"] == 4


def test_failed_requests_and_warm_up_do_not_count() -> None:
    p = Passes(2, target_ci=0.5)
    p.observe(_row(0, 1.0, warmup=1))
    p.observe(_row(0, 90.0))
    p.observe(_row(1, 91.0))
    p.observe(_row(1, 5.0, error="boom"))
    widest = p.widest()
    assert widest is not None and widest < 0.2


def test_a_soak_stops_at_the_first_request_boundary_past_its_duration() -> None:
    clock = iter([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    p = Passes(3, duration_s=4.5)
    got = list(schedule(p, 2, lambda: next(clock)))
    assert got == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0)]  # the clock read 5.0 before (2, 1)
    assert p.stopped_by == "duration"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10m", 600), ("90s", 90), ("1h30m", 5400), ("2.5m", 150), ("45", 45), ("1h", 3600)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration_s(text) == seconds


@pytest.mark.parametrize("text", ["", "ten minutes", "5x", "m", "-3m"])
def test_bad_durations_name_the_form(text: str) -> None:
    with pytest.raises(UsageError, match="like 10m, 90s or 1h30m"):
        parse_duration_s(text)


def test_shares_and_bad_combinations() -> None:
    assert parse_share("3%") == pytest.approx(0.03) and parse_share("0.05") == 0.05
    with pytest.raises(UsageError, match="like 3%"):
        parse_share("three")
    with pytest.raises(UsageError, match="not both"):
        Passes(3, duration_s=60, target_ci=0.03)
    with pytest.raises(UsageError, match="above 0 and below 1"):
        Passes(3, target_ci=3.0)
    with pytest.raises(UsageError, match="at least 2"):
        Passes(1, target_ci=0.03)


def test_target_ci_end_to_end(db: Path, prompts: Path) -> None:
    run_id = profile(config(db, prompts, repetitions=2, target_ci=0.5, max_repetitions=6))
    with Store(db) as store:
        run = store.runs([run_id])[0]
        s = summarize_run(store, run_id)
    p = run["params"]
    # the fake decodes at a steady rate: ±50 % is reached at the least number of passes
    assert p["stopped_by"] == "target-ci" and p["repetitions_done"] == 2
    assert p["planned_requests"] is None and p["target_ci"] == 0.5
    assert s.decode_tps_ci is not None and s.decode_tps_ci.relative <= 0.5
    assert s.passes["stopped_by"] == "target-ci"


def test_a_soak_end_to_end_keeps_going_until_the_time_is_up(db: Path, prompts: Path) -> None:
    run_id = profile(config(db, prompts, duration_s=1.0, notes={"cooling": "passive"}))
    with Store(db) as store:
        run = store.runs([run_id])[0]
        rows = [r for r in store.requests(run_id) if not r["warmup"]]
    assert run["status"] == "complete" and run["params"]["stopped_by"] == "duration"
    assert run["params"]["notes"] == {"cooling": "passive"}
    # each request takes ~0.1 s (32 tokens at 400 tok/s + 20 ms): about 10 in a second
    assert len(rows) >= 4
    first, last = min(r["t_start_ns"] for r in rows), max(r["t_start_ns"] for r in rows)
    assert (last - first) / 1e9 < 1.0  # no request starts after the time is up
    assert max(r["t_end_ns"] for r in rows) - first >= 1e9 * 0.9


def test_open_ended_runs_refuse_concurrency(db: Path, prompts: Path) -> None:
    with pytest.raises(UsageError, match="--concurrency 1"):
        profile(config(db, prompts, duration_s=5.0, concurrency=2, backend="fake-remote"))


def test_cli_notes_and_flags_are_checked() -> None:
    r = cli("run", "--note", "cooling")
    assert r.exit_code == 2 and "--note takes KEY=VALUE" in r.output
    r = cli("run", "--note", "a=1", "--note", "a=2")
    assert r.exit_code == 2 and "given twice" in r.output
    r = cli("run", "--duration", "soon")
    assert r.exit_code == 2 and "like 10m" in r.output


def _soak_db(path: Path, decode_by_window: tuple[float, ...] = (120.0, 110.0, 100.0)) -> str:
    """A soak run (`duration_s` 150) of 10 s requests, one pass of one prompt each, whose
    decode tok/s is the window's figure; and a short run of the same target."""
    from edgeprof.store.ids import ulid
    from tests.builders import add_run, device_row, request_row

    params = {"threads": 2, "max_tokens": 64, "suite_sha256": "s" * 64}
    with Store(path) as store:
        device = device_row("box")
        add_run(store, device, params=params, label="burst", decode_tps=130.0)
        soak = add_run(store, device, run_id=ulid(), params={**params, "duration_s": 150.0},
                       n_requests=0, n_samples=0, label="soak")  # fmt: skip
        for seq in range(15):
            t0 = seq * 10_000_000_000
            store.insert_request(
                request_row(soak, seq, repetition=seq, t_start_ns=t0, t_end_ns=t0 + 9_000_000_000,
                            e2e_s=9.0, decode_tps=decode_by_window[min(seq // 6, 2)])
            )  # fmt: skip
    return soak


def test_report_shows_a_soak_over_time_and_compare_prices_what_it_sustains(tmp_path: Path) -> None:
    from edgeprof.decision.compare import compare
    from edgeprof.decision.economics import DeviceCosts

    db = tmp_path / "p.db"
    soak = _soak_db(db)
    (row,) = [r for r in json.loads(cli("report", db, "--json").stdout) if r["run_id"] == soak]
    windows = row["soak"]["windows"]
    # 0-60 s, 60-120 s full; 120-149 s a tail: requests 0-5, 6-11 and 12-14 finish in them
    assert [w["partial"] for w in windows] == [False, False, True]
    assert row["soak"]["first_vs_last"] is not None
    png = tmp_path / "soak.png"
    res = cli("report", db, "--run", soak, "--plot", png)
    assert res.exit_code == 0 and png.read_bytes()[:4] == b"\x89PNG"
    assert "first minute" in res.stdout and "last minute" in res.stdout

    with Store(db) as store:
        c = compare(store, DeviceCosts(600, 3, 0.3), requests_per_day=1000,
                    price_in_usd_per_m=0.15, price_out_usd_per_m=0.6)  # fmt: skip
    (device,) = c.devices
    # the later half of two full windows is the second: requests 6-11, at 110 tok/s
    assert device.run_id == soak and device.performance.decode_tps == pytest.approx(110.0)
    assert device.sustained and "of a 150 s soak" in device.sustained
    assert any("left out; a soak of the same target" in n for n in c.notes)
