"""The bundled offline ``critters`` model: a small CNN image tower trained here to
meet the frozen all-MiniLM-L6-v2 text tower. Needs no network and no GPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from cotembed.encoders.base import to_numpy_normalized
from cotembed.encoders.loading import require_torch
from cotembed.encoders.st import bundled_minilm

DEFAULT_BATCH_SIZE = 128


class CrittersEncoder:
    """Images through the shipped CNN tower, texts through the bundled MiniLM."""

    modalities = frozenset({"image", "text"})

    def __init__(self, weights_dir: str | Path | None = None, *, device: str | None = None,
                 batch_size: int | None = None, **_ignored: Any) -> None:
        from cotembed.critters.model import WEIGHTS_DIR, images_to_array, load_tower

        self._torch = require_torch("minilm")
        self.tower, self.config, self.record = load_tower(Path(weights_dir) if weights_dir else WEIGHTS_DIR)
        self._to_array = images_to_array
        self.text_encoder = bundled_minilm(device="cpu")
        self.batch_size = int(batch_size or DEFAULT_BATCH_SIZE)
        self.model_key = f"critters:{self.record['sha256'][:12]}"
        self.logit_scale: float | None = float(self.record["logit_scale"])
        self.input_size = self.config.image_size

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self.text_encoder.encode_texts(texts)

    def preprocess(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self._to_array(images, self.config.image_size)

    def encode_preprocessed(self, batch: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode():
            return to_numpy_normalized(self.tower(self._torch.from_numpy(batch)))
