"""The studio in real Chromium (Debian's ``chromium`` driven by ``chromium-driver`` through Selenium).

`cotembed studio` opens the paraphrased critters system on the hard split; the test
rewords a weak option, sees the accuracy change, accepts an induce proposal, saves
(after confirming), and checks that the saved file validates and scores the same from
`cotembed eval`. At desktop and phone widths, with no console errors; screenshots are
kept under ``$COTEMBED_SCREENSHOTS`` when set.

Without Chromium, chromedriver or Selenium these tests skip, except under ``CI=true``,
where they fail. The hard split is ``.cotembed-data/critters-hard`` (``make splits``);
without it a smaller hard split is generated.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from cotembed.cli import main
from cotembed.system import System
from llm_server import PROXY_VARS, ScriptedChatServer, reply

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "critters"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
DESKTOP, PHONE = (1280, 1000), (390, 844)
WAIT_S = 240


def _missing(message: str) -> None:
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def tools() -> tuple[str, str]:
    try:
        import selenium  # noqa: F401
    except ImportError:
        _missing("selenium is not installed (pip install 'cotembed[dev]')")
    named = os.environ.get("COTEMBED_CHROMIUM")
    browser = shutil.which(named) if named else next((p for p in map(shutil.which, BROWSERS) if p), None)
    driver = shutil.which(os.environ.get("COTEMBED_CHROMEDRIVER", "chromedriver"))
    if not browser or not driver:
        _missing("no headless browser with a driver: install Debian's chromium and chromium-driver "
                 "(or set COTEMBED_CHROMIUM and COTEMBED_CHROMEDRIVER)")
    return str(browser), str(driver)


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    made = ROOT / ".cotembed-data" / "critters-hard"
    if (made / "Brazzik").is_dir():
        return made
    out = tmp_path_factory.mktemp("studio-split") / "critters-hard"
    assert main(["critters", "generate", "--species", str(EXAMPLES / "species.yaml"), "--per-class", "20", "--seed", "2002",
                 "--difficulty", "hard", "--out", str(out), "-q"]) == 0
    return out


@pytest.fixture(scope="module")
def llm() -> Iterator[ScriptedChatServer]:
    """An OpenAI-compatible server on 127.0.0.1; each test queues the answers it expects."""
    with ScriptedChatServer() as server:
        yield server


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory, split: Path, llm: ScriptedChatServer) -> Iterator[dict[str, Any]]:
    """`cotembed studio` in a subprocess on a free port, on a copy of the paraphrased system, with the scripted LLM."""
    root = tmp_path_factory.mktemp("studio")
    system = root / "system_paraphrased.yaml"
    shutil.copy(EXAMPLES / "system_paraphrased.yaml", system)
    cache = root / "cache.sqlite"
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS and not k.startswith("COTEMBED_LLM")}
    env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen([sys.executable, "-m", "cotembed.cli", "studio", str(system), str(split), "--model", "critters",
                             "--cache", str(cache), "--port", "0", "-q", "--llm-base-url", llm.base_url, "--llm-model", "scripted-model",
                             "--max-attempts", "1"], stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stderr is not None
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True).start()  # type: ignore[union-attr]
    url, seen = None, []
    deadline = time.monotonic() + 300
    while url is None and time.monotonic() < deadline and proc.poll() is None:
        try:
            seen.append(lines.get(timeout=1))
        except queue.Empty:
            continue
        found = re.search(r"open (http://\S+)", seen[-1])
        url = found.group(1) if found else None
    if url is None:
        proc.kill()
        pytest.fail("the studio did not start:\n" + "".join(seen[-30:]))
    try:
        yield {"url": url, "system": system, "cache": cache, "split": split, "root": root}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _driver(tools: tuple[str, str], size: tuple[int, int]) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver = tools
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
                 f"--window-size={size[0]},{size[1]}", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    chrome = webdriver.Chrome(service=Service(driver), options=options)
    if size[0] < 600:  # a headless window is at least 500 px wide: emulate the phone's viewport instead
        chrome.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": size[0], "height": size[1], "deviceScaleFactor": 1, "mobile": True})
    return chrome


def keep(driver: Any, name: str, root: Path) -> Path:
    png = root / name
    driver.save_screenshot(str(png))
    target = os.environ.get("COTEMBED_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(png, Path(target) / name)
    return png


def console_errors(driver: Any) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry.get("level") in ("SEVERE", "ERROR")]


def accuracy(driver: Any, method: str = "cot") -> float:
    return float(driver.find_element("id", f"acc-{method}").get_attribute("data-value"))


def wait(driver: Any, condition: Any, timeout: float = WAIT_S) -> Any:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # A fragment swapped in between finding an element and reading it: read again.
    return WebDriverWait(driver, timeout, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,)).until(condition)


def click(driver: Any, element: Any) -> None:
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    element.click()


def idle(driver: Any) -> None:
    wait(driver, lambda d: d.execute_script("return window.studio && window.studio.busy === 0"))


def test_edit_induce_save_and_the_saved_file_scores_the_same(tools: tuple[str, str], studio: dict[str, Any]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver = _driver(tools, DESKTOP)
    try:
        driver.get(studio["url"])
        wait(driver, lambda d: d.find_elements(By.ID, "acc-cot"))
        start = accuracy(driver)
        # The colour question is answered barely above chance: "crimson" never occurs in a caption.
        assert "colour" in driver.find_element(By.ID, "questions").text
        field = driver.find_element(By.ID, "opt-0-colour")
        assert field.get_attribute("value") == "crimson"
        field.send_keys(Keys.CONTROL, "a")
        field.send_keys("red", Keys.ENTER)
        wait(driver, lambda d: accuracy(d) != start)
        edited = accuracy(driver)
        assert edited > start  # the caption word is what the model learnt
        assert "+    - red" in driver.find_element(By.ID, "diff-text").text
        assert driver.find_element(By.ID, "dirty").is_displayed()
        keep(driver, "studio-desktop-edited.png", studio["root"])

        # An invalid edit: the field says why, the last valid system keeps scoring.
        other = driver.find_element(By.ID, "opt-1-colour")
        other.send_keys(Keys.CONTROL, "a")
        other.send_keys("red", Keys.ENTER)
        wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, '[data-problems-for="option:colour:1"]').text)
        assert "red" in driver.find_element(By.CSS_SELECTOR, '[data-problems-for="option:colour:1"]').text
        assert accuracy(driver) == edited
        other.send_keys(Keys.CONTROL, "a")
        other.send_keys("tangerine", Keys.ENTER)
        wait(driver, lambda d: not d.find_element(By.CSS_SELECTOR, '[data-problems-for="option:colour:1"]').text)

        # A confusion cell lists its inputs, with thumbnails and answers.
        click(driver, driver.find_element(By.CSS_SELECTOR, "#confusion td:not(.diag) .cellbtn"))
        wait(driver, lambda d: d.find_element(By.ID, "cell").is_displayed() and d.find_elements(By.CSS_SELECTOR, "#cell figure.input img"))

        # Induce: a proposal with its measured effect, accepted.
        click(driver, driver.find_element(By.ID, "induce"))
        wait(driver, lambda d: d.find_elements(By.ID, "accept"))
        effect = driver.find_element(By.ID, "proposal").text
        assert "Measured on" in effect and "→" in effect
        driver.execute_script("window.scrollTo(0, 0)")
        keep(driver, "studio-desktop-proposal.png", studio["root"])
        click(driver, driver.find_element(By.ID, "accept"))
        wait(driver, lambda d: not d.find_elements(By.ID, "accept"))
        idle(driver)
        induced = {m: accuracy(driver, m) for m in ("cot", "hybrid")}
        assert induced["cot"] > edited

        # Save: nothing is written before the person confirms.
        before = studio["system"].read_text(encoding="utf-8")
        click(driver, driver.find_element(By.ID, "save"))
        wait(driver, lambda d: d.find_element(By.ID, "confirm").is_displayed())
        assert studio["system"].read_text(encoding="utf-8") == before
        click(driver, driver.find_element(By.ID, "save-confirmed"))
        wait(driver, lambda d: "saved" in d.find_element(By.ID, "notice").text)
        backups = list(studio["system"].parent.glob(studio["system"].name + ".bak-*"))
        assert len(backups) == 1 and backups[0].read_text(encoding="utf-8") == before
        driver.execute_script("window.scrollTo(0, 0)")
        keep(driver, "studio-desktop-saved.png", studio["root"])

        # A bounded optimize run shows its progress and stops when asked.
        click(driver, driver.find_element(By.ID, "optimize"))
        wait(driver, lambda d: d.find_elements(By.ID, "optimize-progress"))
        stop = driver.find_elements(By.ID, "stop-optimize")
        if stop:
            click(driver, stop[0])
        wait(driver, lambda d: d.find_element(By.ID, "optimize-progress").get_attribute("data-running") == "0")
        assert re.search(r"(stopped|done).*candidates", driver.find_element(By.ID, "optimize-progress").text)
        idle(driver)

        # A second tab is told that the system is being edited elsewhere.
        first = driver.current_window_handle
        driver.switch_to.new_window("tab")
        driver.get(studio["url"])
        wait(driver, lambda d: d.find_elements(By.ID, "take-over"))
        assert "another tab" in driver.find_element(By.ID, "notice").text
        driver.close()
        driver.switch_to.window(first)
        assert console_errors(driver) == []
    finally:
        driver.quit()

    saved = System.load(studio["system"])  # validates
    run = subprocess.run([sys.executable, "-m", "cotembed.cli", "eval", str(studio["system"]), str(studio["split"]),
                          "--model", "critters", "--cache", str(studio["cache"]), "--methods", "cot,hybrid", "--format", "json", "-q"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["system"]["hash"] == saved.fingerprint
    for method, value in induced.items():
        assert report["methods"][method]["acc1"] == pytest.approx(value, abs=1e-9)


def test_llm_revision_per_change_and_save_as(tools: tuple[str, str], studio: dict[str, Any], llm: ScriptedChatServer) -> None:
    """Notes go to the LLM with the confusions; its revision is a list of changes, one left out, the rest accepted; Save as."""
    import httpx
    import yaml
    from selenium.webdriver.common.by import By

    current = System.from_dict(yaml.safe_load(httpx.get(studio["url"] + "api/state", timeout=60).json()["fragments"]["yaml"]))
    revised = current.to_dict()
    first = next(iter(revised["groups"]))
    revised["groups"][first]["prompt"] = "A picture of a critter: " + revised["groups"][first]["prompt"]
    last = list(revised["groups"])[-1]
    revised["groups"][last]["weight"] = 0.5
    llm.push(reply("Here is the revision:\n```json\n" + json.dumps(revised) + "\n```"))
    driver = _driver(tools, DESKTOP)
    try:
        driver.get(studio["url"])
        wait(driver, lambda d: d.execute_script("return window.studio && window.studio.holder !== null"))
        if not driver.execute_script("return window.studio.holder"):  # the first test's tab still holds the system
            click(driver, driver.find_element(By.ID, "take-over"))
            wait(driver, lambda d: d.execute_script("return window.studio.holder"))
        driver.find_element(By.ID, "llm-notes").send_keys("the model confuses the <small> critters; ask about shape")
        click(driver, driver.find_element(By.ID, "llm"))
        wait(driver, lambda d: d.find_elements(By.ID, "accept") and "llm" in d.find_element(By.ID, "proposal").text)
        boxes = driver.find_elements(By.CSS_SELECTOR, "#proposal-form input[name=change]")
        assert len(boxes) == 2
        assert "the model confuses the <small> critters" in llm.requests[-1].last_user
        assert "Confusions that cost most" in llm.requests[-1].last_user
        click(driver, boxes[1])  # leave the weight change out: the effect of the prompt change alone is measured
        wait(driver, lambda d: "1 checked change(s) alone" in d.find_element(By.ID, "proposal-preview").text)
        alone = json.loads(driver.find_element(By.ID, "proposal-preview").get_attribute("data-after"))
        driver.execute_script("window.scrollTo(0, 0)")
        keep(driver, "studio-desktop-llm.png", studio["root"])
        click(driver, driver.find_element(By.ID, "accept"))
        wait(driver, lambda d: not d.find_elements(By.ID, "accept"))
        idle(driver)
        assert "A picture of a critter" in driver.find_element(By.ID, "diff-text").text
        assert "weight: 0.5" not in driver.find_element(By.ID, "diff-text").text
        assert accuracy(driver) == pytest.approx(alone["cot"], abs=1e-9)  # the preview measured what was accepted

        click(driver, driver.find_element(By.ID, "save-as"))
        driver.find_element(By.ID, "save-as-path").send_keys("revised.yaml")
        click(driver, driver.find_element(By.ID, "save-as-go"))
        wait(driver, lambda d: "now editing" in d.find_element(By.ID, "notice").text)
        target = studio["system"].parent / "revised.yaml"
        assert System.load(target).groups[0].prompt.startswith("A picture of a critter")
        assert console_errors(driver) == []
    finally:
        driver.quit()


def test_phone_width_fits_and_logs_no_errors(tools: tuple[str, str], studio: dict[str, Any]) -> None:
    from selenium.webdriver.common.by import By

    driver = _driver(tools, PHONE)
    try:
        driver.get(studio["url"])
        wait(driver, lambda d: d.find_elements(By.ID, "acc-cot"))
        width = driver.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1] + 1, f"the page scrolls sideways at phone width: {width}"
        keep(driver, "studio-phone.png", studio["root"])
        assert console_errors(driver) == []
    finally:
        driver.quit()
