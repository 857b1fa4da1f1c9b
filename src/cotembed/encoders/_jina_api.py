"""Jina Embeddings HTTP API (``jina-api:<model>``, e.g. ``jina-api:jina-clip-v2``).

POST ``{base_url}/v1/embeddings`` with ``{"model", "input": [{"text"}|{"image"}], ...}``;
the key comes from ``JINA_API_KEY``. 429 and 5xx, timeouts and connection failures are
retried by the shared policy of :mod:`cotembed.http` (exponential backoff with jitter,
honouring ``Retry-After``, bounded attempts and total time); 401/403 fail at once.
"""

from __future__ import annotations

import base64
import io
import os
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from PIL import Image

from cotembed.encoders._base import Closed, probe_dim, to_numpy_normalized
from cotembed.errors import CotembedError, InputError, MissingDependencyError
from cotembed.http import RetryPolicy, response_detail, send_with_retries

DEFAULT_BASE_URL = "https://api.jina.ai"
DEFAULT_BATCH_SIZE = 32
MAX_RETRY_SLEEP_S = 60.0
MAX_RETRY_TOTAL_S = 300.0


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


class JinaApiEncoder:
    """Embeddings from the hosted API. Options: ``base_url`` (or ``JINA_API_BASE_URL``),
    ``api_key``, ``max_attempts``, ``backoff_s`` (first retry delay, doubled each time),
    ``timeout_s``, ``task``, ``dimensions``, ``logit_scale``, ``max_image_side`` (0: send full
    size), ``image_format``. From Python also ``jitter`` (fraction of each delay taken off at
    random) and ``max_total_s`` (time budget for one request's retries). ``sleep`` replaces
    ``time.sleep`` between retries (for tests)."""

    modalities = frozenset({"image", "text"})
    input_size: int | None = None  # the server resizes; images are only shrunk to max_image_side

    def __init__(self, argument: str, *, batch_size: int | None = None,
                 base_url: str | None = None, api_key: str | None = None, max_attempts: int = 5,
                 backoff_s: float = 1.0, timeout_s: float = 60.0, task: str | None = None,
                 dimensions: int | None = None, logit_scale: float | None = None,
                 max_image_side: int | None = 1024, image_format: str = "PNG", jitter: float = 0.5,
                 max_total_s: float | None = MAX_RETRY_TOTAL_S, sleep: Callable[[float], None] = time.sleep) -> None:
        try:
            import httpx
        except ImportError as exc:
            raise MissingDependencyError("httpx", "api") from exc
        key = api_key or os.environ.get("JINA_API_KEY")
        if not key:
            raise InputError(f"jina-api:{argument} needs an API key: set the JINA_API_KEY environment variable "
                             "(get one at https://jina.ai/embeddings)")
        self.model = argument
        self.model_key = model_key(argument, {"dimensions": dimensions, "task": task})
        self.logit_scale = logit_scale
        self.batch_size = int(batch_size or DEFAULT_BATCH_SIZE)
        self.url = (base_url or os.environ.get("JINA_API_BASE_URL") or DEFAULT_BASE_URL).rstrip("/") + "/v1/embeddings"
        self.retry = RetryPolicy(max_attempts=max(1, int(max_attempts)), backoff_s=float(backoff_s),
                                 max_delay_s=MAX_RETRY_SLEEP_S, max_total_s=max_total_s, jitter=jitter)
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
        response = send_with_retries(lambda: self._client.post(self.url, json=body), self.retry,
                                     what=f"Jina API at {self.url}", sleep=self._sleep)
        if response.status_code in (401, 403):
            raise InputError(f"JINA_API_KEY was rejected by {self.url} (HTTP {response.status_code}): "
                             f"{response_detail(response)}; check the key and its remaining balance")
        if response.status_code >= 400:
            raise CotembedError(f"Jina API rejected the request for model {self.model!r} "
                                f"(HTTP {response.status_code}): {response_detail(response)}")
        return self._parse(response, len(items))

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


__all__ = ["JinaApiEncoder", "encode_image_b64"]
