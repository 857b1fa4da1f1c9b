"""JinaApiEncoder against a local HTTP server speaking the /v1/embeddings shape."""

from __future__ import annotations

import base64
import io
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import numpy as np
import pytest
from PIL import Image

from cotembed.encoders import load_encoder
from cotembed.encoders._base import Encoder, encode_images
from cotembed.encoders._jina_api import JinaApiEncoder
from cotembed.errors import CotembedError, InputError, MissingDependencyError
from cotembed.testing import check_encoder


def _text_vector(text: str) -> list[float]:
    """Deterministic, unnormalised: lets the test check normalisation and row order."""
    return [float(len(text)), float(text.count("e")) + 1.0, float(sum(text.encode()) % 7), 2.0]


def _image_vector(b64: str) -> list[float]:
    image = Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB")
    r, g, b = np.asarray(image, dtype=np.float64).reshape(-1, 3).mean(axis=0)
    return [r + 1.0, g + 1.0, b + 1.0, float(max(image.size))]


class _FakeJina:
    """Scripted server: ``script`` holds (status, headers) replies used before normal service."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.script: list[tuple[int, dict[str, str]]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                if fake.script:
                    status, headers = fake.script.pop(0)
                    self._reply(status, {"detail": f"scripted {status}"}, headers)
                    return
                data = [{"object": "embedding", "index": i,
                         "embedding": _text_vector(item["text"]) if "text" in item else _image_vector(item["image"])}
                        for i, item in enumerate(body["input"])]
                data.reverse()  # the client must sort by index
                self._reply(200, {"model": body["model"], "data": data, "usage": {"total_tokens": len(data)}}, {})

            def _reply(self, status: int, payload: Any, headers: dict[str, str]) -> None:
                raw = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(raw)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture()
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[_FakeJina]:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("JINA_API_KEY", "test-key-123")
    fake = _FakeJina()
    thread = threading.Thread(target=fake.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def _encoder(server: _FakeJina, **options: Any) -> tuple[JinaApiEncoder, list[float]]:
    sleeps: list[float] = []
    options.setdefault("backoff_s", 0.01)
    options.setdefault("jitter", 0.0)  # exact delays to compare against
    enc = JinaApiEncoder("jina-clip-v2", base_url=server.base_url, sleep=sleeps.append, **options)
    return enc, sleeps


def _unit(rows: list[list[float]]) -> np.ndarray:
    arr = np.asarray(rows, dtype=np.float32)
    return arr / np.linalg.norm(arr, axis=1, keepdims=True)


def test_texts_round_trip_in_order(server: _FakeJina) -> None:
    enc, _ = _encoder(server, batch_size=2)
    assert enc.model_key == "jina-api:jina-clip-v2" and enc.logit_scale is None
    texts = ["red", "green leaves", "blue", "eee", "x"]
    emb = enc.encode_texts(texts)
    assert emb.dtype == np.float32
    np.testing.assert_allclose(emb, _unit([_text_vector(t) for t in texts]), atol=1e-6)
    assert len(server.requests) == 3  # batches of 2, 2, 1
    first = server.requests[0]
    assert first["path"] == "/v1/embeddings"
    assert first["auth"] == "Bearer test-key-123"
    assert first["body"] == {"model": "jina-clip-v2", "input": [{"text": "red"}, {"text": "green leaves"}],
                             "normalized": True, "embedding_type": "float"}
    assert isinstance(enc, Encoder)  # reads dim: learned from the responses, no further request
    assert enc.dim == 4 and len(server.requests) == 3


def test_dim_without_a_response(server: _FakeJina) -> None:
    """``dimensions`` answers at once; otherwise one short probe request learns it."""
    enc, _ = _encoder(server, dimensions=4, task="text-matching")
    assert enc.dim == 4 and server.requests == []
    assert enc.model_key == "jina-api:jina-clip-v2@4;task=text-matching"
    probed, _ = _encoder(server)
    assert probed.dim == 4 and len(server.requests) == 1
    assert server.requests[0]["body"]["input"] == [{"text": "a"}]


def test_close_is_idempotent_and_final(server: _FakeJina) -> None:
    enc, _ = _encoder(server)
    enc.close()
    enc.close()
    with pytest.raises(CotembedError, match="was closed"):
        enc.encode_texts(["red"])
    assert server.requests == []


def test_passes_check_encoder(server: _FakeJina) -> None:
    enc = load_encoder("jina-api:jina-clip-v2", base_url=server.base_url, batch_size=2, max_image_side=64)
    assert "image_embeddings" in check_encoder(enc)
    assert all(r["auth"] == "Bearer test-key-123" for r in server.requests)


def test_images_round_trip(server: _FakeJina) -> None:
    enc, _ = _encoder(server, max_image_side=64)
    images = [Image.new("RGB", (10, 12), (200, 10, 30)), Image.new("L", (300, 100), 90)]
    emb = encode_images(enc, images)
    expected = _unit([[201.0, 11.0, 31.0, 12.0], [91.0, 91.0, 91.0, 64.0]])  # big image shrunk to 64 px
    np.testing.assert_allclose(emb, expected, atol=1e-5)
    assert set(server.requests[0]["body"]["input"][0]) == {"image"}


def test_spec_reads_base_url_from_env(server: _FakeJina, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JINA_API_BASE_URL", server.base_url + "/")
    enc = load_encoder("jina-api:jina-clip-v1")
    assert enc.encode_texts(["hi"]).shape == (1, 4)
    assert server.requests[0]["body"]["model"] == "jina-clip-v1"


def test_retries_after_429_honouring_retry_after(server: _FakeJina) -> None:
    enc, sleeps = _encoder(server, backoff_s=30.0)
    server.script = [(429, {"Retry-After": "0"}), (503, {})]
    emb = enc.encode_texts(["red"])
    np.testing.assert_allclose(emb, _unit([_text_vector("red")]), atol=1e-6)
    assert len(server.requests) == 3
    assert sleeps == [0.0, 60.0]  # Retry-After honoured, then own backoff 30*2 (capped at 60 s)


def test_server_errors_exhaust_retries(server: _FakeJina) -> None:
    enc, sleeps = _encoder(server, max_attempts=3, backoff_s=0.5)
    server.script = [(500, {})] * 5
    with pytest.raises(CotembedError, match=r"failed after 3 attempts.*HTTP 500.*scripted 500"):
        enc.encode_texts(["red"])
    assert len(server.requests) == 3
    assert sleeps == [0.5, 1.0]


def test_rejected_key_fails_immediately(server: _FakeJina) -> None:
    enc, sleeps = _encoder(server)
    server.script = [(401, {})]
    with pytest.raises(InputError, match="JINA_API_KEY was rejected.*401"):
        enc.encode_texts(["red"])
    assert len(server.requests) == 1 and sleeps == []


def test_bad_request_is_not_retried(server: _FakeJina) -> None:
    enc, _ = _encoder(server)
    server.script = [(422, {})]
    with pytest.raises(CotembedError, match="HTTP 422.*scripted 422"):
        enc.encode_texts(["red"])
    assert len(server.requests) == 1


def test_unreachable_server_is_retried_then_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JINA_API_KEY", "k")
    sleeps: list[float] = []
    enc = JinaApiEncoder("jina-clip-v2", base_url="http://127.0.0.1:9", max_attempts=2, backoff_s=0.0,
                         sleep=sleeps.append, timeout_s=2.0)
    with pytest.raises(CotembedError, match="failed after 2 attempts.*ConnectError"):
        enc.encode_texts(["red"])
    assert sleeps == [0.0]


def test_missing_key_is_an_input_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JINA_API_KEY", raising=False)
    with pytest.raises(InputError, match="JINA_API_KEY"):
        load_encoder("jina-api:jina-clip-v2")


def test_missing_httpx_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "httpx", None)
    with pytest.raises(MissingDependencyError, match=r"httpx.*cotembed\[api\]"):
        JinaApiEncoder("jina-clip-v2", api_key="k")


def test_empty_input_makes_no_request(server: _FakeJina) -> None:
    enc, _ = _encoder(server)
    assert enc.encode_texts([]).shape[0] == 0
    assert server.requests == []
