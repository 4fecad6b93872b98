"""The table that ends scripts/check_gpu.sh: GPU against CPU, edgeprof against llama-bench.

Reads only JSON files (`edgeprof report --json`, llama-bench's `-o json`, `edgeprof probe
--json`), with the standard library, so it prints whatever part of the check survived:

    python scripts/gpu_check_table.py --out OUT --report OUT/report.json --targets gpu cpu
    python scripts/gpu_check_table.py --probe OUT/probe.json   # what probe found, in short

The edgeprof runs are the latest ones labelled llama-<target>; llama-bench's results are
OUT/llama-bench-<target>.json. Fidelity is edgeprof's decode tok/s over llama-bench's tg128 at
the same settings from the same build (like with like only roughly: edgeprof decodes after a
short chat prompt, llama-bench from an empty context). Writes OUT/table.txt and OUT/table.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

MIB = 2**20


@dataclass(frozen=True)
class BenchSpeeds:
    """llama-bench's averages and standard deviations over its repetitions, tokens/s."""

    pp_tps: float | None
    pp_sd: float | None
    tg_tps: float | None
    tg_sd: float | None


@dataclass(frozen=True)
class Row:
    figure: str
    values: dict[str, str]  # target -> the cell


def bench_speeds(entries: list[dict[str, Any]]) -> BenchSpeeds:
    """pp (a prompt, no generation) and tg (generation, no prompt) from llama-bench's JSON."""
    pp = next((e for e in entries if e.get("n_prompt", 0) > 0 and e.get("n_gen", 0) == 0), {})
    tg = next((e for e in entries if e.get("n_gen", 0) > 0 and e.get("n_prompt", 0) == 0), {})
    return BenchSpeeds(pp.get("avg_ts"), pp.get("stddev_ts"), tg.get("avg_ts"), tg.get("stddev_ts"))


def latest_run(report: list[dict[str, Any]], label: str) -> dict[str, Any] | None:
    """The newest edgeprof run with this label (report order is not promised: by start)."""
    runs = [r for r in report if r.get("label") == label and r.get("backend") != "llama-bench"]
    return max(runs, key=lambda r: r.get("started_at") or "", default=None)


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _num(value: float | None, sd: float | None = None, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}" + (f" ± {sd:,.{digits}f}" if sd is not None else "")


def _mib(value: int | None, note: str | None = None) -> str:
    text = "-" if value is None else f"{value / MIB:,.0f} MiB"
    return f"{text} ({note})" if note else text


def _status(run: dict[str, Any] | None) -> str:
    if run is None:
        return "no run recorded"
    status = str(run.get("status"))
    return status if status == "complete" else f"{status}: {run.get('error') or 'no reason given'}"


def _energy(run: dict[str, Any]) -> str:
    jpt = run.get("j_per_output_token")
    if jpt is None:
        return "-"
    sensors = ", ".join(run.get("energy_sensors") or []) or "no sensor"
    return f"{jpt:.4f} ({run.get('energy_method') or '?'}: {sensors})"


Cell = Callable[[dict[str, Any], BenchSpeeds], str]


def _decode(r: dict[str, Any], b: BenchSpeeds) -> str:
    return _num(r.get("decode_tps_mean"), r.get("decode_tps_sd"))


def _fidelity(r: dict[str, Any], b: BenchSpeeds) -> str:
    return _num(ratio(r.get("decode_tps_mean"), b.tg_tps), digits=3)


def _prefill(r: dict[str, Any], b: BenchSpeeds) -> str:
    return _num(r.get("prefill_tps_mean"), r.get("prefill_tps_sd"))


def _gpu_mem(r: dict[str, Any], b: BenchSpeeds) -> str:
    return _mib(r.get("peak_gpu_mem_bytes"), r.get("gpu_mem_note"))


FIGURES: list[tuple[str, Cell]] = [
    ("decode tok/s, edgeprof", _decode),
    ("decode tok/s, llama-bench tg128", lambda r, b: _num(b.tg_tps, b.tg_sd)),
    ("fidelity: edgeprof / llama-bench decode", _fidelity),
    ("prefill tok/s, edgeprof (short chat prompts)", _prefill),
    ("prefill tok/s, llama-bench pp512", lambda r, b: _num(b.pp_tps, b.pp_sd)),
    ("energy J/output token (method: sensors)", lambda r, b: _energy(r)),
    ("average power W", lambda r, b: _num(r.get("avg_power_w"))),
    ("idle power W", lambda r, b: _num(r.get("idle_power_w"))),
    ("peak GPU memory (how)", _gpu_mem),
    ("peak RSS", lambda r, b: _mib(r.get("peak_rss_bytes"))),
]


def table_rows(
    report: list[dict[str, Any]], benches: dict[str, BenchSpeeds], targets: list[str]
) -> list[Row]:
    """One row per figure, one cell per target; "-" where a figure was not measured."""
    runs = {t: latest_run(report, f"llama-{t}") for t in targets}
    empty = BenchSpeeds(None, None, None, None)
    rows = [Row("edgeprof run", {t: _status(runs[t]) for t in targets})]
    rows += [
        Row(figure, {t: cell(runs[t] or {}, benches.get(t, empty)) for t in targets})
        for figure, cell in FIGURES
    ]
    if "gpu" in runs and "cpu" in runs:
        speedup = ratio(
            (runs["gpu"] or {}).get("decode_tps_mean"), (runs["cpu"] or {}).get("decode_tps_mean")
        )
        rows.append(Row("GPU / CPU decode, edgeprof", {"gpu": _num(speedup, digits=2), "cpu": ""}))
    return rows


def render(rows: list[Row], targets: list[str]) -> str:
    width = max(len(r.figure) for r in rows)
    cols = {t: max([len(t), *(len(r.values.get(t, "")) for r in rows)]) for t in targets}
    lines = [f"{'':<{width}}  " + "  ".join(f"{t:<{cols[t]}}" for t in targets).rstrip()]
    lines += [
        f"{r.figure:<{width}}  "
        + "  ".join(f"{r.values.get(t, ''):<{cols[t]}}" for t in targets).rstrip()
        for r in rows
    ]
    return "\n".join(lines)


def probe_lines(probe: dict[str, Any]) -> list[str]:
    """What `edgeprof probe --json` found that this check is about: sensors, GPUs, the build."""
    lines = []
    for s in probe.get("power_sources", []):
        if s.get("available"):
            lines.append(f"power: {s.get('sensor')}: {s.get('detail') or ''}".rstrip(": "))
        elif s.get("source") == "nvml":
            lines.append(f"power: NVML not available: {s.get('reason')}")
    llama = probe.get("llama_cpp") or {}
    lines.append(
        f"llama.cpp: {llama.get('llama_cpp_python')} ({llama.get('llama_cpp_commit')}), "
        f"backends {llama.get('backends')}, GPU offload {llama.get('gpu_offload_supported')}"
    )
    for dev in llama.get("devices") or []:
        total = dev.get("memory_total_bytes")
        lines.append(f"  device {dev.get('name')}: {dev.get('description')} ({_mib(total)})")
    lines += [f"GPU memory: {v}" for v in _find_keys(probe, "gpu_mem")]
    return lines


def _find_keys(obj: Any, part: str) -> list[str]:
    """Every value whose key contains `part`, anywhere in a JSON document."""
    found: list[str] = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            if part in str(key) and not isinstance(value, dict | list):
                found.append(f"{key} = {value}")
            found += _find_keys(value, part)
    elif isinstance(obj, list):
        for value in obj:
            found += _find_keys(value, part)
    return found


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        print(f"({path}: {e})", file=sys.stderr)
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="the check's output directory")
    parser.add_argument("--report", type=Path, help="`edgeprof report --json` output")
    parser.add_argument("--targets", nargs="+", default=["gpu", "cpu"])
    parser.add_argument("--probe", type=Path, help="print what `edgeprof probe --json` found")
    args = parser.parse_args(argv)
    if args.probe:
        print("\n".join(probe_lines(_load(args.probe) or {})))
        return 0
    if args.out is None:
        parser.error("--out is needed (or --probe)")
    report = (_load(args.report) if args.report else None) or []
    benches = {}
    for t in args.targets:
        entries = (
            _load(args.out / f"llama-bench-{t}.json")
            if (args.out / f"llama-bench-{t}.json").exists()
            else None
        )
        benches[t] = bench_speeds(entries or [])
    rows = table_rows(report, benches, args.targets)
    text = render(rows, args.targets)
    print(text)
    (args.out / "table.txt").write_text(text + "\n")
    payload = {
        "rows": [asdict(r) for r in rows],
        "llama_bench": {t: asdict(b) for t, b in benches.items()},
        "runs": {t: latest_run(report, f"llama-{t}") for t in args.targets},
    }
    (args.out / "table.json").write_text(json.dumps(payload, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
