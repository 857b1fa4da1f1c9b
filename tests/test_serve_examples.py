"""The service's few-shot examples and transductive requests, against a real loopback server with the
critters model; the numbers are held to the library's (``CoTClassifier(examples=..., transductive=...)``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from tests.test_serve import AUTH, CRITTERS, KEY, _start, assert_error, b64  # noqa: E402

from cotembed.serve._settings import Limits, ServeSettings  # noqa: E402


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    """Examples (1 per species, seed 4242) and inputs (2 per species, seed 1001), both hard."""
    from cotembed_critters.species import generate_split

    root = tmp_path_factory.mktemp("serve-examples")
    generate_split(CRITTERS / "species.yaml", root / "support", 1, seed=4242, difficulty="hard", progress=False)
    generate_split(CRITTERS / "species.yaml", root / "test", 2, seed=1001, difficulty="hard", progress=False)
    return {"support": sorted((root / "support").rglob("*.png")), "test": sorted((root / "test").rglob("*.png"))}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from cotembed.system import System

    settings = ServeSettings(models=("critters",), systems=(System.load(CRITTERS / "system.yaml"),), api_key=KEY,
                             cache=str(tmp_path_factory.mktemp("serve-examples-cache") / "embeddings.sqlite"),
                             limits=Limits(max_inputs=64, max_labels=16, max_body_bytes=4 * 2**20, max_systems=4))
    registry, server = _start(settings)
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=120.0) as c:
        yield c
    server.stop()
    registry.close()


@pytest.fixture(scope="module")
def library(images: dict[str, list[Path]]) -> Any:
    from cotembed._classifier import CoTClassifier
    from cotembed.data import collect_samples
    from cotembed.encoders import load_encoder
    from cotembed.system import System

    encoder = load_encoder("critters")
    system = System.load(CRITTERS / "system.yaml")
    samples = collect_samples([images["support"][0].parents[1]])
    yield {"fused": CoTClassifier(system, encoder, method="fused", examples=samples),
           "transductive": CoTClassifier(system, encoder, method="cot", transductive=True),
           "cot": CoTClassifier(system, encoder, method="cot")}
    encoder.close()


def scores(body: dict[str, Any]) -> np.ndarray:
    return np.array([[p["score"] for p in row["predictions"]] for row in body["data"]])


def test_examples_registered_with_a_system_feed_fused_as_the_library_does(client: Any, images: dict[str, list[Path]],
                                                                          library: Any) -> None:
    missing = client.post("/v1/classify", json={"system": "critters", "method": "fused",
                                                "input": [{"image": b64(images["test"][0])}]})
    assert_error(missing, 422, "invalid_request_error", "method", "POST /v1/systems/critters/examples")
    support = images["support"]
    added = 0
    for start in range(0, len(support), 10):  # in parts, as a client within the input cap would
        part = support[start:start + 10]
        body = client.post("/v1/systems/critters/examples", json={"input": [{"image": b64(p)} for p in part],
                                                                  "labels": [p.parent.name for p in part]}).json()
        added += body["added"]
    assert added == body["examples"] == len(support) and body["classes_without_examples"] == []
    assert [e["examples"] for e in client.get("/v1/systems/critters").json()["examples"].values()] == [len(support)]
    test = images["test"][:5]
    got = client.post("/v1/classify", json={"system": "critters", "method": "fused", "params": {"prior": "cot"},
                                            "input": [{"image": b64(p)} for p in test]}).json()
    assert got["examples"]["examples"] == len(support)
    np.testing.assert_allclose(scores(got), library["fused"].predict_proba(images=test), rtol=1e-4, atol=1e-6)
    explained = client.post("/v1/explain", json={"system": "critters", "method": "fused", "input": {"image": b64(test[0])}})
    assert explained.status_code == 200, explained.text
    expected = library["fused"].explain(image=test[0]).to_dict()
    assert explained.json()["prediction"] == expected["prediction"] == got["data"][0]["prediction"]


def test_example_labels_that_are_no_class_are_listed_or_skipped(client: Any, images: dict[str, list[Path]]) -> None:
    two = images["support"][:2]
    items = [{"image": b64(p)} for p in two]
    refused = client.post("/v1/systems/critters/examples", json={"input": items, "labels": [two[0].parent.name, "Dragon"]})
    assert_error(refused, 422, "invalid_request_error", "labels[1]", "'Dragon'")
    wrong_count = client.post("/v1/systems/critters/examples", json={"input": items, "labels": ["Brazzik"]})
    assert_error(wrong_count, 422, "invalid_request_error", "labels", "one label per input")
    skipped = client.post("/v1/systems/critters/examples", json={"input": items, "labels": [two[0].parent.name, "Dragon"],
                                                                 "ignore_unknown": True, "model": "critters"}).json()
    assert skipped["added"] == 1 and skipped["skipped"] == 1


def test_transductive_requests_refine_a_batch_and_note_a_small_one(client: Any, images: dict[str, list[Path]],
                                                                   library: Any) -> None:
    batch = images["test"]  # 2 per class: large enough to refine
    body = client.post("/v1/classify", json={"system": "critters", "transductive": True,
                                             "input": [{"image": b64(p)} for p in batch]}).json()
    assert body["transductive"] is True and "notes" not in body
    np.testing.assert_allclose(scores(body), library["transductive"].predict_proba(images=batch), rtol=1e-4, atol=1e-6)
    small = client.post("/v1/classify", json={"system": "critters", "transductive": True,
                                              "input": [{"image": b64(p)} for p in batch[:3]]}).json()
    assert "batch too small to refine" in small["notes"][0]
    np.testing.assert_allclose(scores(small), library["cot"].predict_proba(images=batch[:3]), rtol=1e-4, atol=1e-6)
    no_system = client.post("/v1/classify", json={"transductive": True, "input": ["a red blob"], "labels": ["a", "b"]})
    assert_error(no_system, 422, "invalid_request_error", "transductive", "needs a system")


def test_examples_can_be_cleared(client: Any, images: dict[str, list[Path]]) -> None:
    client.post("/v1/systems/critters/examples", json={"input": [{"image": b64(images["support"][0])}],
                                                       "labels": [images["support"][0].parent.name]})
    assert client.delete("/v1/systems/critters/examples").json()["removed"] >= 1
    assert "examples" not in client.get("/v1/systems/critters").json()
