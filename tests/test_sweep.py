"""`edgeprof sweep` on the demo model: quantize, profile and score every variant, then again
with everything reused; the chart; and its pieces (the Pareto front) on hand-made points."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from edgeprof.errors import UsageError
from edgeprof.quality.sweep import parse_onnx
from edgeprof.report.plots import pareto_front
from tests.builders import cli

FOUR = str(Path(__file__).parent / "data" / "four_prompts.jsonl")
QUICK = ("--prompts", FOUR, "--max-tokens", "8", "--repetitions", "1", "--warmup", "0",
         "--idle-seconds", "0", "--threads", "2", "--quality-ctx", "128")  # fmt: skip


def test_pareto_front_by_hand() -> None:
    pts = [(0.0, 5.0), (0.01, 3.0), (0.02, 4.0), (0.5, 1.0), (0.6, 2.0)]
    assert pareto_front(pts) == [0, 1, 3]  # lower x and lower y
    speed = [(0.0, 50.0), (0.01, 80.0), (0.02, 70.0), (0.5, 120.0)]
    assert pareto_front(speed, maximize_y=True) == [0, 1, 3]


def test_onnx_formats_are_checked() -> None:
    assert parse_onnx("int4, int8,int4") == ("int4", "int8")
    assert parse_onnx("none") == ()
    with pytest.raises(UsageError, match="--onnx takes int4"):
        parse_onnx("int3")


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any], Path]:
    tmp = tmp_path_factory.mktemp("sweep")
    text = tmp / "text.txt"
    from edgeprof.quality.perplexity import bundled_text

    text.write_text(bundled_text()[:3000], encoding="utf-8")  # about 5 chunks of 128 tokens
    args = ("sweep", "demo", "--types", "Q8_0,Q4_0,Q2_K", "--onnx", "int4", "-o", tmp / "q",
            "--db", tmp / "p.db", "--text", text, *QUICK, "--json")  # fmt: skip
    first = cli(*args)
    assert first.exit_code == 0, first.stderr
    second = cli(*args)
    assert second.exit_code == 0, second.stderr
    return json.loads(first.stdout), json.loads(second.stdout), tmp


@pytest.mark.model
@pytest.mark.slow
def test_sweep_scores_every_variant_and_kld_rises_as_bits_fall(swept: Any) -> None:
    first, _, tmp = swept
    rows = {r["name"]: r for r in first["rows"]}
    assert set(rows) == {"F32 reference", "Q4_1 (source)", "Q8_0", "Q4_0", "Q2_K", "ONNX int4"}
    assert first["reference_note"] == "reference: dequantized from Q4_1"
    ref = rows["F32 reference"]
    assert ref["is_reference"] and ref["kld_mean"] == 0
    kld = {n: rows[n]["kld_mean"] for n in ("Q8_0", "Q4_0", "Q2_K")}
    assert 0 < kld["Q8_0"] < kld["Q4_0"] < kld["Q2_K"], kld
    assert rows["Q8_0"]["top1_agreement"] > rows["Q2_K"]["top1_agreement"]
    sizes = [rows[n]["size_bytes"] for n in ("Q2_K", "Q4_0", "Q8_0", "F32 reference")]
    assert sizes == sorted(sizes)
    for r in first["rows"]:
        assert r["decode_tps"] > 0 and r["j_per_output_token"] > 0 and r["peak_rss_bytes"] > 0
        assert r["ppl"] > 1
    # the ONNX export of the source is scored against the same reference
    assert rows["ONNX int4"]["backend"] == "onnx" and rows["ONNX int4"]["kld_mean"] > 0
    chart = Path(first["chart"])
    assert chart.is_file() and chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert chart.parent == tmp / "q"


@pytest.mark.model
@pytest.mark.slow
def test_a_second_sweep_reuses_everything(swept: Any) -> None:
    first, second, _ = swept
    assert all(r["run_reused"] for r in second["rows"])
    assert all(r["quality_reused"] for r in second["rows"] if not r["is_reference"])
    assert [r["run_id"] for r in second["rows"]] == [r["run_id"] for r in first["rows"]]
    assert [r["kld_mean"] for r in second["rows"]] == [r["kld_mean"] for r in first["rows"]]


@pytest.mark.model
@pytest.mark.slow
def test_the_html_report_gains_the_quality_chart(swept: Any) -> None:
    _, _, tmp = swept
    res = cli("report", tmp / "p.db", "--html", tmp / "r.html")
    assert res.exit_code == 0, res.stderr
    page = (tmp / "r.html").read_text(encoding="utf-8")
    assert "<h2>Quality against cost</h2>" in page
    assert "KL divergence from the reference" in page
