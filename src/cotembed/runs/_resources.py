"""The cache and the model one run opens, closed when the run ends or fails."""

from __future__ import annotations

import os
from contextlib import ExitStack
from typing import Any

from cotembed.cache import EmbeddingStore
from cotembed.encoders._base import Encoder
from cotembed.runs._options import ModelOptions


class RunResources(ExitStack):
    """Opens the cache and, lazily, the model for one run, and closes both at the end.

    ``fast_decode`` is set in the environment the image pipeline reads, and restored on exit.
    """

    def __init__(self, model: ModelOptions):
        super().__init__()
        self.model = model
        self._cache: EmbeddingStore | None = None
        self._quiet = False
        if model.fast_decode:
            from cotembed._pipeline import FAST_DECODE_ENV

            previous = os.environ.get(FAST_DECODE_ENV)
            os.environ[FAST_DECODE_ENV] = "1"
            self.callback(_restore_env, FAST_DECODE_ENV, previous)

    @property
    def cache(self) -> Any:
        """The embedding cache (opened on first use)."""
        from cotembed.cache import open_cache

        if self._cache is None:
            options = self.model.cache
            self._cache = open_cache(options.path, enabled=options.enabled, recover=options.recover)
            self.callback(self._cache.close)
        return self._cache

    def encoder(self, spec: str) -> Encoder:
        """The model as a lazy encoder: weights load only if something must be encoded."""
        from cotembed.encoders import load_encoder

        if self.model.quiet and not self._quiet:  # also the model libraries' own loading bars
            from cotembed.encoders._loading import quiet_model_libraries

            self._quiet = True
            self.callback(quiet_model_libraries())
        options: dict[str, Any] = {}
        if self.model.batch_size:
            options["batch_size"] = self.model.batch_size
        if self.model.device:
            options["device"] = self.model.device
        encoder = load_encoder(spec, lazy=True, info_store=self.cache, **options)
        self.callback(encoder.close)
        return encoder


def _restore_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


__all__ = ["RunResources"]
