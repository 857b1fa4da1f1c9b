"""The HTML report in a real browser: headless Chromium opens a 28-class critters report,
finds no console error, takes screenshots at desktop and phone size, and (through the
DevTools protocol on a pipe) checks that the phone layout does not overflow sideways and
that the tables sort.

Chromium is Debian's ``chromium`` package (``.ci/run`` installs it), or the binary named
by ``$COTEMBED_CHROMIUM``. Without one these tests skip, except under ``CI=true``, where
they fail. Set ``COTEMBED_SCREENSHOTS=DIR`` to keep the screenshots.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import re
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from cotembed.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "critters"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CONSOLE_LINE = re.compile(r":CONSOLE[:(]|Uncaught")
DESKTOP, PHONE = (1280, 2000), (390, 844)


@pytest.fixture(scope="module")
def browser() -> str:
    named = os.environ.get("COTEMBED_CHROMIUM")
    found = shutil.which(named) if named else next((p for p in map(shutil.which, BROWSERS) if p), None)
    if not found:
        message = f"no headless browser: install Debian's chromium (apt-get install chromium) or set COTEMBED_CHROMIUM (tried {named or ', '.join(BROWSERS)})"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture(scope="module")
def demo_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of a small hard critters split (28 classes, mistakes to show) with its curve."""
    root = tmp_path_factory.mktemp("report-browser")
    split, curve, page = root / "split", root / "curve.json", root / "report.html"
    common = ["--model", "critters", "--cache", str(root / "cache.sqlite"), "-q"]  # the second verb encodes nothing
    assert main(["critters", "generate", "--species", str(EXAMPLES / "species.yaml"), "--per-class", "3", "--seed", "5",
                 "--difficulty", "hard", "--out", str(split), "-q"]) == 0
    system = str(EXAMPLES / "system_paraphrased.yaml")
    assert main(["curve", system, str(split), *common, "--output", str(curve), "--no-plot"]) == 0
    assert main(["report", system, str(split), *common, "--curve", str(curve), "--max-examples", "12", "--output", str(page)]) == 0
    return page


def keep(png: Path) -> None:
    target = os.environ.get("COTEMBED_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(png, Path(target) / png.name)


def screenshot(browser: str, url: str, size: tuple[int, int], png: Path) -> list[str]:
    """Open ``url`` at ``size``, save a screenshot; returns the console lines Chromium logged."""
    with tempfile.TemporaryDirectory() as profile:
        run = subprocess.run(
            [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
             f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", f"--screenshot={png}",
             f"--window-size={size[0]},{size[1]}", url],
            capture_output=True, text=True, timeout=120,
        )
    assert png.exists(), f"no screenshot (exit {run.returncode}): {run.stderr[-2000:]}"
    return [line for line in run.stderr.splitlines() if CONSOLE_LINE.search(line)]


class DevTools:
    """A minimal Chrome DevTools Protocol client over ``--remote-debugging-pipe`` (no websocket
    library needed): Chromium reads commands on fd 3 and answers on fd 4, NUL-separated JSON."""

    def __init__(self, browser: str, size: tuple[int, int]):
        self.profile = tempfile.TemporaryDirectory()
        to_chrome_r, self.to_chrome = os.pipe()
        self.from_chrome, from_chrome_w = os.pipe()
        # Out of the way of 3 and 4, so the child's dup2 cannot clobber one end with the other.
        high_r, high_w = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10), fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
        os.close(to_chrome_r)
        os.close(from_chrome_w)

        def as_fds_3_and_4() -> None:
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        self.proc = subprocess.Popen(
            [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
             "--remote-debugging-pipe", f"--user-data-dir={self.profile.name}", f"--window-size={size[0]},{size[1]}", "about:blank"],
            pass_fds=(3, 4), preexec_fn=as_fds_3_and_4, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        os.close(high_r)
        os.close(high_w)
        self.size = size
        self.buffer = b""
        self.last_id = 0
        self.events: list[dict[str, Any]] = []
        self.session: str | None = None

    def __enter__(self) -> "DevTools":
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable")
        width, height = self.size
        self.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600})
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self.session = None
            self.send("Browser.close", timeout=5)
            self.proc.wait(timeout=10)
        except Exception:
            self.proc.kill()
            self.proc.wait(timeout=10)
        finally:
            os.close(self.to_chrome)
            os.close(self.from_chrome)
            self.profile.cleanup()

    def _message(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.from_chrome], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer")
            chunk = os.read(self.from_chrome, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, params: dict[str, Any] | None = None, timeout: float = 60) -> dict[str, Any]:
        self.last_id += 1
        command: dict[str, Any] = {"id": self.last_id, "method": method, "params": params or {}}
        if self.session:
            command["sessionId"] = self.session
        os.write(self.to_chrome, json.dumps(command).encode() + b"\0")
        while True:
            message = self._message(timeout)
            if message.get("id") == self.last_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def open(self, url: str) -> None:
        self.send("Page.navigate", {"url": url})
        deadline = time.monotonic() + 60
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            self.events.append(self._message(deadline - time.monotonic()))

    def eval(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def problems(self) -> list[str]:
        """Uncaught exceptions, console messages and browser log entries (CSP violations, failed loads)."""
        out = []
        for e in self.events:
            method, params = e.get("method"), e.get("params", {})
            if method == "Runtime.exceptionThrown":
                out.append(params["exceptionDetails"].get("exception", {}).get("description") or params["exceptionDetails"]["text"])
            elif method == "Runtime.consoleAPICalled":
                out.append(f"console.{params['type']}: {[a.get('value', a.get('description')) for a in params['args']]}")
            elif method == "Log.entryAdded":
                out.append(f"{params['entry']['level']}: {params['entry']['text']}")
        return out

    def screenshot(self, png: Path) -> None:
        png.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", {"format": "png"})["data"]))


# ------------------------------------------------------------------- tests
def test_the_checks_catch_a_broken_page(browser, tmp_path):
    """The console scan and the DevTools client both see script errors and blocked fetches."""
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><head><meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; "
                    "script-src 'unsafe-inline'\"></head><body><p>broken</p><img src='https://example.invalid/x.png'>"
                    "<script>console.log('said'); notDefined();</script></body></html>", encoding="utf-8")
    lines = screenshot(browser, page.as_uri(), PHONE, tmp_path / "broken.png")
    assert any("Uncaught ReferenceError: notDefined is not defined" in line for line in lines), lines
    with DevTools(browser, PHONE) as tab:
        tab.open(page.as_uri())
        problems = "\n".join(tab.problems())
    assert "notDefined is not defined" in problems and "console.log: ['said']" in problems
    assert "Content Security Policy" in problems


@pytest.mark.parametrize("size", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_report_opens_without_console_errors(browser, demo_page, tmp_path, size):
    png = tmp_path / f"report-{size[0]}x{size[1]}.png"
    assert screenshot(browser, demo_page.as_uri(), size, png) == []
    keep(png)
    image = Image.open(png)
    assert image.size == size
    grey = np.asarray(image.convert("L"))
    assert (grey < 110).mean() > 0.01 and (grey > 235).mean() > 0.4  # text on a light page, not a blank or error screen


def test_on_a_phone_nothing_overflows_sideways_and_the_parts_render(browser, demo_page, tmp_path):
    with DevTools(browser, PHONE) as tab:
        tab.open(demo_page.as_uri())
        layout = tab.eval("""({
            scroll: document.documentElement.scrollWidth, width: window.innerWidth,
            wide: Array.from(document.querySelectorAll('main *')).filter(e => !e.closest('.scroll')
                    && e.getBoundingClientRect().right > PHONE_WIDTH).map(e => e.tagName + ': ' + e.textContent.slice(0, 60)).slice(0, 5),
            heatmapRows: document.querySelector('svg.heat').querySelectorAll('text[text-anchor=end]').length,
            cards: document.querySelectorAll('article.card').length,
            thumbs: Array.from(document.querySelectorAll('.thumb')).filter(
                    t => getComputedStyle(t).backgroundImage.startsWith('url("data:image/')).length,
            curvePoints: document.querySelectorAll('svg.curve circle').length,
        })""".replace("PHONE_WIDTH", str(PHONE[0] + 1)))
        tab.screenshot(tmp_path / "phone-devtools.png")
        keep(tmp_path / "phone-devtools.png")
        assert tab.problems() == []
    # A mobile browser widens its layout viewport to fit content that overflows; both must stay at the phone's width.
    assert layout["scroll"] <= PHONE[0] and layout["width"] == PHONE[0], layout["wide"]
    assert layout["heatmapRows"] == 28
    assert layout["cards"] > 0 and layout["thumbs"] == layout["cards"]
    assert layout["curvePoints"] == 4


def test_clicking_a_column_sorts_the_table(browser, demo_page):
    column = "Array.from(document.querySelectorAll('table.classes tbody tr')).map(r => parseFloat(r.cells[3].dataset.v))"
    header = "document.querySelectorAll('table.classes thead th')[3]"
    with DevTools(browser, DESKTOP) as tab:
        tab.open(demo_page.as_uri())
        before = tab.eval(column)
        tab.eval(f"{header}.click()")
        ascending = tab.eval(column)
        state = tab.eval(f"{header}.getAttribute('aria-sort')")
        tab.eval(f"{header}.click()")
        descending = tab.eval(column)
        assert tab.problems() == []
    assert len(before) == 28 and before != ascending
    assert ascending == sorted(before) and state == "ascending" and descending == sorted(before, reverse=True)
