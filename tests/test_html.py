"""The HTML report: self-contained, and rendered by a real headless browser."""

from __future__ import annotations

import base64
import html
import re
import shutil
import struct
import subprocess
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest

from edgeprof.decision.economics import DeviceCosts
from edgeprof.errors import ProfileDBError
from edgeprof.report.html import render_html_report, write_html_report
from edgeprof.store import Store
from tests.builders import add_run, device_row

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class Page(HTMLParser):
    """The parts of a page the tests look at: runs table rows, images, every URL."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.rows: list[str] = []
        self.imgs: list[dict[str, str]] = []
        self.urls: list[str] = []
        self.body: dict[str, str] = {}
        self._table: str | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "table":
            self._table = a.get("id")
        if tag == "tr" and self._table == "runs" and "data-run-id" in a:
            self.rows.append(a["data-run-id"])
        if tag == "img":
            self.imgs.append(a)
        if tag == "body":
            self.body = a
        self.urls += [a[k] for k in ("src", "href", "action") if k in a]

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table = None


def png_size(uri: str) -> tuple[int, int]:
    data = base64.b64decode(uri.split(",", 1)[1])
    assert data[:8] == PNG_MAGIC
    return struct.unpack(">II", data[16:24])


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "profiles.db") as s:
        laptop, pi = device_row("laptop-7", label="laptop"), device_row("pi5", label="Pi 5")
        # ids apart in their first 8 characters (a comparison names its targets by them), as
        # runs made minutes apart are
        add_run(
            s,
            laptop,
            decode_tps=48.0,
            power_w=20.0,
            n_samples=120,
            run_id="01JAAAAAAA0000000000000000",
        )
        add_run(
            s,
            laptop,
            backend="onnx",
            decode_tps=31.0,
            power_w=22.0,
            n_samples=120,
            run_id="01JBBBBBBB0000000000000000",
        )
        add_run(s, pi, decode_tps=9.0, power_w=6.0, n_samples=120, label="pi <kitchen>",
                run_id="01JCCCCCCC0000000000000000")  # fmt: skip
        yield s


def test_report_is_self_contained(store: Store, tmp_path: Path) -> None:
    out = write_html_report(store, tmp_path / "r" / "report.html")
    text = out.read_text(encoding="utf-8")
    page = Page(text)
    assert sorted(page.rows) == sorted(r["id"] for r in store.runs())
    # No network: every URL is inline data, and the CSS loads nothing either.
    assert page.urls and all(u.startswith("data:image/png;base64,") for u in page.urls)
    assert not re.search(r"url\(|@import|<link|<script", text, re.I)
    # Two bar charts (decode tok/s, J/token) plus one timeline per run, all real PNGs.
    assert len(page.imgs) == 2 + 3
    for img in page.imgs:
        w, h = png_size(img["src"])
        assert w > 100 and h > 100
    assert "pi &lt;kitchen&gt;" in text  # labels are escaped, not interpreted
    assert "laptop · onnx" in text  # the group label of a bar


def test_report_subset_and_empty(store: Store, tmp_path: Path) -> None:
    first = store.runs()[0]["id"]
    page = Page(render_html_report(store, [first]))
    assert page.rows == [first]
    with Store(tmp_path / "empty.db") as empty, pytest.raises(ProfileDBError, match="no runs"):
        render_html_report(empty)


def test_report_shows_the_compare_verdict(store: Store) -> None:
    from edgeprof.decision.compare import compare

    costs = DeviceCosts(device_price_usd=600, lifetime_years=3, electricity_usd_per_kwh=0.3)
    comparison = compare(
        store, costs, requests_per_day=5000, price_in_usd_per_m=5, price_out_usd_per_m=15
    )
    text = render_html_report(store, compare=comparison)
    # each pair's verdict is the hover text of its break-even cell (tests/test_decision_page.py)
    for pair in comparison.pairs:
        assert html.escape(pair.result.verdict) in text
    assert 'id="break-even"' in text and 'id="assumptions"' in text


PROBE = """<script>
window.addEventListener("load", () => {
  for (const img of document.images) {
    img.setAttribute("data-natural-width", img.naturalWidth);
    img.setAttribute("data-natural-height", img.naturalHeight);
  }
  document.body.setAttribute("data-images", document.images.length);
});
</script>"""


@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is not installed "
                    "(apt-get install -y chromium); the browser check needs it")  # fmt: skip
def test_report_renders_in_headless_chromium(store: Store, tmp_path: Path) -> None:
    report = write_html_report(store, tmp_path / "report.html")
    # The report carries no script; the test adds one that records what the browser decoded.
    probe = tmp_path / "probe.html"
    probe.write_text(report.read_text().replace("</body>", PROBE + "</body>"), encoding="utf-8")
    done = subprocess.run(
        [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--disable-component-update", "--no-first-run",
            f"--user-data-dir={tmp_path / 'chromium-profile'}", "--virtual-time-budget=10000",
            "--dump-dom", probe.as_uri(),
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    page = Page(done.stdout)
    assert sorted(page.rows) == sorted(r["id"] for r in store.runs())
    assert page.body.get("data-images") == "5"
    for img in page.imgs:
        # The browser decoded each image to exactly the size written in its PNG header.
        assert (int(img["data-natural-width"]), int(img["data-natural-height"])) == png_size(
            img["src"]
        )
