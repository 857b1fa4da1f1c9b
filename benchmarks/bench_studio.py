"""Studio latency: one option edit re-scored on 1,000 cached inputs x 30 classes, and the page updated.

A synthetic world (30 classes, 5 questions of 8 options, 512-d embeddings; each input
is the sum of its class's option prompts plus noise) is opened in the studio with
every input embedding already computed. Each edit rewords one option with a text
never seen before, so the prompt bank embeds exactly one new prompt (a hashed text
"model": the benchmark measures the studio, not an encoder). Three measurements:

- in process: ``Studio.edit`` + every figure (evaluate, misclassified, inspect) + every fragment rendered;
- HTTP: POST /api/edit to the real server on 127.0.0.1 until the answer (fragments included) is read;
- browser: in headless Chromium (Selenium), from the edit's ``change`` event to the next animation frame after
  the fragments are swapped in (skipped, and said so, without chromium, chromedriver or selenium).

The target is < 200 ms per edit (the median; the p90 shows how much other work on the machine adds). With the critters hard split present (``make splits``) a fourth row measures
the same HTTP round trip with the real bundled model on it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import httpx
import numpy as np
import yaml

import _common  # noqa: F401  (offline hub)
from cotembed._embeddings import EmbeddingSet, PromptBank
from cotembed.scoring._threads import single_blas_thread
from cotembed.studio import _rendering as rendering
from cotembed.studio._app import Background, create_app
from cotembed.studio._state import Studio

ROOT = Path(__file__).resolve().parents[1]
TARGET_MS = 200.0
DIM = 512


class HashedTexts:
    """A text 'encoder': each text is a unit vector seeded by its hash (no model cost)."""

    model_key = "bench:hashed"
    logit_scale = 50.0

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            v = np.random.default_rng(seed).normal(size=DIM)
            rows.append(v / np.linalg.norm(v))
        return np.asarray(rows, dtype=np.float32)


def synthetic(folder: Path, inputs: int, classes: int, groups: int, options: int, seed: int) -> tuple[Path, EmbeddingSet, PromptBank]:
    rng = np.random.default_rng(seed)
    spec = {f"q{g}": {"prompt": f"question {g}: it is {{}}.", "options": [f"answer {g}.{o}" for o in range(options)]} for g in range(groups)}
    codes = rng.choice(options ** groups, size=classes, replace=False)
    rules = {f"class{n:02d}": {f"q{g}": f"answer {g}.{(int(code) // options ** g) % options}" for g in range(groups)}
             for n, code in enumerate(codes)}
    path = folder / "system.yaml"
    path.write_text(yaml.safe_dump({"name": "bench", "groups": spec, "rules": rules}, sort_keys=False), encoding="utf-8")
    encoder = HashedTexts()
    bank = PromptBank(encoder)  # type: ignore[arg-type]
    labels = [f"class{int(n):02d}" for n in rng.integers(classes, size=inputs)]
    rows = []
    for label in labels:
        rule = rules[label]
        texts = [spec[g]["prompt"].format(rule[g]) for g in spec]
        rows.append(bank.embed(texts).sum(axis=0) + rng.normal(scale=0.9, size=DIM))
    embeddings = np.asarray(rows, dtype=np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    data = EmbeddingSet(embeddings, [f"input-{i}" for i in range(inputs)], list(labels), encoder.model_key)
    return path, data, bank


def summary(times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]


def edits(studio: Studio, count: int) -> list[dict[str, Any]]:
    group = studio.system.groups[0]
    return [{"op": "option", "group": group.name, "index": i % len(group.options), "text": f"reworded answer {i}"} for i in range(count)]


def in_process(studio: Studio, count: int) -> list[float]:
    thumbs = rendering.Thumbnails(studio)
    times = []
    for op in edits(studio, count):
        started = time.perf_counter()
        assert studio.edit(op).ok
        rendering.fragments(studio, thumbs)
        rendering.metrics(studio)
        times.append(1000 * (time.perf_counter() - started))
    return times


def over_http(url: str, studio: Studio, count: int, offset: int) -> list[float]:
    times = []
    with httpx.Client(base_url=url, timeout=60) as client:
        client.post("/api/claim", json={"tab": "bench"})
        for op in edits(studio, count + offset)[offset:]:
            started = time.perf_counter()
            answer = client.post("/api/edit", json={"tab": "bench", **op}).json()
            times.append(1000 * (time.perf_counter() - started))
            assert answer["ok"], answer
    return times


BROWSER_EDIT = """
const [index, text, done] = arguments;
const input = document.getElementById(`opt-${index}-q0`);
const before = window.studio.updates;
const started = performance.now();
input.value = text;
input.dispatchEvent(new Event("change", {bubbles: true}));
(function poll() {
  if (window.studio.updates > before) requestAnimationFrame(() => done(performance.now() - started));
  else setTimeout(poll, 1);
})();
"""


BROWSER_PARTS: list[dict[str, float]] = []


def in_browser(url: str, studio: Studio, count: int, offset: int) -> list[float] | str:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        return "skipped: selenium is not installed"
    browser = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    driver_path = shutil.which("chromedriver")
    if not browser or not driver_path:
        return "skipped: no chromium with chromedriver"
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1000", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.set_script_timeout(60)
        driver.get(url)
        for _ in range(100):
            if driver.execute_script("return Boolean(window.studio) && document.getElementById('opt-0-q0') !== null"):
                break
            time.sleep(0.1)
        driver.execute_script("return fetch('api/claim', {method: 'POST', headers: {'Content-Type': 'application/json'}, "
                              "body: JSON.stringify({tab: window.studio.tab, take_over: true})}).then(r => r.json())")
        times, parts = [], []
        for op in edits(studio, count + offset)[offset:]:
            times.append(float(driver.execute_async_script(BROWSER_EDIT, op["index"], op["text"])))
            parts.append(driver.execute_script("return window.studio.lastTiming"))
        BROWSER_PARTS.extend(parts)
        return times
    finally:
        driver.quit()


def critters_http(count: int) -> str | list[float]:
    split = ROOT / ".cotembed-data" / "critters-hard"
    if not (split / "Brazzik").is_dir():
        return "skipped: no .cotembed-data/critters-hard (make splits)"
    from cotembed.data import collect_samples
    from cotembed.encoders import load_encoder

    encoder = load_encoder("critters")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "system.yaml"
        shutil.copy(ROOT / "examples/critters/system_paraphrased.yaml", path)
        data = EmbeddingSet.from_samples(collect_samples([split]), encoder)
        studio = Studio(path, data, PromptBank(encoder).embed, logit_scale=encoder.logit_scale)
        studio.figures()
        with Background(create_app(studio)) as url:
            over_http(url, studio, 2, 10_000)  # warm: the first page render makes the thumbnails
            return over_http(url, studio, count, 0)


def row(name: str, times: list[float] | str, note: str) -> str:
    if isinstance(times, str):
        return f"{name:<44} {times}"
    median, p90 = summary(times)
    verdict = "meets" if median < TARGET_MS else "MISSES"
    return f"{name:<44} {median:8.1f} {p90:8.1f} {TARGET_MS / median:9.1f}x  {verdict} the target  {note}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=1000)
    parser.add_argument("--classes", type=int, default=30)
    parser.add_argument("--edits", type=int, default=30, help="edits measured per path")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rows: list[tuple[str, Callable[[], list[float] | str], str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        path, data, bank = synthetic(Path(tmp), args.inputs, args.classes, 5, 8, args.seed)
        studio = Studio(path, data, bank.embed, logit_scale=HashedTexts.logit_scale)
        with single_blas_thread():
            studio.figures()
        figures = studio.figures()
        assert figures.report is not None
        print(f"{args.inputs} cached inputs x {args.classes} classes, {len(studio.system.groups)} questions, "
              f"{studio.system.n_prompts} option prompts; methods {', '.join(studio.methods)}; "
              f"cot accuracy {100 * (figures.report.methods['cot'].acc1 or 0):.1f}%")
        print(f"per edit: 1 new prompt embedded, then evaluate + misclassified + inspect + every page fragment; target < {TARGET_MS:.0f} ms "
              f"(median); load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n")
        print(f"{'path':<44} {'median':>8} {'p90':>8} {'vs target':>10}  (ms)")
        local = in_process(studio, args.edits)
        rows.append(("in process (score + render)", lambda: local, ""))
        with Background(create_app(studio)) as url:
            http = over_http(url, studio, args.edits, args.edits)
            browser = in_browser(url, studio, args.edits, 2 * args.edits)
        rows.append(("HTTP round trip (127.0.0.1)", lambda: http, ""))
        rows.append(("browser round trip (Chromium, edit -> paint)", lambda: browser, ""))
    critters = critters_http(min(args.edits, 15))
    rows.append(("critters hard, real model: HTTP round trip", lambda: critters, "(560 inputs x 28 classes)"))
    for name, get, note in rows:
        print(row(name, get(), note))
    if BROWSER_PARTS:
        medians = {k: statistics.median(p[k] for p in BROWSER_PARTS) for k in ("answer", "swap")}
        print(f"\nbrowser round trip, medians of its parts: request + server + JSON {medians['answer']:.1f} ms, "
              f"fragments swapped in {medians['swap']:.1f} ms, the rest is layout and paint")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
