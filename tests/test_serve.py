"""``cotembed serve`` against real servers on loopback ports, with the critters and MiniLM
models: no mock of our own code. Results are compared with the library computing the
same thing in-process, so the service is held to the CLI's numbers."""

from __future__ import annotations

import base64
import concurrent.futures
import http.server
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from PIL import Image  # noqa: E402

from cotembed.serve._settings import Batching, Limits, ServeSettings, UrlFetching  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CRITTERS = ROOT / "examples" / "critters"
KEY = "test-key-123"
AUTH = {"Authorization": f"Bearer {KEY}"}


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def critter_images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """One generated image per species (28), labelled by folder."""
    from cotembed_critters.species import generate_split

    out = tmp_path_factory.mktemp("critters") / "split"
    generate_split(CRITTERS / "species.yaml", out, 1, seed=77, progress=False)
    return sorted(out.rglob("*.png"))


def _start(settings: ServeSettings) -> Any:
    from cotembed.serve._app import create_app
    from cotembed.serve._registry import Registry
    from cotembed.serve._server import ServerThread

    registry = Registry.open(settings)
    try:
        server = ServerThread(create_app(registry), graceful_timeout_s=settings.graceful_timeout_s).start()
    except BaseException:
        registry.close()
        raise
    return registry, server


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """critters (default) and minilm, the critters system, an API key, small limits, URLs allowed."""
    from cotembed.system import System

    cache = tmp_path_factory.mktemp("serve-cache") / "embeddings.sqlite"
    settings = ServeSettings(
        models=("critters", "minilm"), systems=(System.load(CRITTERS / "system.yaml"),), api_key=KEY, cache=str(cache),
        limits=Limits(max_inputs=8, max_labels=16, max_body_bytes=2 * 2**20, max_pixels=1_000_000, max_systems=4),
        urls=UrlFetching(enabled=True, timeout_s=5.0, max_bytes=200_000, allow_hosts=("127.0.0.1",)),
    )
    registry, server = _start(settings)
    yield {"registry": registry, "server": server, "url": server.url, "cache": cache}
    server.stop()
    registry.close()


@pytest.fixture
def client(served: Any) -> Any:
    with httpx.Client(base_url=served["url"], headers=AUTH, timeout=60.0) as c:
        yield c


@pytest.fixture(scope="module")
def reference() -> Any:
    """The library in-process, on its own encoders, for the numbers the service must match."""
    from cotembed._classifier import CoTClassifier
    from cotembed.encoders import load_encoder
    from cotembed.system import System

    critters, minilm = load_encoder("critters"), load_encoder("minilm")
    system = System.load(CRITTERS / "system.yaml")
    made: dict[str, CoTClassifier] = {}

    def clf(method: str = "cot") -> CoTClassifier:
        if method not in made:
            made[method] = CoTClassifier(system, critters, method=method)
        return made[method]

    yield {"clf": clf, "critters": critters, "minilm": minilm, "system": system}
    critters.close()
    minilm.close()


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def png_bytes(size: tuple[int, int], colour: str = "red") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def assert_error(response: Any, status: int, type_: str, param: str | None = None, says: str = "") -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "param"}
    assert error["type"] == type_
    assert error["param"] == param
    assert says.lower() in error["message"].lower()
    return error


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one series in Prometheus text (0 when absent); labels in any order."""
    import re

    for line in text.splitlines():
        if line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        found, _, rest = series.partition("{")
        if found == name and dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', rest)) == labels:
            return float(value)
    return 0.0


# ------------------------------------------------------------------- health, auth, docs
def test_health_needs_no_key_and_names_the_models(served: Any) -> None:
    response = httpx.get(f"{served['url']}/health")
    assert response.status_code == 200
    assert response.json()["models"] == ["critters", "minilm"]
    assert response.json()["systems"] == 1


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/metrics"), ("GET", "/v1/models"), ("GET", "/v1/systems"), ("GET", "/v1/systems/critters"),
    ("POST", "/v1/classify"), ("POST", "/v1/explain"), ("POST", "/v1/embeddings"), ("POST", "/v1/systems"),
])
def test_every_route_but_health_needs_the_key(served: Any, method: str, path: str) -> None:
    url = served["url"] + path
    missing = httpx.request(method, url, json={"input": ["x"]})
    assert_error(missing, 401, "authentication_error", says="missing API key")
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = httpx.request(method, url, json={"input": ["x"]}, headers={"Authorization": "Bearer not-the-key"})
    assert_error(wrong, 401, "authentication_error", says="invalid API key")


def test_models_lists_what_was_loaded(client: Any, reference: Any) -> None:
    data = client.get("/v1/models").json()["data"]
    assert [m["id"] for m in data] == ["critters", "minilm"]
    assert data[0]["model_key"] == reference["critters"].model_key and data[0]["modalities"] == ["image", "text"]
    assert data[1]["modalities"] == ["text"] and data[1]["dim"] == 384


def test_openapi_docs_list_the_routes(served: Any) -> None:
    assert httpx.get(f"{served['url']}/docs").status_code == 200
    paths = httpx.get(f"{served['url']}/openapi.json").json()["paths"]
    assert {"/v1/classify", "/v1/explain", "/v1/embeddings", "/v1/systems", "/health", "/metrics"} <= set(paths)


def test_unknown_route_gets_the_error_body(client: Any) -> None:
    assert_error(client.get("/v2/nothing"), 404, "not_found")


# -------------------------------------------------------------------------- classify
def test_cot_classification_of_critters_images_matches_the_library(client: Any, reference: Any, critter_images: list[Path]) -> None:
    images = critter_images[:6]
    response = client.post("/v1/classify", json={"system": "critters", "input": [{"image": b64(p)} for p in images]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model"], body["method"], body["system"]["name"]) == ("critters", "cot", "critters")
    clf = reference["clf"]("cot")
    expected = clf.predict_proba(images=images)
    classes = list(clf.classes_)
    assert [row["index"] for row in body["data"]] == list(range(len(images)))
    for row, probs in zip(body["data"], expected):
        assert [p["label"] for p in row["predictions"]] == classes
        got = np.array([p["score"] for p in row["predictions"]])
        np.testing.assert_allclose(got, probs, rtol=1e-5, atol=1e-6)
        assert row["prediction"] == classes[int(np.argmax(probs))]
        assert row["score"] == pytest.approx(float(probs.max()), rel=1e-5)
    # the critters system recognises most of its own species
    correct = sum(row["prediction"] == p.parent.name for row, p in zip(body["data"], images))
    assert correct >= 4


def test_labels_with_a_system_restrict_and_renormalise_its_classes(client: Any, reference: Any, critter_images: list[Path]) -> None:
    image = critter_images[0]
    classes = list(reference["clf"]("cot").classes_)
    others = [c for c in classes if c != image.parent.name]
    labels = [image.parent.name, others[4], others[8]]
    body = client.post("/v1/classify", json={"system": "critters", "input": [{"image": b64(image)}], "labels": labels}).json()
    full = reference["clf"]("cot").predict_proba(images=[image])[0]
    sub = full[[classes.index(label) for label in labels]]
    row = body["data"][0]
    assert [p["label"] for p in row["predictions"]] == labels
    np.testing.assert_allclose([p["score"] for p in row["predictions"]], sub / sub.sum(), rtol=1e-5)
    unknown = client.post("/v1/classify", json={"system": "critters", "input": [{"image": b64(image)}], "labels": ["Brazzik", "Dragon"]})
    assert_error(unknown, 422, "invalid_request_error", "labels[1]", "not a class")


@pytest.mark.parametrize("method", ["hybrid", "adaptive", "baseline", "cot-log"])
def test_other_methods_of_the_registry_are_served(client: Any, reference: Any, critter_images: list[Path], method: str) -> None:
    images = critter_images[6:9]
    body = client.post("/v1/classify", json={"system": "critters", "method": method,
                                             "input": [{"image": b64(p)} for p in images]}).json()
    assert body["method"] == method
    expected = reference["clf"](method).predict_proba(images=images)
    got = np.array([[p["score"] for p in row["predictions"]] for row in body["data"]])
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


def test_method_errors_name_the_field(client: Any) -> None:
    unknown = client.post("/v1/classify", json={"system": "critters", "method": "telepathy", "input": ["a red blob"]})
    assert "cot" in assert_error(unknown, 422, "invalid_request_error", "method")["message"]
    no_system = client.post("/v1/classify", json={"method": "cot", "input": ["a red blob"], "labels": ["a", "b"]})
    assert_error(no_system, 422, "invalid_request_error", "method", "needs a system")
    nothing = client.post("/v1/classify", json={"input": ["a red blob"]})
    assert_error(nothing, 422, "invalid_request_error", "labels")


def test_zero_shot_by_labels_is_the_jina_shape_and_the_baseline(client: Any, reference: Any) -> None:
    """MiniLM text classification by labels alone: cosine to each label, softmax at the default temperature."""
    from cotembed.scoring import DEFAULT_TEMPERATURE, softmax

    texts = ["the cat purred on the warm windowsill", "the stock market fell sharply today"]
    labels = ["animals", "finance", "cooking"]
    response = client.post("/v1/classify", json={"model": "minilm", "input": [texts[0], {"text": texts[1]}], "labels": labels})
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert [d["object"] for d in data] == ["classification"] * 2
    assert [d["prediction"] for d in data] == ["animals", "finance"]
    x, lab = reference["minilm"].encode_texts(texts), reference["minilm"].encode_texts(labels)
    expected = softmax((x @ lab.T) * DEFAULT_TEMPERATURE, axis=1)
    for row, probs in zip(data, expected):
        assert [p["label"] for p in row["predictions"]] == labels
        np.testing.assert_allclose([p["score"] for p in row["predictions"]], probs, rtol=1e-4, atol=1e-6)


def test_model_and_input_errors_name_the_field(client: Any, critter_images: list[Path]) -> None:
    image = {"image": b64(critter_images[0])}
    assert_error(client.post("/v1/classify", json={"model": "gpt-9", "input": ["x"], "labels": ["a"]}),
                 422, "invalid_request_error", "model", "not served")
    assert_error(client.post("/v1/classify", json={"model": "minilm", "input": ["x", image], "labels": ["a"]}),
                 422, "invalid_request_error", "input[1]", "cannot encode image")
    assert_error(client.post("/v1/classify", json={"input": [{"image": "@@not base64@@"}], "labels": ["a"]}),
                 422, "invalid_request_error", "input[0].image", "base64")
    assert_error(client.post("/v1/classify", json={"input": [{"image": base64.b64encode(b"hello").decode()}], "labels": ["a"]}),
                 422, "invalid_request_error", "input[0].image", "not an image")
    assert_error(client.post("/v1/classify", json={"input": ["ok", {"text": "a", "image": "b"}], "labels": ["a"]}),
                 422, "invalid_request_error", "input[1]", "exactly one")
    assert_error(client.post("/v1/classify", json={"input": [3], "labels": ["a"]}), 422, "invalid_request_error", "input[0]")
    assert_error(client.post("/v1/classify", json={"input": ["x"], "labels": ["a"], "lables": ["b"]}),
                 422, "invalid_request_error", "lables")
    assert_error(client.post("/v1/classify", json={"input": ["x"], "labels": ["a", "a"]}), 422, "invalid_request_error", "labels[1]", "twice")
    assert_error(client.post("/v1/classify", content=b"{not json", headers={"content-type": "application/json"}),
                 422, "invalid_request_error", None, "not valid JSON")


# ------------------------------------------------------------------------------ limits
def test_counts_above_the_limits_are_422(client: Any) -> None:
    assert_error(client.post("/v1/classify", json={"input": ["x"] * 9, "labels": ["a"]}), 422, "invalid_request_error", "input", "limit is 8")
    labels = [f"l{i}" for i in range(17)]
    assert_error(client.post("/v1/classify", json={"input": ["x"], "labels": labels}), 422, "invalid_request_error", "labels", "limit is 16")


def test_bodies_above_the_limit_are_413_whether_declared_or_streamed(client: Any) -> None:
    big = json.dumps({"input": ["x" * (3 * 2**20)], "labels": ["a"]}).encode()
    assert_error(client.post("/v1/classify", content=big, headers={"content-type": "application/json"}),
                 413, "payload_too_large", says="limit")

    def chunks() -> Any:  # no Content-Length: the body is counted as it arrives
        for start in range(0, len(big), 65536):
            yield big[start:start + 65536]

    assert_error(client.post("/v1/classify", content=chunks(), headers={"content-type": "application/json"}),
                 413, "payload_too_large", says="limit")


def test_images_above_the_pixel_cap_are_refused_from_their_header(client: Any) -> None:
    over = png_bytes((1100, 1000))  # 1.1 MP, a few kB: the cap is 1 MP
    error = assert_error(client.post("/v1/classify", json={"input": [{"image": base64.b64encode(over).decode()}], "labels": ["a"]}),
                         413, "payload_too_large", "input[0].image")
    assert "1100x1000" in error["message"]
    # a bomb: a header claiming 40000 x 40000 pixels; nothing is decoded
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 40000, 40000, 8, 2, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 1024)) + chunk(b"IEND", b"")
    assert_error(client.post("/v1/classify", json={"input": [{"image": base64.b64encode(bomb).decode()}], "labels": ["a"]}),
                 413, "payload_too_large", "input[0].image")


def test_image_urls_are_fetched_from_loopback_within_the_size_cap(client: Any, critter_images: list[Path], reference: Any) -> None:
    folder = critter_images[0].parent.parent

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(folder), **kwargs)

        def log_message(self, *args: Any) -> None:
            pass

    big = folder / "big.bin"
    big.write_bytes(os.urandom(300_000))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{httpd.server_address[1]}"
        image = critter_images[0]
        rel = image.relative_to(folder).as_posix()
        body = client.post("/v1/classify", json={"system": "critters", "input": [{"image": f"{base}/{rel}"}]}).json()
        expected = reference["clf"]("cot").predict_proba(images=[image])[0]
        np.testing.assert_allclose([p["score"] for p in body["data"][0]["predictions"]], expected, rtol=1e-5, atol=1e-6)
        missing = assert_error(client.post("/v1/classify", json={"system": "critters", "input": [{"image": f"{base}/missing.png"}]}),
                               422, "invalid_request_error", "input[0].image", "could not be fetched")
        too_big = assert_error(client.post("/v1/classify", json={"system": "critters", "input": [{"image": f"{base}/big.bin"}]}),
                               422, "invalid_request_error", "input[0].image", "could not be fetched")
        closed = assert_error(client.post("/v1/classify", json={"system": "critters", "input": [{"image": "http://127.0.0.1:9/x.png"}]}),
                              422, "invalid_request_error", "input[0].image", "could not be fetched")
        assert missing["message"] == too_big["message"] == closed["message"]  # one answer: no probing of ports
    finally:
        httpd.shutdown()
        httpd.server_close()


# ----------------------------------------------------------------- explain, embeddings
def test_explain_is_the_cli_explain_json(client: Any, reference: Any, critter_images: list[Path]) -> None:
    image = critter_images[3]
    response = client.post("/v1/explain", json={"system": "critters", "input": {"image": b64(image)}, "top_k": 3})
    assert response.status_code == 200, response.text
    got = response.json()
    expected = reference["clf"]("cot").explain(image=image, top_k=3).to_dict()
    assert got["input"].startswith("sha256:")
    for key in ("method", "prediction", "model", "system_hash"):
        assert got[key] == expected[key]
    assert [q["answer"] for q in got["questions"]] == [q["answer"] for q in expected["questions"]]
    assert [t["class"] for t in got["top"]] == [t["class"] for t in expected["top"]]
    for g, e in zip(got["top"], expected["top"]):
        assert g["score"] == pytest.approx(e["score"], rel=1e-5)
        assert g["contributions"] == pytest.approx(e["contributions"], rel=1e-4, abs=1e-6)


def test_method_parameters_come_from_the_declarations(client: Any, served: Any, critter_images: list[Path]) -> None:
    schema = client.get("/openapi.json").json()["components"]["schemas"]["ClassifyRequest"]["properties"]["params"]
    adaptive = schema["x-method-parameters"]["adaptive"]["properties"]
    assert adaptive["confidence"]["exclusiveMinimum"] == 0 and "answer_model" not in adaptive
    inputs = [{"image": b64(p)} for p in critter_images[:3]]
    runs = {}
    for budget in (1, 4):
        body = client.post("/v1/classify", json={"system": "critters", "method": "adaptive", "params": {"max_questions": budget},
                                                 "input": inputs}).json()
        runs[budget] = np.array([[p["score"] for p in row["predictions"]] for row in body["data"]])
    assert not np.allclose(runs[1], runs[4])  # one question leaves the posterior less sure than four
    typo = client.post("/v1/classify", json={"system": "critters", "method": "adaptive", "params": {"confidance": 0.9}, "input": inputs})
    assert_error(typo, 422, "invalid_request_error", "params", "did you mean 'confidence'")
    bad = client.post("/v1/explain", json={"system": "critters", "method": "adaptive", "params": {"confidence": 2}, "input": "a red blob"})
    assert_error(bad, 422, "invalid_request_error", "params", "confidence must be a finite number in (0, 1]")
    explained = client.post("/v1/explain", json={"system": "critters", "method": "adaptive", "params": {"max_questions": 1},
                                                 "input": "a small red round blob"}).json()
    assert explained["adaptive"]["questions_asked"] == 1 and explained["adaptive"]["max_questions"] == 1


def test_explain_adaptive_adds_the_questioning_trace(client: Any) -> None:
    body = client.post("/v1/explain", json={"system": "critters", "method": "adaptive", "input": "a small red round blob"}).json()
    assert body["method"] == "adaptive" and body["input"] == "a small red round blob"
    trace = body["adaptive"]
    assert 1 <= trace["questions_asked"] == len(trace["steps"]) <= trace["questions_total"]
    assert trace["prediction"] == body["prediction"]


def test_embeddings_are_the_openai_shape_and_the_models_vectors(client: Any, reference: Any, critter_images: list[Path]) -> None:
    response = client.post("/v1/embeddings", json={"model": "minilm", "input": "a red bird"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "list" and body["data"][0]["object"] == "embedding" and body["data"][0]["index"] == 0
    vector = np.array(body["data"][0]["embedding"], dtype=np.float32)
    np.testing.assert_allclose(vector, reference["minilm"].encode_texts(["a red bird"])[0], atol=1e-5)
    packed = client.post("/v1/embeddings", json={"model": "minilm", "input": ["a red bird"], "encoding_format": "base64"}).json()
    decoded = np.frombuffer(base64.b64decode(packed["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(decoded, vector, atol=1e-6)
    from cotembed.encoders import encode_images

    image = client.post("/v1/embeddings", json={"input": [{"image": b64(critter_images[0])}]}).json()
    expected = encode_images(reference["critters"], [Image.open(critter_images[0]).convert("RGB")])[0]
    np.testing.assert_allclose(image["data"][0]["embedding"], expected, atol=1e-5)
    assert_error(client.post("/v1/embeddings", json={"model": "minilm", "input": "x", "dimensions": 12}),
                 422, "invalid_request_error", "dimensions")


# ------------------------------------------------------------------------------ systems
def test_systems_are_listed_registered_and_used(client: Any, reference: Any, critter_images: list[Path]) -> None:
    listed = client.get("/v1/systems").json()["data"]
    assert listed[0]["name"] == "critters" and listed[0]["fingerprint"] == reference["system"].fingerprint
    yaml_text = (CRITTERS / "system_paraphrased.yaml").read_bytes()
    created = client.post("/v1/systems?name=para", content=yaml_text, headers={"content-type": "application/yaml"})
    assert created.status_code == 201, created.text
    fingerprint = created.json()["fingerprint"]
    again = client.post("/v1/systems?name=para", content=yaml_text, headers={"content-type": "application/yaml"})
    assert again.status_code == 200
    assert_error(client.post("/v1/systems?name=para", content=(CRITTERS / "system.yaml").read_bytes()), 409, "conflict", "name")
    assert {s["name"] for s in client.get("/v1/systems").json()["data"]} >= {"critters", "para"}
    assert client.get(f"/v1/systems/{fingerprint}").json()["definition"]["name"] == "critters-paraphrased"

    from cotembed._classifier import CoTClassifier
    from cotembed.system import System

    image = critter_images[1]
    by_fingerprint = client.post("/v1/classify", json={"system": fingerprint, "input": [{"image": b64(image)}]}).json()
    expected = CoTClassifier(System.load(CRITTERS / "system_paraphrased.yaml"), reference["critters"]).predict_proba(images=[image])[0]
    np.testing.assert_allclose([p["score"] for p in by_fingerprint["data"][0]["predictions"]], expected, rtol=1e-5, atol=1e-6)
    assert by_fingerprint["system"] == {"name": "para", "fingerprint": fingerprint}


def test_an_invalid_system_gets_every_problem_with_its_path(client: Any) -> None:
    text = (
        "groups:\n"
        "  colour: {prompt: 'a {} critter', options: [red, blue]}\n"
        "  size: {prompt: 'a {} one', options: [small, large]}\n"
        "rules:\n"
        "  A: {colour: red, size: small}\n"
        "  B: {colour: purple, size: huge}\n"
    )
    error = assert_error(client.post("/v1/systems", content=text, headers={"content-type": "application/yaml"}),
                         422, "invalid_request_error", "body", "invalid system request body")
    assert len(error["problems"]) == 2
    assert any("rules.B.colour" in p and "purple" in p for p in error["problems"])
    assert any("rules.B.size" in p and "huge" in p for p in error["problems"])
    bad_json = client.post("/v1/systems", content=b'{"groups": {}, "groups": {}}', headers={"content-type": "application/json"})
    assert "duplicate" in assert_error(bad_json, 422, "invalid_request_error", "body")["message"].lower()
    assert_error(client.post("/v1/systems", content=b"  "), 422, "invalid_request_error", "body", "empty")


# ------------------------------------------------------------------------ metrics, cache
def test_metrics_count_requests_latency_batches_and_cache_hits(client: Any, critter_images: list[Path]) -> None:
    before = client.get("/metrics").text
    image = {"image": b64(critter_images[10])}
    for _ in range(2):  # the second time the image's embedding comes from the cache
        assert client.post("/v1/classify", json={"system": "critters", "input": [image]}).status_code == 200
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    after = response.text
    requests = metric(after, "cotembed_requests_total", route="/v1/classify", status="200")
    assert requests - metric(before, "cotembed_requests_total", route="/v1/classify", status="200") == 2
    assert metric(after, "cotembed_request_duration_seconds_count", route="/v1/classify") >= requests
    assert metric(after, "cotembed_request_duration_seconds_bucket", route="/v1/classify", le="+Inf") == \
        metric(after, "cotembed_request_duration_seconds_count", route="/v1/classify")
    hits = {"model": "critters", "kind": "image", "result": "hit"}
    misses = {**hits, "result": "miss"}
    assert metric(after, "cotembed_cache_lookups_total", **hits) - metric(before, "cotembed_cache_lookups_total", **hits) == 1
    assert metric(after, "cotembed_cache_lookups_total", **misses) - metric(before, "cotembed_cache_lookups_total", **misses) == 1
    assert metric(after, "cotembed_batch_size_count", model="critters") - metric(before, "cotembed_batch_size_count", model="critters") == 2


def test_images_are_cached_under_the_same_key_as_the_cli(served: Any, client: Any, critter_images: list[Path]) -> None:
    from cotembed._pipeline import image_key
    from cotembed.cache import EmbeddingCache, content_key

    image = critter_images[12]
    assert client.post("/v1/classify", json={"system": "critters", "input": [{"image": b64(image)}]}).status_code == 200
    key = image_key(content_key(image.read_bytes()))
    model_key = served["registry"].model("critters").key
    with EmbeddingCache(served["cache"], readonly=True) as cache:
        assert key in cache.get_many(model_key, "image", [key])


# ------------------------------------------------------------------ batching, queue, 429
@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A server whose batches wait 1.5 s for company (even with no other request on its way), with a queue of 8 inputs."""
    settings = ServeSettings(models=("critters",), cache_enabled=False, limits=Limits(max_inputs=8),
                             batching=Batching(max_batch=8, max_wait_ms=1500, max_queue=8, always_wait=True))
    registry, server = _start(settings)
    yield {"registry": registry, "url": server.url}
    server.stop()
    registry.close()


def _post_all(url: str, bodies: list[dict[str, Any]], stagger_s: float = 0.0) -> list[Any]:
    def post(i: int) -> Any:
        time.sleep(i * stagger_s)
        return httpx.post(f"{url}/v1/classify", json=bodies[i], timeout=60.0)

    with concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(post, range(len(bodies))))


def test_concurrent_requests_are_encoded_in_one_batch(slow: Any, critter_images: list[Path]) -> None:
    before = httpx.get(f"{slow['url']}/metrics").text
    bodies = [{"labels": ["a", "b"], "input": [{"image": b64(p)}]} for p in critter_images[:3]]
    responses = _post_all(slow["url"], bodies, stagger_s=0.1)
    assert [r.status_code for r in responses] == [200, 200, 200]
    after = httpx.get(f"{slow['url']}/metrics").text
    count = metric(after, "cotembed_batch_size_count", model="critters") - metric(before, "cotembed_batch_size_count", model="critters")
    total = metric(after, "cotembed_batch_size_sum", model="critters") - metric(before, "cotembed_batch_size_sum", model="critters")
    assert (count, total) == (1, 3)


def test_a_full_queue_answers_429_and_admitted_requests_finish(slow: Any, critter_images: list[Path]) -> None:
    url = slow["url"]
    six = {"labels": ["a", "b"], "input": [{"image": b64(p)} for p in critter_images[:6]]}
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        first = pool.submit(httpx.post, f"{url}/v1/classify", json=six, timeout=60.0)
        deadline = time.monotonic() + 10
        while metric(httpx.get(f"{url}/metrics").text, "cotembed_queue_inputs", model="critters") < 6:
            assert time.monotonic() < deadline, "the first request never reached the queue"
            time.sleep(0.02)
        refused = httpx.post(f"{url}/v1/classify", json={"labels": ["a", "b"], "input": ["x", "y", "z"]})
        error = assert_error(refused, 429, "queue_full", says="limit of 8")
        assert refused.headers["retry-after"] == "1"
        assert "6 input" in error["message"]
        fits = httpx.post(f"{url}/v1/classify", json={"labels": ["a", "b"], "input": ["x", "y"]}, timeout=60.0)
        assert fits.status_code == 200  # 6 + 2 fill the batch: no wait
        assert first.result().status_code == 200
    assert metric(httpx.get(f"{url}/metrics").text, "cotembed_rejected_total", reason="queue_full") == 1


def test_image_urls_are_refused_unless_allowed(slow: Any) -> None:
    response = httpx.post(f"{slow['url']}/v1/classify", json={"labels": ["a"], "input": [{"image": "http://127.0.0.1:9/x.png"}]})
    assert_error(response, 422, "invalid_request_error", "input[0].image", "--allow-urls")


# ------------------------------------------------------------------ command line, shutdown
@pytest.mark.slow
def test_serve_command_serves_and_shuts_down_gracefully(tmp_path: Path, critter_images: list[Path]) -> None:
    """SIGTERM while a request waits in the batcher: the request still gets its answer, the process exits 0."""
    cmd = [sys.executable, "-m", "cotembed.cli", "serve", "--model", "critters", "--system", str(CRITTERS / "system.yaml"),
           "--port", "0", "--format", "json", "--cache", str(tmp_path / "c.sqlite"), "--max-wait-ms", "2000", "--always-wait"]
    env = {k: v for k, v in os.environ.items() if k != "COTEMBED_API_KEY"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())
        url = ready["url"]
        assert url.startswith("http://127.0.0.1:") and ready["systems"][0]["name"] == "critters" and ready["auth"] is False
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            body = {"system": "critters", "input": [{"image": b64(critter_images[2])}]}
            pending = pool.submit(httpx.post, f"{url}/v1/classify", json=body, timeout=60.0)
            time.sleep(0.7)  # the request now waits in the batcher (2 s budget)
            assert not pending.done()
            proc.send_signal(signal.SIGTERM)
            response = pending.result()
        assert response.status_code == 200
        assert response.json()["data"][0]["prediction"] == critter_images[2].parent.name
        assert proc.wait(timeout=60) == 0
        stderr = proc.stderr.read() if proc.stderr else ""
        assert "service stopped" in stderr and '"POST /v1/classify HTTP/1.1" 200' in stderr  # logs on stderr
        assert proc.stdout.read() == ""  # stdout: the ready line only
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{url}/health")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(("argv", "says"), [
    (["--host", "0.0.0.0"], "needs an API key"),
    (["--model", "nope:x"], "unknown model spec"),
    (["--system", "missing.yaml"], "missing.yaml"),
    (["--max-inputs", "2000", "--max-queue", "100"], "--max-queue"),
])
def test_serve_command_checks_its_arguments_before_loading(argv: list[str], says: str, capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from cotembed.cli._main import main

    monkeypatch.delenv("COTEMBED_API_KEY", raising=False)
    assert main(["serve", *argv]) == 2
    assert says in capsys.readouterr().err
