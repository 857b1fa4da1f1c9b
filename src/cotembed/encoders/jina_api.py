"""Jina Embeddings HTTP API (``jina-api:<model>``, e.g. ``jina-api:jina-clip-v2``).

POST ``{base_url}/v1/embeddings`` with ``{"model", "input": [{"text"}|{"image"}], ...}``;
the key comes from ``JINA_API_KEY``. 429 and 5xx (and connection failures) are retried
with exponential backoff, honouring ``Retry-After``; 401/403 fail at once.
"""

from __future__ import annotations

import base64
import io
import os
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from PIL import Image

from cotembed.encoders.base import Closed, probe_dim, to_numpy_normalized
from cotembed.errors import CotembedError, InputError, MissingDependencyError

DEFAULT_BASE_URL = "https://api.jina.ai"
DEFAULT_BATCH_SIZE = 32
MAX_RETRY_SLEEP_S = 60.0


def model_key(argument: str, options: Mapping[str, Any]) -> str:
    """The cache key, without a request: the model name, plus the Matryoshka size and the
    task adapter when given (each gives different embeddings)."""
    dimensions, task = options.get("dimensions"), options.get("task")
    return f"jina-api:{argument}" + (f"@{int(dimensions)}" if dimensions else "") + (f";task={task}" if task else "")


def encode_image_b64(image: Image.Image, *, max_side: int | None = 1024, fmt: str = "PNG") -> str:
    """RGB image -> base64 string. Large images are shrunk first: the model resizes to
    ~512 px anyway, and uploading full-size photos would dominate the request time."""
    image = image if image.mode == "RGB" else image.convert("RGB")
    if max_side and max(image.size) > max_side:
        image = image.copy()
        image.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP-date: fall back to our own backoff


class JinaApiEncoder:
    """Embeddings from the hosted API. Options: ``base_url`` (or ``JINA_API_BASE_URL``),
    ``api_key``, ``max_attempts``, ``backoff_s`` (first retry delay, doubled each time),
    ``timeout_s``, ``task``, ``dimensions``, ``logit_scale``, ``max_image_side`` (0: send full
    size), ``image_format``. ``sleep`` replaces ``time.sleep`` between retries (for tests)."""

    modalities = frozenset({"image", "text"})
    input_size: int | None = None  # the server resizes; images are only shrunk to max_image_side

    def __init__(self, argument: str, *, batch_size: int | None = None,
                 base_url: str | None = None, api_key: str | None = None, max_attempts: int = 5,
                 backoff_s: float = 1.0, timeout_s: float = 60.0, task: str | None = None,
                 dimensions: int | None = None, logit_scale: float | None = None,
                 max_image_side: int | None = 1024, image_format: str = "PNG",
                 sleep: Callable[[float], None] = time.sleep) -> None:
        try:
            import httpx
        except ImportError as exc:
            raise MissingDependencyError("httpx", "api") from exc
        key = api_key or os.environ.get("JINA_API_KEY")
        if not key:
            raise InputError(f"jina-api:{argument} needs an API key: set the JINA_API_KEY environment variable "
                             "(get one at https://jina.ai/embeddings)")
        self._httpx = httpx
        self.model = argument
        self.model_key = model_key(argument, {"dimensions": dimensions, "task": task})
        self.logit_scale = logit_scale
        self.batch_size = int(batch_size or DEFAULT_BATCH_SIZE)
        self.url = (base_url or os.environ.get("JINA_API_BASE_URL") or DEFAULT_BASE_URL).rstrip("/") + "/v1/embeddings"
        self.max_attempts = max(1, int(max_attempts))
        self.backoff_s = float(backoff_s)
        self.task = task
        self.dimensions = dimensions
        self.max_image_side = max_image_side
        self.image_format = image_format
        self._sleep = sleep
        self._dim: int | None = None
        self._client: Any = httpx.Client(timeout=timeout_s, headers={
            "Authorization": f"Bearer {key}", "Content-Type": "application/json", "Accept": "application/json",
        })

    @property
    def dim(self) -> int:
        """The requested ``dimensions``, else learned from the first response (one probe
        request when nothing was encoded yet)."""
        if self._dim is None:
            self._dim = int(self.dimensions) if self.dimensions else probe_dim(self)
        return self._dim

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed([{"text": t} for t in texts])

    def preprocess(self, images: Sequence[Image.Image]) -> list[str]:
        """Base64-encode each image (pure function of the image: thread-safe)."""
        return [encode_image_b64(im, max_side=self.max_image_side, fmt=self.image_format) for im in images]

    def encode_preprocessed(self, batch: list[str]) -> np.ndarray:
        return self._embed([{"image": b64} for b64 in batch])

    def _embed(self, items: list[dict[str, str]]) -> np.ndarray:
        if not items:
            return np.zeros((0, self._dim or self.dimensions or 0), dtype=np.float32)
        parts = [self._request(items[i:i + self.batch_size]) for i in range(0, len(items), self.batch_size)]
        out = np.concatenate(parts, axis=0)
        self._dim = out.shape[1]
        return out

    def _request(self, items: list[dict[str, str]]) -> np.ndarray:
        body: dict[str, Any] = {"model": self.model, "input": items, "normalized": True, "embedding_type": "float"}
        if self.task:
            body["task"] = self.task
        if self.dimensions:
            body["dimensions"] = int(self.dimensions)
        problem = ""
        for attempt in range(self.max_attempts):
            delay = self.backoff_s * 2**attempt
            try:
                response = self._client.post(self.url, json=body)
            except self._httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code in (401, 403):
                    raise InputError(f"JINA_API_KEY was rejected by {self.url} (HTTP {response.status_code}): "
                                     f"{_detail(response)}; check the key and its remaining balance")
                if response.status_code == 429 or response.status_code >= 500:
                    problem = f"HTTP {response.status_code}: {_detail(response)}"
                    retry_after = _retry_after(response.headers.get("Retry-After"))
                    delay = delay if retry_after is None else retry_after
                elif response.status_code >= 400:
                    raise CotembedError(f"Jina API rejected the request for model {self.model!r} "
                                        f"(HTTP {response.status_code}): {_detail(response)}")
                else:
                    return self._parse(response, len(items))
            if attempt + 1 < self.max_attempts:
                self._sleep(min(delay, MAX_RETRY_SLEEP_S))
        raise CotembedError(f"Jina API at {self.url} failed after {self.max_attempts} attempts; last error: {problem}")

    def _parse(self, response: Any, expected: int) -> np.ndarray:
        try:
            payload = response.json()
            data = sorted(payload["data"], key=lambda d: d["index"])
            rows = [d["embedding"] for d in data]
        except (ValueError, KeyError, TypeError) as exc:
            raise CotembedError(f"unexpected Jina API response (no data[].embedding): {response.text[:200]}") from exc
        if len(rows) != expected:
            raise CotembedError(f"Jina API returned {len(rows)} embeddings for {expected} inputs")
        return to_numpy_normalized(np.asarray(rows, dtype=np.float32))

    def close(self) -> None:
        """Close the HTTP client's connections; later requests say the encoder was closed."""
        if not isinstance(self._client, Closed):
            self._client.close()
            self._client = Closed(self.model_key)


def _detail(response: Any) -> str:
    """The server's error message, short."""
    try:
        payload = response.json()
    except ValueError:
        return response.text[:300]
    text = (payload.get("detail") or payload.get("message") or payload) if isinstance(payload, dict) else payload
    return str(text)[:300]


__all__ = ["JinaApiEncoder", "encode_image_b64"]
