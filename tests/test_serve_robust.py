"""The service against hostile and unlucky inputs, on real loopback servers with a small
deterministic encoder (tests/support.py): a bad input fails only its own request, a large
registration does not stall other requests, YAML alias bombs and long values are refused
cheaply, and the command line refuses arguments that are not UTF-8."""

from __future__ import annotations

import base64
import concurrent.futures
import io
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from PIL import Image  # noqa: E402
from tests.support import COLOUR_SYSTEM, ColourEncoder  # noqa: E402

from cotembed.serve._settings import Batching, Limits, ServeSettings  # noqa: E402
from cotembed.system import System  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


class FragileEncoder(ColourEncoder):
    """Fails the way real models do on inputs they cannot take: a ValueError for a text
    holding "poison", a RuntimeError for "crash"; optionally slow per text."""

    def __init__(self, seconds_per_text: float = 0.0):
        super().__init__("fragile")
        self.seconds_per_text = seconds_per_text

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        for text in texts:
            if "poison" in text:
                raise ValueError("the tokenizer cannot take this text")
            if "crash" in text:
                raise RuntimeError("the model broke")
        time.sleep(self.seconds_per_text * len(texts))
        return super().encode_texts(texts)


class Served:
    def __init__(self, settings: ServeSettings, encoder: Any):
        from cotembed.serve._app import create_app
        from cotembed.serve._registry import Registry
        from cotembed.serve._server import ServerThread

        self.registry = Registry.with_encoders(settings, {"colour": encoder})
        try:
            self.server = ServerThread(create_app(self.registry)).start()
        except BaseException:
            self.registry.close()
            raise
        self.url = self.server.url

    def close(self) -> None:
        self.server.stop()
        self.registry.close()


def serve(tmp_path: Path, encoder: Any, **settings: Any) -> Served:
    base: dict[str, Any] = {"models": ("colour",), "systems": (System.from_dict(COLOUR_SYSTEM),), "cache": str(tmp_path / "c.sqlite")}
    return Served(ServeSettings(**{**base, **settings}), encoder)


@pytest.fixture
def batching(tmp_path: Path) -> Iterator[Served]:
    """Batches wait 300 ms for company (always), so concurrent requests share one."""
    served = serve(tmp_path, FragileEncoder(), batching=Batching(max_batch=64, max_wait_ms=300, max_queue=256, always_wait=True))
    yield served
    served.close()


def png(colour: str) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def post_concurrently(url: str, bodies: list[bytes]) -> list[Any]:
    def post(body: bytes) -> Any:
        return httpx.post(f"{url}/v1/classify", content=body, headers={"content-type": "application/json"}, timeout=60.0)

    with concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(post, bodies))


def classify_texts(text: str) -> bytes:
    return json.dumps({"labels": ["red thing", "blue thing"], "input": [text]}).encode()


# ------------------------------------------------------------------- one bad input, alone
def test_a_lone_surrogate_fails_only_its_own_request(batching: Served) -> None:
    bodies = [classify_texts(f"a red thing number {i}") for i in range(30)]
    bodies[7] = b'{"labels": ["red thing", "blue thing"], "input": ["cut emoji \\ud83d here"]}'  # valid JSON, not Unicode
    responses = post_concurrently(batching.url, bodies)
    statuses = [r.status_code for r in responses]
    assert statuses[7] == 422, responses[7].text
    error = responses[7].json()["error"]
    assert error["param"] == "input[0]" and "surrogate" in error["message"]
    assert statuses[:7] + statuses[8:] == [200] * 29
    assert all(r.json()["data"][0]["prediction"] == "red thing" for i, r in enumerate(responses) if i != 7)
    with pytest.raises(UnicodeEncodeError):
        "\ud83d".encode()  # the encoder itself would fail on it: the check keeps it out of the batch
    bad_label = b'{"labels": ["red \\udfff", "blue"], "input": ["x"]}'
    error = httpx.post(f"{batching.url}/v1/classify", content=bad_label, headers={"content-type": "application/json"}).json()["error"]
    assert error["param"] == "labels[0]" and "surrogate" in error["message"]


@pytest.mark.parametrize(("word", "status"), [("poison", 422), ("crash", 500)])
def test_an_input_the_model_fails_on_fails_alone_and_its_batch_is_answered(batching: Served, word: str, status: int) -> None:
    bodies = [classify_texts(f"a blue thing number {i}") for i in range(30)]
    bodies[11] = classify_texts(f"a blue {word} pill")
    responses = post_concurrently(batching.url, bodies)
    statuses = [r.status_code for r in responses]
    assert statuses[11] == status, responses[11].text
    assert responses[11].json()["error"]["param"] == "input[0]"
    assert statuses[:11] + statuses[12:] == [200] * 29
    assert all(r.json()["data"][0]["prediction"] == "blue thing" for i, r in enumerate(responses) if i != 11)
    metrics = httpx.get(f"{batching.url}/metrics").text
    assert "cotembed_batch_size_count" in metrics


# ------------------------------------------------------------- registration off the request path
def big_system(prompts: int, seed: int) -> dict[str, Any]:
    groups = {f"q{g}": {"prompt": f"is it {{}} (question {g}, {seed})?", "options": [f"option {o}" for o in range(100)]}
              for g in range(prompts // 100)}
    rules = {f"class {c}": {f"q{g}": f"option {(c * 7 + g) % 100}" for g in range(prompts // 100)} for c in range(50)}
    return {"name": f"big-{seed}", "groups": groups, "rules": rules}


def test_a_lone_request_does_not_wait_for_company_and_concurrent_ones_still_share_batches(tmp_path: Path) -> None:
    served = serve(tmp_path, FragileEncoder(), batching=Batching(max_batch=64, max_wait_ms=3000, max_queue=256))
    try:
        batcher = served.registry.models["colour"].batcher
        assert batcher is not None
        start = time.perf_counter()
        alone = httpx.post(f"{served.url}/v1/classify", content=classify_texts("a lone red thing"),
                           headers={"content-type": "application/json"}, timeout=60.0)
        assert alone.status_code == 200
        assert time.perf_counter() - start < 2.0  # not the 3 s a batch may wait: nobody else was on the way
        before = batcher.batches
        responses = post_concurrently(served.url, [classify_texts(f"a red thing number {i}") for i in range(30)])
        assert [r.status_code for r in responses] == [200] * 30
        # requests on their way were waited for: fewer batches than requests (how many fewer depends on how
        # the 30 client threads get scheduled on a loaded machine; 30 would mean no request ever waited)
        assert batcher.batches - before < 30
    finally:
        served.close()


def test_a_large_registration_leaves_other_requests_answered(tmp_path: Path) -> None:
    """2,000 prompts at 2 ms each: 4 s of model time, in turns; a cached input for another
    system is answered meanwhile, the new system answers 503 until it is ready."""
    served = serve(tmp_path, FragileEncoder(seconds_per_text=0.002), register_wait_s=0.3)
    try:
        client = httpx.Client(base_url=served.url, timeout=60.0)
        cached = {"system": "colours", "input": [{"image": png("red")}]}
        assert client.post("/v1/classify", json=cached).json()["data"][0]["prediction"] == "red-thing"
        body = json.dumps(big_system(2000, 1)).encode()
        accepted = client.post("/v1/systems", content=body, headers={"content-type": "application/json"})
        assert accepted.status_code == 202, accepted.text
        assert accepted.json()["status"] == "preparing" and accepted.headers["retry-after"]
        start = time.monotonic()
        answer = client.post("/v1/classify", json=cached)
        took = time.monotonic() - start
        assert answer.status_code == 200 and took < 1.0, took
        busy = client.post("/v1/classify", json={"system": "big-1", "input": ["x"]})
        assert busy.status_code == 503 and int(busy.headers["retry-after"]) >= 1
        assert busy.json()["error"]["param"] == "system"
        assert client.get("/v1/systems/big-1").json()["status"] == "preparing"
        deadline = time.monotonic() + 60
        while client.get("/v1/systems/big-1").json()["status"] != "ready":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        done = client.post("/v1/classify", json={"system": "big-1", "input": ["option 3"]})
        assert done.status_code == 200 and len(done.json()["data"][0]["predictions"]) == 50
        again = client.post("/v1/systems", content=body, headers={"content-type": "application/json"})
        assert again.status_code == 200
    finally:
        served.close()


def test_system_sizes_and_counts_are_capped(tmp_path: Path) -> None:
    served = serve(tmp_path, FragileEncoder(), limits=Limits(max_prompts=500, max_classes=40, max_systems=2))
    try:
        client = httpx.Client(base_url=served.url, timeout=60.0)
        too_many_prompts = client.post("/v1/systems", json=big_system(600, 2))
        assert too_many_prompts.status_code == 413 and "--max-prompts" in too_many_prompts.json()["error"]["message"]
        too_many_classes = client.post("/v1/systems", json=big_system(200, 3))  # 50 classes
        assert too_many_classes.status_code == 413 and "--max-classes" in too_many_classes.json()["error"]["message"]
        small = {**COLOUR_SYSTEM, "name": "second", "baseline_prompt": "a {} object"}
        assert client.post("/v1/systems", json=small).status_code == 201
        third = client.post("/v1/systems", json={**small, "name": "third", "baseline_prompt": "the {}"})
        assert third.status_code == 422 and "--max-systems" in third.json()["error"]["message"]
    finally:
        served.close()


def test_a_failed_registration_is_reported_and_frees_its_name(tmp_path: Path) -> None:
    served = serve(tmp_path, FragileEncoder())
    try:
        client = httpx.Client(base_url=served.url, timeout=60.0)
        poisoned = {**COLOUR_SYSTEM, "name": "bad", "baseline_prompt": "a poison {}"}
        response = client.post("/v1/systems", json=poisoned)
        assert response.status_code == 422 and "cannot be encoded" in response.json()["error"]["message"], response.text
        error = client.post("/v1/classify", json={"system": "bad", "input": ["x"]}).json()["error"]
        assert "registration failed" in error["message"]
        assert "bad" not in {s["name"] for s in client.get("/v1/systems").json()["data"]}
    finally:
        served.close()


# ------------------------------------------------------------------ alias bombs, long values
BILLION_LAUGHS = "\n".join(
    ["l1: &l1 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    + [f"l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 9)}]" for n in range(2, 10)]
    + ["groups: *l9", "rules: *l9", ""]
).encode()
"""Nine levels of nine aliases: 10^9 strings from about 500 bytes."""


def test_a_yaml_alias_bomb_is_refused_at_once_and_health_stays_responsive(tmp_path: Path) -> None:
    assert len(BILLION_LAUGHS) < 700
    served = serve(tmp_path, FragileEncoder())
    try:
        health: list[float] = []
        stop = threading.Event()

        def probe() -> None:
            while not stop.is_set():
                start = time.monotonic()
                assert httpx.get(f"{served.url}/health", timeout=30).status_code == 200
                health.append(time.monotonic() - start)
                time.sleep(0.02)

        prober = threading.Thread(target=probe)
        prober.start()
        try:
            start = time.monotonic()
            response = httpx.post(f"{served.url}/v1/systems", content=BILLION_LAUGHS, headers={"content-type": "application/yaml"}, timeout=60)
            took = time.monotonic() - start
        finally:
            stop.set()
            prober.join()
        assert response.status_code == 422 and took < 2.0, (response.status_code, took)
        error = response.json()["error"]
        assert "alias" in error["message"] or "anchor" in error["message"]
        assert len(response.content) < 2000
        assert health and max(health) < 1.0
        anchors = b"groups:\n  colour: &g {prompt: 'a {} thing', options: [red, blue]}\nrules:\n  A: {colour: red}\n"
        assert httpx.post(f"{served.url}/v1/systems", content=anchors).status_code == 422
    finally:
        served.close()


def test_long_values_quoted_in_errors_are_cut(batching: Served) -> None:
    label = "x" * 200_000
    response = httpx.post(f"{batching.url}/v1/classify", json={"labels": [label, label], "input": ["a"]}, timeout=60)
    error = response.json()["error"]
    assert response.status_code == 422 and error["param"] == "labels[1]"
    assert "given twice" in error["message"] and "characters cut" in error["message"]
    assert len(error["message"]) < 400
    huge_class = {"groups": {"colour": {"prompt": "a {} thing", "options": ["red"]}}, "rules": {"A": {"colour": "y" * 100_000}}}
    response = httpx.post(f"{batching.url}/v1/systems", json=huge_class, timeout=60)
    assert response.status_code == 422 and len(response.content) < 5000


# -------------------------------------------------------------------------- command line
def test_arguments_that_are_not_utf8_exit_2_with_a_message() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "LC_ALL": "C.UTF-8"}
    result = subprocess.run([sys.executable.encode(), b"-m", b"cotembed.cli", b"validate", b"caf\xe9.yaml"],
                            capture_output=True, env=env, cwd=ROOT, timeout=120)
    assert result.returncode == 2
    assert b"not valid UTF-8" in result.stderr and b"caf\\xe9" in result.stderr
    assert b"Traceback" not in result.stderr


# ------------------------------------------------------------------------- image URLs
def test_url_fetches_end_within_their_total_time_and_loopback_needs_the_allowlist(tmp_path: Path) -> None:
    from tests.trickle_server import TrickleServer

    from cotembed.serve._settings import UrlFetching

    allowed = serve(tmp_path, FragileEncoder(), urls=UrlFetching(enabled=True, timeout_s=1.5, allow_hosts=("127.0.0.1",)))
    guarded = serve(tmp_path / "g", FragileEncoder(), urls=UrlFetching(enabled=True, timeout_s=1.5))
    try:
        with TrickleServer(interval_s=0.5, content_type="image/png") as slow:
            start = time.monotonic()
            response = httpx.post(f"{allowed.url}/v1/classify", json={"labels": ["a", "b"], "input": [{"image": slow.url}]}, timeout=30)
            took = time.monotonic() - start
            assert response.status_code == 422 and took < 2.5, (response.status_code, took)
            trickled = response.json()["error"]["message"]
            refused = httpx.post(f"{guarded.url}/v1/classify", json={"labels": ["a", "b"], "input": [{"image": slow.url}]}, timeout=30)
            assert refused.status_code == 422 and refused.json()["error"]["message"] == trickled
            assert slow.requests == 1  # the guarded server never connected
    finally:
        allowed.close()
        guarded.close()


# ------------------------------------------------------------------ binary uploads
def png_bytes(colour: str, size: tuple[int, int] = (16, 16)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def uploads(tmp_path: Path) -> Iterator[Served]:
    served = serve(tmp_path, FragileEncoder(), limits=Limits(max_inputs=4, max_pixels=10_000, max_body_bytes=200_000))
    yield served
    served.close()


def test_multipart_uploads_classify_several_images_like_base64(uploads: Served) -> None:
    files = [("file", (f"{c}.png", png_bytes(c), "image/png")) for c in ("red", "blue", "red")]
    response = httpx.post(f"{uploads.url}/v1/classify/upload", files=files, data={"system": "colours"}, timeout=30)
    assert response.status_code == 200, response.text
    assert [d["prediction"] for d in response.json()["data"]] == ["red-thing", "blue-thing", "red-thing"]
    as_json = httpx.post(f"{uploads.url}/v1/classify", json={"system": "colours", "input": [{"image": png("blue")}]}).json()
    assert response.json()["data"][1]["predictions"] == as_json["data"][0]["predictions"]
    by_labels = httpx.post(f"{uploads.url}/v1/classify/upload", files=files[:1], data={"labels": ["blue thing", "red thing"]})
    assert by_labels.json()["data"][0]["prediction"] == "red thing"


def test_uploads_are_checked_before_decoding(uploads: Served) -> None:
    url = f"{uploads.url}/v1/classify/upload"
    big = png_bytes("red", (200, 200))  # 40,000 pixels: the cap is 10,000
    response = httpx.post(url, files=[("file", ("a.png", png_bytes("red"), "image/png")), ("file", ("b.png", big, "image/png"))],
                          data={"system": "colours"})
    assert response.status_code == 413 and response.json()["error"]["param"] == "file[1]"
    response = httpx.post(url, files=[("file", ("a.txt", b"not an image", "text/plain"))], data={"system": "colours"})
    assert response.status_code == 422 and response.json()["error"]["param"] == "file[0]"
    response = httpx.post(url, files=[("file", ("a.png", png_bytes("red"), "image/png"))] * 5, data={"system": "colours"})
    assert response.status_code == 422
    response = httpx.post(url, files=[("file", ("a.bin", os.urandom(300_000), "image/png"))], data={"system": "colours"})
    assert response.status_code == 413  # the body cap, while it streams in
    assert httpx.post(url, json={"system": "colours"}).status_code == 415


def test_a_raw_image_body_is_classified(uploads: Served) -> None:
    url = f"{uploads.url}/v1/classify/image"
    response = httpx.post(url, params={"system": "colours"}, content=png_bytes("blue"), headers={"content-type": "image/png"})
    assert response.status_code == 200 and response.json()["data"][0]["prediction"] == "blue-thing"
    by_labels = httpx.post(url, params=[("labels", "red thing"), ("labels", "blue thing")], content=png_bytes("red"),
                           headers={"content-type": "image/png"})
    assert by_labels.json()["data"][0]["prediction"] == "red thing"
    assert httpx.post(url, params={"system": "colours"}, content=png_bytes("red"), headers={"content-type": "text/plain"}).status_code == 415
    too_big = httpx.post(url, params={"system": "colours"}, content=png_bytes("red", (200, 200)), headers={"content-type": "image/png"})
    assert too_big.status_code == 413 and too_big.json()["error"]["param"] == "body"
