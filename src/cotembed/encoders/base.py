"""The encoder protocol every backend implements.

An encoder turns images or texts into L2-normalised float32 embeddings. Image
encoding is split in two so the pipeline can run the CPU-bound ``preprocess``
off the main thread while ``encode_preprocessed`` runs the model.

An encoder may also set ``input_size`` (the side its preprocessing resizes images
to); the pipeline then decodes JPEGs at a reduced scale that still covers it.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np
from PIL import Image

from cotembed.errors import CotembedError
from cotembed.scoring import l2_normalize


@runtime_checkable
class Encoder(Protocol):
    """What cotembed needs from a model. Encoders never know about systems."""

    model_key: str
    """Stable identity of the weights (scheme + id); the cache is keyed by it."""

    logit_scale: float | None
    """The model's own softmax temperature (exp of CLIP's learned logit scale), if any."""

    modalities: frozenset[str]
    """Subset of {"image", "text"} this encoder accepts as inputs to classify."""

    batch_size: int

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), D) float32, L2-normalised."""
        ...

    def preprocess(self, images: Sequence[Image.Image]) -> Any:
        """Decoded RGB images -> whatever ``encode_preprocessed`` takes (thread-safe)."""
        ...

    def encode_preprocessed(self, batch: Any) -> np.ndarray:
        """Output of ``preprocess`` -> (B, D) float32, L2-normalised."""
        ...


def encode_images(encoder: Encoder, images: Sequence[Image.Image]) -> np.ndarray:
    """Convenience: preprocess and encode in the calling thread."""
    return encoder.encode_preprocessed(encoder.preprocess(images))


class TextOnlyMixin:
    """For text encoders: image methods fail with a clear message."""

    model_key: str

    def preprocess(self, images: Sequence[Image.Image]) -> Any:
        raise CotembedError(f"model {self.model_key} encodes text only; give text inputs (CSV/JSONL with text,label)")

    def encode_preprocessed(self, batch: Any) -> np.ndarray:
        raise CotembedError(f"model {self.model_key} encodes text only")


def to_numpy_normalized(x: Any) -> np.ndarray:
    """Torch tensor or array -> L2-normalised float32 numpy (rows)."""
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return l2_normalize(x)
