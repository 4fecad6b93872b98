"""A run's peak GPU memory in its summary and in `report`: from the stored NVML samples
(summed over GPUs per tick, inside the measured requests), "unified: in RSS" on a Jetson or
Apple silicon, and why not elsewhere; and the run's provenance beside it. The NVML reader
itself is tested against a fake pynvml in test_samplers_nvml.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from edgeprof.analysis.summary import UNIFIED_NOTE, summarize_run
from edgeprof.store import Store
from tests.builders import Row, add_run, cli, device_row

GIB = 2**30
MS = 1_000_000  # ns


def _nvml_sensors(
    run_id: str, n_gpus: int, detail: str, metric: str = "gpu_mem_bytes"
) -> list[Row]:
    return [
        {"run_id": run_id, "sensor": f"nvml:gpu{i}", "metric": m, "domain": "gpu",
         "unit": "B" if m.endswith("bytes") else "W", "method": "measured", "detail": detail}
        for i in range(n_gpus)
        for m in ("power_w", metric)
    ]  # fmt: skip


def _gpu_run(store: Store, samples: list[tuple[int, str, float]], **kw: Any) -> str:
    """A run on an x86 box with two NVIDIA GPUs; `samples` are (t_ns, sensor, bytes).
    add_run's measured requests span 1.0-1.8 s and 2.0-2.8 s; its warm-up 0-0.8 s."""
    run_id = add_run(store, device_row("gpu-box"), **kw)
    store.insert_sensors(_nvml_sensors(run_id, 2, "NVIDIA L4: power; this process's GPU memory"))
    store.insert_samples([(run_id, t, sensor, "gpu_mem_bytes", v) for t, sensor, v in samples])
    return run_id


@pytest.fixture
def store(tmp_path: Path) -> Any:
    with Store(tmp_path / "p.db") as s:
        yield s


def test_peak_is_the_largest_per_tick_sum_inside_the_measured_requests(store: Store) -> None:
    run_id = _gpu_run(
        store,
        [
            (300 * MS, "nvml:gpu0", 10 * GIB),  # during the warm-up: not counted
            (1100 * MS, "nvml:gpu0", 3 * GIB),
            (1100 * MS, "nvml:gpu1", 1 * GIB),
            (2200 * MS, "nvml:gpu0", 1 * GIB),
            (2200 * MS, "nvml:gpu1", 3.5 * GIB),
            (5000 * MS, "nvml:gpu0", 8 * GIB),  # after the last request
        ],
    )
    s = summarize_run(store, run_id)
    # 4.5 GiB at one tick; the per-GPU peaks (3 + 3.5) never happened together
    assert s.peak_gpu_mem_bytes == int(4.5 * GIB) and s.gpu_mem_note is None


def test_a_reading_just_outside_a_request_counts_as_its_edge(store: Store) -> None:
    # the runner marks a reading just before each request starts and just after it ends
    run_id = _gpu_run(store, [(990 * MS, "nvml:gpu0", 2 * GIB), (1810 * MS, "nvml:gpu0", GIB)])
    assert summarize_run(store, run_id).peak_gpu_mem_bytes == 2 * GIB


@pytest.mark.parametrize(
    ("device", "note"),
    [
        ({"label": "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super",
          "arch": "aarch64", "os": "Linux 5.15.148-tegra"}, UNIFIED_NOTE),
        ({"label": "Mac mini", "arch": "arm64", "os": "Darwin 24.1.0"}, UNIFIED_NOTE),
        ({"label": "old mac", "arch": "x86_64", "os": "Darwin 21.6.0"}, "not available: no NVML"),
        ({"label": "rpi5", "arch": "aarch64", "os": "Linux 6.6.51"}, "not available: no NVML"),
    ],
)  # fmt: skip
def test_unified_memory_is_in_rss_elsewhere_not_available(
    store: Store, device: Row, note: str
) -> None:
    run_id = add_run(store, {**device_row(device["label"]), **device})
    s = summarize_run(store, run_id)
    assert s.peak_gpu_mem_bytes is None and s.gpu_mem_note == note
    assert s.peak_rss_bytes is not None


def test_why_nvml_gave_no_figure(store: Store) -> None:
    dev = device_row("gpu-box")
    no_driver_figure = add_run(store, dev)
    store.insert_sensors(
        _nvml_sensors(
            no_driver_figure, 1,
            "NVIDIA T4: power polling; this process's GPU memory not available: the driver "
            "reports no per-process usedGpuMemory (e.g. Windows WDDM, vGPU)",
            metric="gpu_util_percent",
        )
    )  # fmt: skip
    never_listed = add_run(store, dev)
    store.insert_sensors(_nvml_sensors(never_listed, 1, "NVIDIA T4: power"))
    older = add_run(store, dev)
    store.insert_sensors(_nvml_sensors(older, 1, "NVIDIA T4: power", metric="gpu_mem_used_bytes"))
    remote = add_run(store, dev, backend="openai", params={"concurrency": 4})
    store.update_run(remote, {"target_kind": "remote"})
    notes = {r: summarize_run(store, r).gpu_mem_note for r in (no_driver_figure, never_listed,
                                                                older, remote)}  # fmt: skip
    assert notes == {
        no_driver_figure: "not available: the driver reports no per-process usedGpuMemory "
        "(e.g. Windows WDDM, vGPU)",
        never_listed: "not available: this process was not in NVML's process lists "
        "(no GPU memory, or a PID namespace)",
        older: "not available: not recorded (a run from before edgeprof sampled it)",
        remote: "not applicable: remote target",
    }


def test_no_process_listed_falls_back_to_the_devices_used_memory_delta(store: Store) -> None:
    """A VM or PID namespace: NVML never listed the worker. The devices' used memory (two
    GPUs, summed per tick) at its peak inside the requests, less before the load."""
    from edgeprof.analysis.summary import DELTA_NOTE

    run_id = add_run(store, device_row("gpu-vm"))
    store.insert_sensors(_nvml_sensors(run_id, 2, "NVIDIA H200: power", "gpu_mem_used_bytes"))
    used = [(10 * MS, 0.5 * GIB, 0.25 * GIB),  # before the load
            (1100 * MS, 3.5 * GIB, 1.25 * GIB),  # during the requests: +4 GiB
            (2200 * MS, 2.5 * GIB, 0.25 * GIB),
            (5000 * MS, 9 * GIB, 0.25 * GIB)]  # after the last request: not counted  # fmt: skip
    store.insert_samples([(run_id, t, f"nvml:gpu{i}", "gpu_mem_used_bytes", v)
                          for t, *vs in used for i, v in enumerate(vs)])  # fmt: skip
    s = summarize_run(store, run_id)
    assert s.peak_gpu_mem_bytes == 4 * GIB and s.gpu_mem_note == DELTA_NOTE
    # the worker's own figure, where NVML lists it, wins over the delta
    store.insert_samples([(run_id, 1100 * MS, "nvml:gpu0", "gpu_mem_bytes", 2.0 * GIB)])
    s = summarize_run(store, run_id)
    assert s.peak_gpu_mem_bytes == 2 * GIB and s.gpu_mem_note is None


def test_provenance_is_the_backends_with_the_environment(store: Store) -> None:
    llama = {"runtime": "llama.cpp", "build_features": ["AVX2", "FMA"], "n_layer": 30,
             "gpu_layers_offloaded": 31, "system_info": "CPU : AVX2 = 1 | FMA = 1 |"}  # fmt: skip
    with_it = add_run(store, device_row("a"), params={"threads": 4, "provenance": llama})
    without = add_run(store, device_row("a"))
    assert summarize_run(store, with_it).provenance == {
        **llama,
        "environment": {"python": "3.11.7", "llama_cpp": "0.3.36"},
    }
    assert summarize_run(store, without).provenance == {
        "environment": {"python": "3.11.7", "llama_cpp": "0.3.36"}
    }


def test_report_shows_peak_gpu_memory_beside_peak_rss(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    with Store(db) as store:
        gpu = _gpu_run(store, [(1100 * MS, "nvml:gpu0", 3 * GIB), (1100 * MS, "nvml:gpu1", GIB)])
        jetson = add_run(store, device_row("orin", label="NVIDIA Jetson AGX Orin Developer Kit"))
    res = cli("report", db)  # wide: one row per run
    assert res.exit_code == 0, res.stderr
    head = next(line for line in res.stdout.splitlines() if "peak RSS" in line)
    assert head.index("peak GPU") > head.index("peak RSS")
    assert "4,096" in next(line for line in res.stdout.splitlines() if gpu[-8:] in line)
    assert "in RSS" in next(line for line in res.stdout.splitlines() if jetson[-8:] in line)
    assert f"note: peak GPU MiB: unified: in RSS (run {jetson[-8:]})" in res.stderr

    narrow = cli("report", db, env={"COLUMNS": "100"})  # runs as columns, figures as rows
    lines = narrow.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if "peak RSS MiB" in line)
    assert "peak GPU MiB" in lines[at + 1]
    assert "4,096" in lines[at + 1] and "in RSS" in lines[at + 1]

    payload = json.loads(cli("report", db, "--json").stdout)
    by_id = {r["run_id"]: r for r in payload}
    assert by_id[gpu]["peak_gpu_mem_bytes"] == 4 * GIB and by_id[gpu]["gpu_mem_note"] is None
    assert by_id[jetson]["peak_gpu_mem_bytes"] is None
    assert by_id[jetson]["gpu_mem_note"] == "unified: in RSS"
    assert by_id[jetson]["provenance"] == {"environment": {"python": "3.11.7",
                                                           "llama_cpp": "0.3.36"}}  # fmt: skip


def test_html_report_has_the_gpu_column_and_says_why_a_figure_is_missing(tmp_path: Path) -> None:
    from edgeprof.report.html import render_html_report

    with Store(tmp_path / "p.db") as store:
        gpu = _gpu_run(store, [(1100 * MS, "nvml:gpu0", 3 * GIB), (1100 * MS, "nvml:gpu1", GIB)])
        jetson = add_run(store, device_row("orin", label="NVIDIA Jetson AGX Orin Developer Kit"))
        page = render_html_report(store)
    head = page[page.index('id="runs"') : page.index("</thead>", page.index('id="runs"'))]
    assert head.index("peak GPU MiB") > head.index("peak RSS MiB")
    row = page[page.index(f'data-run-id="{gpu}"') :]
    assert "4,096" in row[: row.index("</tr>")]
    row = page[page.index(f'data-run-id="{jetson}"') :]
    assert "in RSS" in row[: row.index("</tr>")]
    assert f"peak GPU MiB: unified: in RSS (run {jetson[-8:]})" in page
