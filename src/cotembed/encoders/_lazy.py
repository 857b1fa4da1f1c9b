"""An encoder that loads its model only when something needs the model.

A run whose embeddings are all in the cache needs the model's identity (``model_key``,
``modalities``, ``batch_size``: known from the spec) and a few facts about it
(``logit_scale``, ``dim``, ``input_size``: read from the record the cache keeps of the
model's last load), but never its weights. :class:`LazyEncoder` answers those from the
spec and the record, and loads the real encoder once on the first access that needs it:
an encode call, a fact the record lacks, or any other attribute. After loading it writes
the record again, so the next run knows.
"""

from __future__ import annotations

import math
import threading
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np
from PIL import Image

from cotembed.encoders._base import Encoder
from cotembed.errors import CotembedError, ModelLoadError

INFO_FIELDS = ("logit_scale", "dim", "input_size")
"""What the model-info record holds: the facts that need a loaded model to learn."""


class ModelInfoStore(Protocol):
    """Where model-info records live (the embedding cache; ``NoCache`` remembers none)."""

    def get_model_info(self, model_key: str) -> dict[str, Any] | None: ...

    def put_model_info(self, model_key: str, info: dict[str, Any]) -> None: ...


def model_info(encoder: Encoder, skip: Sequence[str] = ()) -> dict[str, Any]:
    """The record to store for a loaded encoder. ``skip`` names fields set by options
    (jina-api's ``logit_scale``): they describe this call, not the model."""
    return {name: getattr(encoder, name) for name in INFO_FIELDS if name not in skip}


def _valid(name: str, value: Any) -> bool:
    """A stored value is used only if it has the type the protocol promises; anything
    else (an old or hand-edited record) counts as missing, so the model is loaded."""
    if name == "logit_scale":
        return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)
                                 and math.isfinite(value) and value > 0)
    positive_int = isinstance(value, int) and not isinstance(value, bool) and value > 0
    return positive_int or (name == "input_size" and value is None)


class LazyEncoder:
    """Implements :class:`~cotembed.encoders._base.Encoder` around a ``load`` callable.

    Built by ``load_encoder(spec, lazy=True, info_store=cache)``. ``loaded`` says whether
    the real encoder exists; ``close()`` closes it (idempotent) and the wrapper for good.
    A field given by ``options`` (``logit_scale`` for jina-api) overrides the record.

    Note: before Python 3.12, ``isinstance(x, Encoder)`` reads every protocol attribute,
    so on a lazy encoder whose record is missing it loads the model.
    """

    def __init__(self, spec: str, load: Callable[[], Encoder], *, model_key: str | None = None,
                 modalities: frozenset[str] | None = None, batch_size: int | None = None,
                 info_store: ModelInfoStore | None = None, options: Mapping[str, Any] | None = None) -> None:
        self.spec = spec
        self._key = model_key
        self._load_fn = load
        self._store = info_store
        self._options = dict(options or {})
        self._batch_size = batch_size
        self._info: dict[str, Any] | None = None
        self._inner: Encoder | None = None
        self._closed = False
        self._lock = threading.Lock()
        if model_key is None or modalities is None:  # not knowable from the spec: load now
            inner = self._load()
            model_key, modalities = inner.model_key, inner.modalities
        self.model_key: str = model_key
        self.modalities: frozenset[str] = modalities

    def __repr__(self) -> str:
        state = "closed" if self._closed else "loaded" if self._inner is not None else "not loaded"
        return f"LazyEncoder({self.spec!r}, {state})"

    @property
    def loaded(self) -> bool:
        """Whether the real encoder (weights, client) exists now."""
        return self._inner is not None and not self._closed

    def _load(self) -> Encoder:
        """The real encoder, built on first use (thread-safe: preprocess runs in a worker)."""
        with self._lock:
            if self._closed:
                raise CotembedError(f"encoder {self.spec} was closed; load it again to encode")
            if self._inner is None:
                inner = self._load_fn()
                if self._key is not None and inner.model_key != self._key:
                    inner.close()
                    raise ModelLoadError(f"{self.spec} loaded as {inner.model_key}, not the {self._key} its spec "
                                         "names; the cache would mix two models' embeddings")
                if self._store is not None:
                    self._store.put_model_info(inner.model_key, model_info(inner, skip=list(self._options)))
                self._inner = inner
            return self._inner

    def _field(self, name: str) -> Any:
        if self._inner is not None:
            return getattr(self._inner, name)
        if name in self._options:
            return self._options[name]
        if self._info is None:
            stored = self._store.get_model_info(self.model_key) if self._store is not None else None
            self._info = {k: v for k, v in (stored or {}).items() if k in INFO_FIELDS and _valid(k, v)}
        if name in self._info:
            return self._info[name]
        return getattr(self._load(), name)

    @property
    def logit_scale(self) -> float | None:
        value: float | None = self._field("logit_scale")
        return value

    @property
    def dim(self) -> int:
        return int(self._field("dim"))

    @property
    def input_size(self) -> int | None:
        value: int | None = self._field("input_size")
        return value

    @property
    def batch_size(self) -> int:
        if self._inner is None and self._batch_size is not None:
            return self._batch_size
        return int(self._load().batch_size)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self._load().encode_texts(texts)

    def preprocess(self, images: Sequence[Image.Image]) -> Any:
        return self._load().preprocess(images)

    def encode_preprocessed(self, batch: Any) -> np.ndarray:
        return self._load().encode_preprocessed(batch)

    def close(self) -> None:
        with self._lock:
            if self._inner is not None and not self._closed:
                self._inner.close()
            self._closed = True

    def __getattr__(self, name: str) -> Any:
        """Anything else (``model``, ``tokenizer``, a backend's own attributes) is the real encoder's."""
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._load(), name)


__all__ = ["INFO_FIELDS", "LazyEncoder", "ModelInfoStore", "model_info"]
