"""The encoder protocol every backend implements.

An encoder turns images or texts into L2-normalised float32 embeddings. Image
encoding is split in two so the pipeline can run the CPU-bound ``preprocess``
off the main thread while ``encode_preprocessed`` runs the model.

``input_size`` (the side an encoder's preprocessing resizes images to) lets the
pipeline decode JPEGs at a reduced scale that still covers it. ``close()`` lets a
long-lived process (the service, a sweep over many models) give memory back.
``cotembed.testing.check_encoder`` checks a backend against all of this.
"""

from __future__ import annotations

import gc
import sys
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np
from PIL import Image

from cotembed.errors import CotembedError
from cotembed.scoring import l2_normalize


@runtime_checkable
class Encoder(Protocol):
    """What cotembed needs from a model. Encoders never know about systems.

    The attributes are read-only properties here so an implementation may use plain
    attributes or compute them (``dim`` by a probe, a lazy encoder from a stored record).
    """

    @property
    def model_key(self) -> str:
        """Stable identity of the weights (scheme + id); the cache is keyed by it."""
        ...

    @property
    def logit_scale(self) -> float | None:
        """The model's own softmax temperature (exp of CLIP's learned logit scale), if any."""
        ...

    @property
    def modalities(self) -> frozenset[str]:
        """Subset of {"image", "text"} this encoder accepts as inputs to classify."""
        ...

    @property
    def batch_size(self) -> int:
        """How many inputs go through the model at once."""
        ...

    @property
    def dim(self) -> int:
        """Embedding size D."""
        ...

    @property
    def input_size(self) -> int | None:
        """Image side the preprocessing resizes to; None for text-only or when unknown."""
        ...

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), D) float32, L2-normalised."""
        ...

    def preprocess(self, images: Sequence[Image.Image]) -> Any:
        """Decoded images -> whatever ``encode_preprocessed`` takes (thread-safe)."""
        ...

    def encode_preprocessed(self, batch: Any) -> np.ndarray:
        """Output of ``preprocess`` -> (B, D) float32, L2-normalised."""
        ...

    def close(self) -> None:
        """Release the model's memory or network client; calling it again does nothing."""
        ...


def encode_images(encoder: Encoder, images: Sequence[Image.Image]) -> np.ndarray:
    """Convenience: preprocess and encode in the calling thread."""
    return encoder.encode_preprocessed(encoder.preprocess(images))


def probe_dim(encoder: Any) -> int:
    """Embedding size found by encoding one short text: the one answer every model family
    agrees on, where configs name the projection size differently (or not at all)."""
    return int(encoder.encode_texts(["a"]).shape[1])


class Closed:
    """Stands in for a released model: any use says the encoder was closed."""

    def __init__(self, model_key: str) -> None:
        self._model_key = model_key

    def __getattr__(self, name: str) -> Any:
        raise CotembedError(f"encoder {self._model_key} was closed; load it again to encode")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__getattr__("__call__")


def release(encoder: Any, *names: str) -> None:
    """Replace the encoder's model attributes with :class:`Closed` (idempotent), then
    collect and hand cached GPU memory back, so memory is free when ``close()`` returns."""
    held = [name for name in names if not isinstance(getattr(encoder, name, None), Closed)]
    if not held:
        return
    for name in held:
        setattr(encoder, name, Closed(encoder.model_key))
    gc.collect()  # transformers models hold reference cycles
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


class TextOnlyMixin:
    """For text encoders: image methods fail with a clear message."""

    model_key: str
    input_size: int | None = None

    def preprocess(self, images: Sequence[Image.Image]) -> Any:
        raise CotembedError(f"model {self.model_key} encodes text only; give text inputs (CSV/JSONL with text,label)")

    def encode_preprocessed(self, batch: Any) -> np.ndarray:
        raise CotembedError(f"model {self.model_key} encodes text only")


def to_numpy_normalized(x: Any) -> np.ndarray:
    """Torch tensor or array -> L2-normalised float32 numpy (rows)."""
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return l2_normalize(x)
