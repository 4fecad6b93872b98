"""Headless Chromium driven over the DevTools protocol (a pipe, no port, no network): load a
page at a given viewport width, read layout figures from it and take a full-page screenshot.

`--window-size` alone cannot test a phone: headless Chromium keeps its window at least 500 px
wide. `Emulation.setDeviceMetricsOverride` sets the viewport itself, as DevTools' device
toolbar does.

Also a script: `python -m tests.browser PAGE.html WIDTH OUT.png` (the screenshots in docs/).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--remote-debugging-pipe",
)  # fmt: skip

# What the page's layout says about overflow: the document's own scroll width against the
# viewport's, and every table or image wider than the block that holds it (a table may sit in
# a box that scrolls, which hides its overflow from the document).
LAYOUT_JS = """(() => {
  const d = document.documentElement;
  const wide = [];
  for (const el of document.querySelectorAll("table, img, figure, pre")) {
    const box = el.parentElement.getBoundingClientRect();
    const own = el.getBoundingClientRect();
    if (own.width > 0 && own.right > box.right + 1) {
      wide.push((el.id || el.tagName.toLowerCase()) + " " + Math.round(own.right - box.right));
    }
  }
  return JSON.stringify({scrollWidth: d.scrollWidth, clientWidth: d.clientWidth,
                         height: d.scrollHeight, wide: wide});
})()"""


@dataclass(frozen=True)
class Layout:
    scroll_width: int
    client_width: int
    height: int
    wide: tuple[str, ...]  # "id px": elements that stick out of their container

    @property
    def overflows(self) -> bool:
        return self.scroll_width > self.client_width or bool(self.wide)


class Browser:
    """One Chromium process; `open` loads a page at a viewport width."""

    def __init__(self, timeout_s: float = 60.0) -> None:
        self.timeout_s = timeout_s
        self._profile = tempfile.TemporaryDirectory(prefix="edgeprof-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def onto_3_and_4() -> None:
            # Chromium reads commands on fd 3 and writes replies on fd 4; copy both ends out
            # of the way first, in case one of them already is 3 or 4.
            r, w = os.dup(to_browser_r), os.dup(from_browser_w)
            os.dup2(r, 3)
            os.dup2(w, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={self._profile.name}", "about:blank"],
            pass_fds=(3, 4, to_browser_r, from_browser_w),
            preexec_fn=onto_3_and_4,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buf = b""
        self._id = 0
        self._session: str | None = None

    def __enter__(self) -> Browser:
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self._session = self.call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self._to_browser)
        os.close(self._from_browser)
        self._profile.cleanup()

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params}
        if self._session and not method.startswith("Target."):
            msg["sessionId"] = self._session
        os.write(self._to_browser, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            reply = self._read()
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result
        raise TimeoutError(f"chromium did not answer {method} in {self.timeout_s} s")

    def _read(self) -> dict[str, Any]:
        while b"\0" not in self._buf:
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        out: dict[str, Any] = json.loads(raw)
        return out

    def evaluate(self, expression: str) -> Any:
        res = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return res["result"].get("value")

    def open(self, page: Path, width: int, height: int = 900) -> Layout:
        """Load `page` in a viewport `width` px wide; its layout once it has loaded."""
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                  deviceScaleFactor=1, mobile=False)  # fmt: skip
        self.call("Page.navigate", url=page.resolve().as_uri())
        deadline = time.monotonic() + self.timeout_s
        while self.evaluate("document.readyState") != "complete":
            if time.monotonic() > deadline:
                raise TimeoutError(f"{page} did not load in {self.timeout_s} s")
            time.sleep(0.1)
        return self.layout()

    def layout(self) -> Layout:
        d = json.loads(self.evaluate(LAYOUT_JS))
        return Layout(d["scrollWidth"], d["clientWidth"], d["height"], tuple(d["wide"]))

    def screenshot(self, out: Path, width: int) -> Path:
        """The whole page, top to bottom, at the width last opened."""
        height = self.layout().height
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                  deviceScaleFactor=1, mobile=False)  # fmt: skip
        data = self.call("Page.captureScreenshot", format="png")["data"]
        out.write_bytes(base64.b64decode(data))
        return out


def main(argv: list[str]) -> int:
    page, width, out = Path(argv[0]), int(argv[1]), Path(argv[2])
    with Browser() as b:
        layout = b.open(page, width)
        b.screenshot(out, width)
    print(f"{out}: {width} px, {layout}")
    return 1 if layout.overflows else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
