"""What ``cotembed serve`` is given at start (examples, conformal calibration, worker processes), labels-restricted
fit scores, and transductive refinement on the binary upload routes: real servers on loopback, held to the library."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from tests.support import run_cli  # noqa: E402
from tests.test_serve import AUTH, CRITTERS, KEY, ROOT, _start, assert_error, b64  # noqa: E402

from cotembed.serve._settings import Limits, ServeSettings  # noqa: E402

ALPHA = 0.05


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Folders of hard critters: examples (1 per species), calibration (1 per species) and inputs (2 per species)."""
    from cotembed_critters.species import generate_split

    root = tmp_path_factory.mktemp("serve-startup")
    for name, per_class, seed in (("support", 1, 4242), ("calibration", 1, 3003), ("test", 2, 1001)):
        generate_split(CRITTERS / "species.yaml", root / name, per_class, seed=seed, difficulty="hard", progress=False)
    return {name: root / name for name in ("support", "calibration", "test")}


def images(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.png"))


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, data: dict[str, Path]) -> Any:
    from cotembed.system import System

    settings = ServeSettings(models=("critters",), systems=(System.load(CRITTERS / "system.yaml"),), api_key=KEY,
                             cache=str(tmp_path_factory.mktemp("serve-startup-cache") / "embeddings.sqlite"),
                             limits=Limits(max_inputs=64, max_labels=32, max_body_bytes=8 * 2**20, max_systems=4),
                             examples=(("critters", str(data["support"])),),
                             conformal_data=(("critters", str(data["calibration"])),), conformal_alpha=ALPHA)
    registry, server = _start(settings)
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=120.0) as c:
        yield c
    server.stop()
    registry.close()


@pytest.fixture(scope="module")
def library(data: dict[str, Path]) -> Any:
    from cotembed._classifier import CoTClassifier
    from cotembed.data import collect_samples
    from cotembed.encoders import load_encoder
    from cotembed.system import System

    encoder = load_encoder("critters")
    system = System.load(CRITTERS / "system.yaml")
    yield {"fused": CoTClassifier(system, encoder, method="fused", examples=collect_samples([data["support"]])),
           "conformal": CoTClassifier(system, encoder, method="cot").with_conformal(ALPHA, data["calibration"]),
           "transductive": CoTClassifier(system, encoder, method="cot", transductive=True),
           "cot": CoTClassifier(system, encoder, method="cot")}
    encoder.close()


def scores(body: dict[str, Any]) -> np.ndarray:
    return np.array([[p["score"] for p in row["predictions"]] for row in body["data"]])


def test_examples_given_at_start_fit_the_few_shot_methods_from_the_first_request(client: Any, data: dict[str, Path],
                                                                                 library: Any) -> None:
    described = client.get("/v1/systems/critters").json()
    assert [e["examples"] for e in described["examples"].values()] == [len(images(data["support"]))]
    test = images(data["test"])[:6]
    got = client.post("/v1/classify", json={"system": "critters", "method": "fused", "params": {"prior": "cot"},
                                            "input": [{"image": b64(p)} for p in test]})
    assert got.status_code == 200, got.text
    np.testing.assert_allclose(scores(got.json()), library["fused"].predict_proba(images=test), rtol=1e-4, atol=1e-6)


def test_conformal_sets_calibrated_at_start_are_the_librarys(client: Any, data: dict[str, Path], library: Any) -> None:
    test = images(data["test"])[:12]
    body = client.post("/v1/classify", json={"system": "critters", "conformal": True,
                                             "input": [{"image": b64(p)} for p in test]}).json()
    expected = library["conformal"].classify(images=test)
    threshold = library["conformal"].decisions.conformal.threshold
    assert body["conformal"]["alpha"] == ALPHA and body["conformal"]["threshold"] == pytest.approx(threshold)
    assert body["conformal"]["n_calibration"] == len(images(data["calibration"]))
    assert [row["set"] for row in body["data"]] == [list(p.prediction_set or ()) for p in expected]
    assert any(len(row["set"]) > 1 for row in body["data"])  # sets, not just the top class
    assert client.get("/v1/systems/critters").json()["conformal"][body["model_key"]]["alpha"] == ALPHA
    plain = client.post("/v1/classify", json={"system": "critters", "input": [{"image": b64(test[0])}]}).json()
    assert "set" not in plain["data"][0] and "conformal" not in plain


@pytest.mark.parametrize("extra, says", [
    ({"method": "baseline"}, "method 'baseline'"),
    ({"probabilities": "normalised"}, "normalised"),
    ({"transductive": True}, "transductive"),
    ({"conformal_threshold": 1.0}, "not both"),
    ({"labels": ["Brazzik", "Cruvex"]}, "cannot be combined with 'labels'"),
])
def test_conformal_sets_are_refused_where_their_calibration_does_not_hold(client: Any, data: dict[str, Path],
                                                                         extra: dict[str, Any], says: str) -> None:
    body = {"system": "critters", "conformal": True, "input": [{"image": b64(images(data["test"])[0])}], **extra}
    assert_error(client.post("/v1/classify", json=body), 422, "invalid_request_error", "conformal", says)


def test_fit_score_with_a_labels_restriction_is_that_of_the_predicted_allowed_label(client: Any, data: dict[str, Path]) -> None:
    test = images(data["test"])[:8]
    items = [{"image": b64(p)} for p in test]
    full = client.post("/v1/classify", json={"system": "critters", "input": items}).json()["data"]
    classes = [p["label"] for p in full[0]["predictions"]]
    allowed = classes[:3]
    restricted = client.post("/v1/classify", json={"system": "critters", "input": items, "labels": allowed}).json()["data"]
    alone = {label: client.post("/v1/classify", json={"system": "critters", "input": items, "labels": [label]}).json()["data"]
             for label in allowed}  # one allowed label: the fit score of that class for every input
    for i, row in enumerate(restricted):
        assert row["fit_score"] is not None
        assert row["fit_score"] == pytest.approx(alone[row["prediction"]][i]["fit_score"], rel=1e-6)
    for i, row in enumerate(full):  # a class's fit score does not depend on which others are allowed
        same = client.post("/v1/classify", json={"system": "critters", "input": [items[i]],
                                                 "labels": [row["prediction"], allowed[0] if row["prediction"] != allowed[0]
                                                            else allowed[1]]}).json()["data"][0]
        if same["prediction"] == row["prediction"]:
            assert same["fit_score"] == pytest.approx(row["fit_score"], rel=1e-6)


def test_energy_fit_score_with_a_labels_restriction_sums_over_the_allowed_classes_only(client: Any, data: dict[str, Path]) -> None:
    items = [{"image": b64(p)} for p in images(data["test"])[:6]]
    full = client.post("/v1/classify", json={"system": "critters", "input": items}).json()["data"]
    allowed = [p["label"] for p in full[0]["predictions"]][:3]
    energy = client.post("/v1/classify", json={"system": "critters", "input": items, "labels": allowed,
                                               "fit_score": "energy"}).json()["data"]
    supports = {label: client.post("/v1/classify", json={"system": "critters", "input": items, "labels": [label]}).json()["data"]
                for label in allowed}  # one allowed label: that class's log rule support
    for i, row in enumerate(energy):
        expected = np.log(sum(np.exp(supports[label][i]["fit_score"]) for label in allowed))
        assert row["fit_score"] == pytest.approx(expected, rel=1e-6)


def test_upload_routes_refine_transductively_as_classify_does(client: Any, data: dict[str, Path], library: Any) -> None:
    test = images(data["test"])  # 2 per class: enough to refine
    files = [("file", (p.name, p.read_bytes(), "image/png")) for p in test]
    uploaded = client.post("/v1/classify/upload", data={"system": "critters", "transductive": "true"}, files=files).json()
    assert uploaded["transductive"] is True and "notes" not in uploaded
    np.testing.assert_allclose(scores(uploaded), library["transductive"].predict_proba(images=test), rtol=1e-4, atol=1e-6)
    one = client.post("/v1/classify/image", params={"system": "critters", "transductive": "true"},
                      content=test[0].read_bytes(), headers={"content-type": "image/png"}).json()
    assert one["transductive"] is True and "batch too small to refine" in one["notes"][0]
    bad = client.post("/v1/classify/upload", data={"system": "critters", "transductive": "maybe"}, files=files[:1])
    assert_error(bad, 422, "invalid_request_error", "transductive", "true or false")
    no_system = client.post("/v1/classify/image", params={"labels": ["a", "b"], "transductive": "true"},
                            content=test[0].read_bytes(), headers={"content-type": "image/png"})
    assert_error(no_system, 422, "invalid_request_error", "transductive", "needs a system")


def test_requests_answered_by_one_model_batch_are_scored_in_one_call_as_each_alone(data: dict[str, Path],
                                                                                   library: Any) -> None:
    import concurrent.futures

    from cotembed.serve._app import create_app
    from cotembed.serve._registry import Registry
    from cotembed.serve._server import ServerThread
    from cotembed.serve._settings import Batching
    from cotembed.system import System

    settings = ServeSettings(models=("critters",), systems=(System.load(CRITTERS / "system.yaml"),), cache_enabled=False,
                             batching=Batching(max_wait_ms=1500, always_wait=True))
    test = images(data["test"])[:4]
    with Registry.open(settings) as registry:
        app = create_app(registry)
        with ServerThread(app) as server:
            def post(i: int) -> Any:
                time.sleep(0.1 * i)  # all four arrive within the batch's wait
                return httpx.post(f"{server.url}/v1/classify", json={"system": "critters", "input": [{"image": b64(test[i])}]},
                                  timeout=60.0)

            with concurrent.futures.ThreadPoolExecutor(len(test)) as pool:
                answers = [r.json() for r in pool.map(post, range(len(test)))]
    assert app.state.scoring.calls == 1
    alone = library["cot"].predict_proba(images=test)
    fits = library["cot"].fit_score(images=test)
    for i, body in enumerate(answers):
        np.testing.assert_allclose(scores(body)[0], alone[i], rtol=1e-5, atol=1e-7)
        assert body["data"][0]["fit_score"] == pytest.approx(fits[i], rel=1e-5, abs=1e-7)


def test_registrations_over_http_are_refused_with_several_workers(tmp_path: Path, data: dict[str, Path]) -> None:
    """Each worker has its own memory: a registration would reach one of them only."""
    from cotembed.system import System

    settings = ServeSettings(models=("critters",), systems=(System.load(CRITTERS / "system.yaml"),), cache_enabled=False,
                             workers=2)
    registry, server = _start(settings)
    try:
        url = server.url
        system = (CRITTERS / "system.yaml").read_text()
        assert_error(httpx.post(f"{url}/v1/systems", content=system), 409, "conflict", "body", "2 worker processes")
        image = {"image": b64(images(data["support"])[0])}
        added = httpx.post(f"{url}/v1/systems/critters/examples", json={"input": [image], "labels": ["Brazzik"]})
        assert_error(added, 409, "conflict", "body", "--examples")
        assert_error(httpx.delete(f"{url}/v1/systems/critters/examples"), 409, "conflict", "body", "worker processes")
        assert httpx.post(f"{url}/v1/classify", json={"system": "critters", "input": [image]}).status_code == 200
    finally:
        server.stop()
        registry.close()


def test_start_data_flags_are_checked_before_a_model_loads(capsys: pytest.CaptureFixture[str], data: dict[str, Path]) -> None:
    system = CRITTERS / "system.yaml"
    code, _, err = run_cli(capsys, "serve", "--system", system, "--examples", str(data["support"]), "--port", "0")
    assert code == 2 and "--examples" in err and "NAME=DATA" in err
    code, _, err = run_cli(capsys, "serve", "--system", system, "--conformal", "0.1", "--port", "0")
    assert code == 2 and "--conformal-data" in err
    code, _, err = run_cli(capsys, "serve", "--system", system, "--examples", "critters=no/such/folder", "--port", "0")
    assert code == 2 and "no/such/folder: no such file or folder" in err and "loading model" not in err
    for alpha in ("1", "0", "nan"):  # as classify --conformal: strictly between 0 and 1, refused at the flag
        code, _, err = run_cli(capsys, "serve", "--system", system, "--conformal", alpha, "--conformal-data",
                               f"critters={data['support']}", "--port", "0")
        assert code == 2 and "alpha must be strictly between 0 and 1" in err


@pytest.mark.slow
def test_several_worker_processes_serve_one_port_and_stop_on_sigterm(tmp_path: Path, data: dict[str, Path]) -> None:
    cmd = [sys.executable, "-m", "cotembed.cli", "serve", "--model", "critters", "--system", str(CRITTERS / "system.yaml"),
           "--port", "0", "--format", "json", "--cache", str(tmp_path / "c.sqlite"), "--workers", "2",
           "--examples", f"critters={data['support']}", "--log-level", "warning"]
    env = {k: v for k, v in os.environ.items() if k != "COTEMBED_API_KEY"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())
        assert ready["workers"] == 2
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        if children.exists():
            assert len(children.read_text().split()) == 2
        test = images(data["test"])
        for i in range(6):  # fresh connections, spread over the workers: each holds the examples given at start
            answer = httpx.post(f"{ready['url']}/v1/classify", timeout=60.0,
                                json={"system": "critters", "method": "fused", "input": [{"image": b64(test[i])}]})
            assert answer.status_code == 200, answer.text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        stderr = proc.stderr.read() if proc.stderr else ""
        assert stderr.count("service stopped") == 2  # each worker shut down gracefully
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
