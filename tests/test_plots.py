from __future__ import annotations

from pathlib import Path

import pytest

from edgeprof.errors import ProfileDBError, UsageError
from edgeprof.report.plots import aggregate_rate, plot_run_timeline, timeline_data
from edgeprof.store.db import Store

S = 1_000_000_000
RUN = "01JDTESTRUN0000000000000000"


def make_run(tmp_path: Path) -> Store:
    store = Store(tmp_path / "p.db")
    store.insert_run(
        {"id": RUN, "backend": "llamacpp", "target": "demo.gguf", "status": "complete", "t0_ns": 0}
    )
    store.insert_sensors(
        [
            {
                "run_id": RUN,
                "sensor": "rapl:package-0",
                "metric": "energy_j",
                "domain": "package",
                "unit": "J",
                "method": "measured",
                "detail": "",
            },
            {
                "run_id": RUN,
                "sensor": "rapl:package-0/dram",
                "metric": "energy_j",
                "domain": "dram",
                "unit": "J",
                "method": "measured",
                "detail": "",
            },
            {
                "run_id": RUN,
                "sensor": "process",
                "metric": "rss_bytes",
                "domain": "process",
                "unit": "B",
                "method": "measured",
                "detail": "",
            },
        ]
    )
    rows = []
    for k in range(41):  # 4 s at 10 Hz: package 12 W, dram 3 W, constant
        t = k * S // 10
        rows += [
            (RUN, t, "rapl:package-0", "energy_j", 12.0 * k / 10),
            (RUN, t, "rapl:package-0/dram", "energy_j", 3.0 * k / 10),
            (RUN, t, "process", "rss_bytes", 1e8),
        ]
    store.insert_samples(rows)
    for seq, (t0, t1, n, warm) in enumerate(
        [(0.5, 1.5, 20, 1), (2.0, 3.0, 40, 0), (2.5, 3.5, 10, 0)]
    ):
        store.insert_request(
            {
                "id": f"r{seq}",
                "run_id": RUN,
                "seq": seq,
                "warmup": warm,
                "output_tokens": n,
                "t_start_ns": int(t0 * S),
                "t_end_ns": int(t1 * S),
                "error": None,
            }
        )
    return store


def test_timeline_numbers(tmp_path: Path) -> None:
    tl = timeline_data(make_run(tmp_path), RUN)
    assert set(tl.power_w) == {
        "rapl:package-0 (package, measured)",
        "rapl:package-0/dram (dram, measured)",
    }
    assert all(
        w == pytest.approx(12.0) for _, w in tl.power_w["rapl:package-0 (package, measured)"]
    )
    assert tl.total_w and all(w == pytest.approx(15.0) for _, w in tl.total_w)
    assert "rapl:package-0 + rapl:package-0/dram (measured)" in tl.total_label
    assert tl.windows == [(0.5, 1.5, "warmup"), (2.0, 3.0, "request"), (2.5, 3.5, "request")]
    # overlapping requests add up: 40 tok/s, then 40 + 10, then 10
    assert tl.tokens_per_s == [
        (0.5, 20.0),
        (1.5, 0.0),
        (2.0, 40.0),
        (2.5, 50.0),
        (3.0, 10.0),
        (3.5, 0.0),
    ]


def test_plot_writes_png(tmp_path: Path) -> None:
    out = plot_run_timeline(make_run(tmp_path), RUN, tmp_path / "plots" / "t.png")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_plot_errors(tmp_path: Path) -> None:
    store = make_run(tmp_path)
    with pytest.raises(ProfileDBError, match="no run"):
        plot_run_timeline(store, "nope", tmp_path / "x.png")
    with pytest.raises(UsageError, match=r"\.png"):
        plot_run_timeline(store, RUN, tmp_path / "x.txt")


def test_aggregate_rate_empty_and_zero_length() -> None:
    assert aggregate_rate([]) == []
    assert aggregate_rate([(1.0, 1.0, 5.0)]) == []
