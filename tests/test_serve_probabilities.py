"""/v1/classify's probabilities and decisions against a real loopback server, held to the library's numbers."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from cotembed.serve._settings import Limits, ServeSettings  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CRITTERS = ROOT / "examples" / "critters"
KEY = "probs-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from cotembed_critters.species import generate_split

    out = tmp_path_factory.mktemp("critters") / "split"
    generate_split(CRITTERS / "species.yaml", out, 1, seed=91, progress=False)
    return sorted(out.rglob("*.png"))[:5]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from cotembed.serve._app import create_app
    from cotembed.serve._registry import Registry
    from cotembed.serve._server import ServerThread
    from cotembed.system import System

    settings = ServeSettings(models=("critters",), systems=(System.load(CRITTERS / "system.yaml"),), api_key=KEY,
                             cache=str(tmp_path_factory.mktemp("cache") / "e.sqlite"), limits=Limits(max_inputs=8))
    registry = Registry.open(settings)
    server = ServerThread(create_app(registry), graceful_timeout_s=settings.graceful_timeout_s).start()
    yield server.url
    server.stop()
    registry.close()


@pytest.fixture(scope="module")
def library() -> Any:
    from cotembed._classifier import CoTClassifier
    from cotembed.encoders import load_encoder
    from cotembed.system import System

    encoder = load_encoder("critters")
    yield CoTClassifier(System.load(CRITTERS / "system.yaml"), encoder)
    encoder.close()


def post(url: str, body: dict[str, Any]) -> Any:
    with httpx.Client(base_url=url, headers=AUTH, timeout=60.0) as client:
        return client.post("/v1/classify", content=json.dumps(body), headers={"Content-Type": "application/json"})


def inputs(images: list[Path]) -> list[dict[str, str]]:
    return [{"image": base64.b64encode(p.read_bytes()).decode("ascii")} for p in images]


def test_rows_carry_calibrated_probabilities_and_the_fit_score(served: str, library: Any, images: list[Path]) -> None:
    body = post(served, {"system": "critters", "input": inputs(images)}).json()
    assert body["probabilities"] == "calibrated" and body["fit_score"] == "log rule support"
    expected = library.classify(images=images)
    for row, p in zip(body["data"], expected):
        assert row["prediction"] == p.prediction and row["abstained"] is False
        assert row["score"] == pytest.approx(p.probability, rel=1e-5)
        assert row["fit_score"] == pytest.approx(p.fit_score, rel=1e-5, abs=1e-7)
    old = post(served, {"system": "critters", "input": inputs(images), "probabilities": "normalised"}).json()
    assert old["probabilities"] == "normalised"
    assert all(o["score"] < r["score"] for o, r in zip(old["data"], body["data"]))


def test_abstention_conformal_sets_and_multi_label(served: str, library: Any, images: list[Path]) -> None:
    fits = library.fit_score(images=images)
    cut = float(np.median(fits))
    body = post(served, {"system": "critters", "input": inputs(images), "abstain": cut, "conformal_threshold": 0.5,
                         "multi_label_threshold": 0.7}).json()
    assert body["abstain"] == cut and body["conformal_threshold"] == 0.5
    for row, fit in zip(body["data"], fits):
        assert row["abstained"] is bool(fit < cut)
        if row["abstained"]:
            assert row["prediction"] is None and row["candidate"] and "below the threshold" in row["reason"]
        probs = {p["label"]: p["score"] for p in row["predictions"]}
        assert row["set"] == sorted((c for c, v in probs.items() if -np.log(v) <= 0.5), key=lambda c: -probs[c])
        assert all(label["score"] >= 0.7 for label in row["labels"])
    assert any(row["abstained"] for row in body["data"]) and not all(row["abstained"] for row in body["data"])


@pytest.mark.parametrize("extra, param", [
    ({"abstain": float("nan")}, "abstain"),
    ({"abstain": float("inf")}, "abstain"),
    ({"abstain": "high"}, "abstain"),
    ({"conformal_threshold": -1}, "conformal_threshold"),
    ({"multi_label_threshold": 1.5}, "multi_label_threshold"),
    ({"probabilities": "raw"}, "probabilities"),
    ({"fit_score": "vibes"}, "fit_score"),
    ({"abstain": -1.0, "labels": ["Brazzik", "Cruvex"]}, "abstain"),
    ({"abstain": -1.0, "method": "baseline"}, "abstain"),
])
def test_bad_decision_fields_are_422_naming_the_field(served: str, images: list[Path], extra: dict[str, Any], param: str) -> None:
    response = post(served, {"system": "critters", "input": inputs(images[:1]), **extra})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["param"] == param


def test_decisions_need_a_system(served: str) -> None:
    response = post(served, {"input": ["a red blob"], "labels": ["a", "b"], "abstain": -1.0})
    assert response.status_code == 422 and response.json()["error"]["param"] == "abstain"
