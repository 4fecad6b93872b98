"""The decision section of `decide --html` and `compare --html`: the cost chart's numbers, the
break-even matrix, cost and latency per target, formatted inputs, and a layout that fits a
laptop and a phone in a real headless Chromium."""

from __future__ import annotations

import math
import re
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import pytest

from edgeprof.decision import economics as ec
from edgeprof.decision.compare import (
    CloudTarget,
    Comparison,
    DeviceTarget,
    Figure,
    Latency,
    Pair,
    compare,
)
from edgeprof.decision.economics import (
    CloudPrice,
    Deployment,
    DeviceCosts,
    DevicePerformance,
    Workload,
)
from edgeprof.report.cost_chart import cost_chart, crossing_labels
from edgeprof.report.decision_section import DecisionView, decision_section
from edgeprof.report.html import render_html_report, write_html_report
from edgeprof.store import Store
from tests.browser import CHROMIUM, Browser
from tests.builders import add_run, cli, device_row

# $1 a day of capital (a 3-year life), no electricity, no idle draw: a device day costs $1
# until the volume needs a second device.
ONE_DOLLAR_A_DAY = DeviceCosts(3 * ec.DAYS_PER_YEAR, 3, 0.0)
# 100 input tokens at 500 tok/s and 50 output at 50 tok/s: 1.2 s a request, 72,000 a day.
PERF = DevicePerformance(500, 50, 0.5, 0.05, idle_power_w=0.0)
CAPACITY = 86_400 / 1.2
LAT = Latency(ttft_p50_s=0.21, ttft_p99_s=0.48, e2e_p50_s=1.234, decode_tps=50.0,
              e2e_p99_s=2.5)  # fmt: skip


def _device(
    name: str, bounds: tuple[DevicePerformance, DevicePerformance] | None = None
) -> DeviceTarget:
    return DeviceTarget(name, f"run-{name}", "llamacpp", "m.gguf", "box", PERF, 100, 50, (), LAT,
                        bounds=bounds)  # fmt: skip


def _cloud(name: str, usd_per_request: float) -> CloudTarget:
    figure = Figure("cost_per_request_usd", usd_per_request, "USD", "assumed", "list")
    price = CloudPrice(cost_per_request_usd=usd_per_request)
    return CloudTarget(name, "model", price, None, (figure,))


def _comparison(
    devices: list[DeviceTarget],
    clouds: list[CloudTarget],
    costs: DeviceCosts = ONE_DOLLAR_A_DAY,
    requests_per_day: float = 2000,
) -> Comparison:
    w = Workload(requests_per_day, 100, 50)
    pairs = tuple(
        Pair(d.name, c.name, ec.break_even(w, d.performance, costs, c.price, cloud_name=c.name), ())
        for d in devices
        for c in clouds
    )
    return Comparison("p.db", w, costs, (), tuple(devices), tuple(clouds), pairs)


# -- the chart's numbers -------------------------------------------------------------------


def test_the_chart_crosses_where_the_costs_are_equal() -> None:
    # $0.001 a request against $1 a day: even at 1,000 requests/day; against $0.00001 only at
    # 100,000, past one device's 72,000: no crossing to mark
    c = _comparison([_device("llama.cpp")], [_cloud("cheap", 0.00001), _cloud("pricey", 0.001)])
    chart = cost_chart(c, {"llama.cpp": "llama.cpp"})
    (x,) = chart.crossings
    assert (x.device, x.cloud) == ("llama.cpp", "pricey")
    assert x.requests_per_day == pytest.approx(1000) and x.cost_usd_per_day == pytest.approx(1.0)
    device = next(k for k in chart.curves if k.side == "device")
    assert device.capacity_requests_per_day == pytest.approx(CAPACITY)
    # one device up to its capacity, two past it, three past twice, ...: $1 a day each
    for v, y in zip(chart.volumes, device.cost_usd_per_day, strict=True):
        assert y == pytest.approx(math.ceil(v / CAPACITY))
    assert device.cost_usd_per_day[-1] == pytest.approx(14.0)  # 1,000,000 / 72,000 → 14
    pricey = next(k for k in chart.curves if k.name == "pricey")
    assert pricey.cost_usd_per_day[0] == pytest.approx(chart.volumes[0] * 0.001)
    # the axis spans a tenth of the smallest mark (the crossing) to ten times the largest (the
    # cheap cloud's break-even)
    assert chart.volumes[0] == pytest.approx(100) and chart.volumes[-1] == pytest.approx(1e6)
    assert chart.requests_per_day == 2000


def test_the_band_spans_the_slow_and_fast_ends() -> None:
    slow, fast = replace(PERF, decode_tps=25), replace(PERF, decode_tps=100)
    c = _comparison([_device("llama.cpp", (slow, fast))], [_cloud("pricey", 0.001)])
    (device, _) = cost_chart(c).curves
    assert device.band_usd_per_day is not None
    low, high = device.band_usd_per_day
    for lo, mid, hi in zip(low, device.cost_usd_per_day, high, strict=True):
        assert lo <= mid + 1e-12 and mid <= hi + 1e-12
    # The slow end (2.2 s a request: 39,273 a day) buys a second device long before the fast
    # end: at 50,000 requests/day the band is $1 to $2.
    volumes = cost_chart(c).volumes
    i = min(range(len(low)), key=lambda k: abs(volumes[k] - 50_000))
    assert (low[i], high[i]) == (pytest.approx(1.0), pytest.approx(2.0))
    one_repetition = cost_chart(_comparison([_device("d")], [_cloud("x", 0.001)]))
    assert one_repetition.curves[0].band_usd_per_day is None


def test_near_crossings_share_one_label() -> None:
    # two device targets a hair apart cross each cloud at about the same volume
    twin = replace(_device("onnx"), performance=replace(PERF, decode_tps=49))
    c = _comparison([_device("llama.cpp"), twin], [_cloud("pricey", 0.001), _cloud("x", 0.0001)])
    labels = crossing_labels(cost_chart(c))
    assert [text for _, _, text in labels] == ["1,000/day", "10,000/day"]
    # apart by more than 15 %: a label each
    far = replace(_device("far"), performance=replace(PERF, decode_tps=49))
    c = _comparison([_device("llama.cpp"), far], [_cloud("a", 0.001), _cloud("b", 0.00085)])
    assert [t for _, _, t in crossing_labels(cost_chart(c))] == ["1,000/day", "1,176/day"]
    # within 15 %: one label with both ends
    c = _comparison([_device("llama.cpp")], [_cloud("a", 0.001), _cloud("b", 0.00092)])
    assert [t for _, _, t in crossing_labels(cost_chart(c))] == ["1,000–1,087/day"]


def test_a_user_device_has_no_curve_and_no_crossing() -> None:
    costs = DeviceCosts(0, 3, 0.17, deployment="user-device")
    chart = cost_chart(_comparison([_device("llama.cpp")], [_cloud("pricey", 0.001)], costs))
    assert [k.side for k in chart.curves] == ["cloud"] and chart.crossings == ()


# -- the section ---------------------------------------------------------------------------


class Text(HTMLParser):
    """What a reader sees: text outside <style> and <script>, and the hover texts and image
    descriptions (title, alt)."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.chunks: list[str] = []
        self._skip = 0
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._skip += tag in ("style", "script")
        self.chunks += [v for k, v in attrs if k in ("title", "alt", "data-label") and v]

    def handle_endtag(self, tag: str) -> None:
        self._skip -= tag in ("style", "script")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.chunks.append(data)


RAW = re.compile(r"\bNone\b|\bnan\b|\binf\b|\$?\d\.\d{7,}")
# The one exception: a sub-cent dollar amount in the formatting layer's own form, three
# significant digits after the zeros ("$0.0000263", `format_usd`), as the verdict sentences
# say a request's electricity. The tables show such amounts per 1,000 requests instead.
SMALL_USD = re.compile(r"\$0\.0{4,}[1-9]\d{0,2}")


def raw_values(page: str) -> list[str]:
    """Values that skipped the formatting layer: Python's None, nan, inf, and numbers with
    more than six decimals."""
    found = (m.group() for chunk in Text(page).chunks for m in RAW.finditer(chunk))
    return [v for v in found if not SMALL_USD.fullmatch(v)]


DECIDE_INPUTS = (
    Figure("requests_per_day", 2000.0, "requests/day", "assumed", "--requests-per-day"),
    Figure("max_ttft_s", None, "s", "assumed", "none (set --max-ttft-s)"),
    Figure("quality_floor", None, "", "assumed", "none (set --max-kld)"),
    Figure("utilization", 1.0, "fraction of the day", "assumed", "default"),
    Figure("battery_wh", None, "Wh", "assumed", "none: no battery (set --battery-wh)"),
    Figure("input_tokens", 103.83333333333333, "tokens/request", "measured", "mean"),
    Figure("electricity_usd_per_kwh", 0.17, "USD/kWh", "assumed", "default"),
)


def _decision_page(tmp_path: Path) -> tuple[Path, Comparison]:
    """A real report: three profiled runs (two devices) against two catalog clouds, with the
    inputs decide adds (None where none was given, a mean token count)."""
    with Store(tmp_path / "p.db") as store:
        laptop, pi = device_row("laptop-7", label="laptop"), device_row("pi5", label="Pi 5")
        # run ids apart in their first 8 characters, as runs made minutes apart are: a
        # comparison names its targets by them
        add_run(
            store,
            laptop,
            decode_tps=48.0,
            power_w=20.0,
            n_samples=120,
            run_id="01JAAAAAAA0000000000000000",
        )
        add_run(
            store,
            laptop,
            backend="onnx",
            decode_tps=31.0,
            power_w=22.0,
            n_samples=120,
            run_id="01JBBBBBBB0000000000000000",
        )
        add_run(store, pi, decode_tps=9.0, power_w=6.0, n_samples=120, label="pi <kitchen>",
                run_id="01JCCCCCCC0000000000000000")  # fmt: skip
        costs = DeviceCosts(device_price_usd=600, lifetime_years=3, electricity_usd_per_kwh=0.3)
        c = compare(store, costs, requests_per_day=5000,
                    cloud_models=["openai:gpt-5-nano", "anthropic:claude-haiku-4-5"])  # fmt: skip
        c = replace(c, assumptions=c.assumptions + DECIDE_INPUTS)
        view = DecisionView(c, verdict="At 5,000 requests/day, <the cloud> wins.")
        page = write_html_report(store, tmp_path / "decide.html", compare=view)
    return page, c


def test_no_raw_value_reaches_the_page(tmp_path: Path) -> None:
    page, _ = _decision_page(tmp_path)
    text = page.read_text(encoding="utf-8")
    assert raw_values(text) == []
    # the inputs as the terminal says them, "–" where none was given
    for shown in ("103.8 tokens/request", "100% of the day", "$0.170/kWh", "2,000 requests/day"):
        assert shown in text
    assert "&lt;the cloud&gt; wins" in text  # the verdict is escaped
    # and the check itself finds what slips through
    bad = text.replace("103.8 tokens/request", "103.83333333333333 tokens/request")
    assert raw_values(bad) == ["3.83333333333333"]
    assert raw_values(text.replace("</table>", "<td>None</td></table>", 1)) == ["None"]
    assert raw_values('<p title="0.12345678">x</p>') == ["0.12345678"]
    assert raw_values("<style>a{width:0.12345678px}</style><p>0.123456</p>") == []
    assert raw_values("<p>$0.0000263 a request</p>") == []  # format_usd's sub-cent form
    assert raw_values("<p>$0.00002625 a request</p>") == ["$0.00002625"]  # four digits: raw


def test_the_decision_comes_first(tmp_path: Path) -> None:
    page, c = _decision_page(tmp_path)
    text = page.read_text(encoding="utf-8")
    order = ["Verdict.", "cost per day against requests per day", 'id="break-even"',
             'id="targets"', 'id="assumptions"', "<h2>Runs</h2>"]  # fmt: skip
    at = [text.lower().index(s.lower()) for s in order]
    assert at == sorted(at)
    # a wide chart and a phone's copy, both inline
    assert text.count('alt="Cost per day against requests per day') == 2
    assert not re.search(r"""src="(?!data:image/png;base64,)""", text)
    assert not re.search(r"url\(|@import|<link|<script|https?://[^\s\"<]*\.(js|css)", text, re.I)
    # every pair's whole sentence is a cell's hover text; no pair has a paragraph of its own
    for p in c.pairs:
        assert f'title="{p.result.verdict}"' in text.replace("&#x27;", "'")
    assert 'class="verdict"' not in text


def test_matrix_and_latency_cells() -> None:
    devices = [_device("llama.cpp"), _device("onnxruntime:a-very-long-model-file-name.onnx [01J]")]
    clouds = [_cloud("pricey", 0.001), _cloud("free", 0.0), _cloud("<img src=x>", 0.002),
              _cloud("mid", 0.0004)]  # fmt: skip
    c = _comparison(devices, clouds)
    html = decision_section(DecisionView(c, names={"llama.cpp": "llama.cpp"}))
    start = html.index('id="break-even"')
    matrix = html[html.index("<tbody>", start) : html.index("</table>", start)]
    rows = re.findall(r"<tr>(.*?)</tr>", matrix)
    assert len(rows) == 2
    cells = re.findall(r'data-label="([^"]*)">(.*?)</td>', rows[0])
    by = {label: value for label, value in cells}
    assert "1,000/day" in by["pricey"]  # $1 a day against $0.001 a request
    # $1,095 of device against $2 a day of cloud bill at 2,000 requests/day: 18 months
    assert "payback 18.0 months<" in by["pricey"]
    # $0.80 a day saved: 45 months, longer than the device lives
    assert "2,500/day" in by["mid"] and "payback 45.0 months, past its 36-month life" in by["mid"]
    assert ">never<" in by["free"]  # a free cloud: no volume pays for the device
    assert by["capacity/device"] == "72,000/day" and by["devices needed"] == "1"
    # names are escaped: a file name cannot inject markup
    assert "<img src=x>" not in html and "&lt;img src=x&gt;" in html
    # the long name is collapsed, the full one on hover
    assert 'title="onnxruntime:a-very-long-model-file-name.onnx [01J]"' in rows[1]
    assert ">onnxruntime:a-very-long-mod…<" in rows[1]  # 28 characters
    targets = html[html.index('id="targets"') :]
    assert "0.21 s" in targets and "0.48 s" in targets and "1.2 s" in targets
    assert "2.5 s" in targets  # the whole answer's p99
    assert "not measured" in targets  # the clouds' latency


@pytest.mark.parametrize("deployment", ["owned", "user-device"])
def test_other_deployments_and_no_pair(deployment: Deployment) -> None:
    costs = DeviceCosts(0, 3, 0.17, deployment=deployment, battery_wh=50)
    c = _comparison([_device("llama.cpp")], [_cloud("pricey", 0.001)], costs)
    html = decision_section(DecisionView(c))
    assert raw_values(html) == [] and "from request 1" in html
    if deployment == "user-device":  # the operator pays nothing; the users pay the energy
        assert "$0 for you" in html and "the users pay the energy" in html
    # a quality floor that left every device target out: the section says what it can
    empty = replace(c, devices=(), pairs=())
    html = decision_section(DecisionView(empty, verdict="No device target meets the floor."))
    assert "No device target meets the floor." in html and 'id="break-even"' not in html


def test_compare_page_without_a_paragraph(tmp_path: Path) -> None:
    _, c = _decision_page(tmp_path)
    with Store(tmp_path / "p.db") as store:
        text = render_html_report(store, compare=c)  # compare --html: a Comparison alone
    assert "Verdict." not in text and 'id="break-even"' in text and raw_values(text) == []


# -- the layout in a real browser -----------------------------------------------------------

needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="chromium is not installed (apt-get install -y chromium); the layout check needs it",
)

WIDE_TABLE = (
    '<table id="wide"><tr>' + "<td>12,345.678 [12,000.0–13,000.0]</td>" * 30 + "</tr></table>"
)


@pytest.mark.slow
@needs_chromium
def test_the_page_fits_a_laptop_and_a_phone(tmp_path: Path) -> None:
    page, _ = _decision_page(tmp_path)
    text = page.read_text(encoding="utf-8")
    wide = tmp_path / "wide.html"
    wide.write_text(text.replace("</body>", f"{WIDE_TABLE}</body>"), encoding="utf-8")
    # a table that scrolls inside its own box hides its overflow from the document: caught too
    boxed = tmp_path / "boxed.html"
    box = f'<div style="overflow-x:auto">{WIDE_TABLE.replace("wide", "boxed")}</div>'
    boxed.write_text(text.replace("</body>", f"{box}</body>"), encoding="utf-8")
    with Browser() as b:
        # a desktop, a laptop, a small laptop (the runs table turns into cards), a phone
        for width in (1300, 1024, 800, 400):
            layout = b.open(page, width)
            assert layout.client_width <= width and layout.client_width > width - 20
            assert not layout.overflows, (width, layout)
            if width in (1300, 400):
                shot = b.screenshot(tmp_path / f"decide-{width}.png", width)
                assert shot.read_bytes()[:4] == b"\x89PNG"
            too_wide = b.open(wide, width)
            assert too_wide.scroll_width > too_wide.client_width and too_wide.overflows
            boxed_in = b.open(boxed, width)
            assert boxed_in.scroll_width <= boxed_in.client_width
            assert any(w.startswith("boxed ") for w in boxed_in.wide)


def test_compare_html_command(tmp_path: Path) -> None:
    """`edgeprof compare --html`: the decision section on top of the runs, no paragraph."""
    _decision_page(tmp_path)
    out = tmp_path / "compare.html"
    res = cli("compare", tmp_path / "p.db", "--requests-per-day", "1000",
              "--device-price", "600", "--lifetime-years", "3", "--price-in", "5",
              "--electricity", "0.3", "--price-out", "15", "--max-ttft-s", "0.01",
              "--html", out)  # fmt: skip
    assert res.exit_code == 0, res.output
    text = out.read_text(encoding="utf-8")
    assert text.index('id="break-even"') < text.index("<h2>Runs</h2>")
    assert "Verdict." not in text and raw_values(text) == []
    # --max-ttft-s reaches the page: every device's 50 ms first token is too slow for 10 ms
    assert text.count("slower than the TTFT limit") == 3


def test_pass_rate_and_cost_per_passing_answer_join_the_targets() -> None:
    """With decide's task quality, each target shows its pass rate with its interval and n,
    and $ per 1,000 passing answers (a request's cost / the pass rate); a target not graded
    says so. Without any graded target the columns are not there."""
    from edgeprof.decision.task_quality import TargetTaskQuality, TaskFloor, TaskQualityReport
    from edgeprof.grading.rates import PassRate

    c = _comparison([_device("llama.cpp")], [_cloud("pricey", 0.001), _cloud("mid", 0.0004)])
    rate = PassRate.of(19, 50)  # 38 % [26-52 %]
    graded = (
        TargetTaskQuality("llama.cpp", "device", "run-llama.cpp", rate, 0.0005, 0.0005 / 0.38),
        TargetTaskQuality("pricey", "cloud", None, PassRate.of(45, 50), 0.001, 0.001 / 0.9),
    )
    report = TaskQualityReport(TaskFloor(0.8, "tasks"), "tasks", graded, (), (), (), True)
    html = decision_section(DecisionView(c, task_quality=report))
    targets = html[html.index('id="targets"') :]
    head = targets[: targets.index("</thead>")]
    assert "pass rate [95%]" in head and "$ per 1,000 passing answers" in head
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", targets[targets.index("<tbody>") :])
    by_target = {re.sub("<[^>]+>", "", r.split("</td>")[0]): r for r in rows}
    device = next(r for t, r in by_target.items() if "llama.cpp" in t)
    assert "38%" in device and "n=50" in device and "$1.32" in device  # 1000 × 0.0005 / 0.38
    assert "90%" in next(r for t, r in by_target.items() if "pricey" in t)
    assert "not graded" in next(r for t, r in by_target.items() if "mid" in t)
    plain = decision_section(DecisionView(c))
    assert "pass rate" not in plain
