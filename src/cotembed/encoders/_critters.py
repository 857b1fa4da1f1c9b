"""The bundled offline ``critters`` model: a small CNN image tower trained here to
meet the frozen all-MiniLM-L6-v2 text tower. Needs no network and no GPU.

``critters[:<weights dir>]``: the shipped weights, or a folder ``cotembed critters train``
wrote. Options: ``batch_size`` and ``device`` (where the image tower runs; default CPU,
where it was trained). The text tower stays on the CPU: it only ever embeds prompts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from cotembed.encoders._base import release, to_numpy_normalized
from cotembed.encoders._loading import require_torch, resolve_device
from cotembed.encoders._st import bundled_minilm
from cotembed.errors import InputError, ModelLoadError
from cotembed_critters.model import CONFIG_FILE, WEIGHTS_DIR, images_to_array, load_tower

DEFAULT_BATCH_SIZE = 128
DEFAULT_DEVICE = "cpu"


class CrittersEncoder:
    """Images through the shipped CNN tower, texts through the bundled MiniLM."""

    modalities = frozenset({"image", "text"})

    def __init__(self, weights_dir: str | Path | None = None, *, batch_size: int | None = None,
                 device: str | None = None) -> None:
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
            raise InputError(f"batch_size={batch_size!r} must be a positive integer")
        self._torch = require_torch("minilm")
        self.device = resolve_device(device or DEFAULT_DEVICE, "minilm")
        directory = Path(weights_dir).expanduser() if weights_dir else WEIGHTS_DIR
        tower, self.config, self.record = load_tower(directory)
        self.tower = tower.to(self.device)
        self.model_key = f"critters:{self.record['sha256'][:12]}"
        scale = self.record.get("logit_scale")
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
            raise ModelLoadError(f"{directory / CONFIG_FILE}: field 'logit_scale' must be a finite number > 0, got {scale!r}")
        self.logit_scale: float | None = float(scale)
        self.batch_size = batch_size or DEFAULT_BATCH_SIZE
        self.dim = self.config.embed_dim
        self.input_size: int | None = self.config.image_size
        self.text_model = bundled_minilm(device="cpu")
        if self.text_model.dim != self.dim:
            raise ModelLoadError(f"{directory / CONFIG_FILE}: tower.embed_dim is {self.dim}, "
                                 f"but the text tower {self.text_model.model_key} gives {self.text_model.dim}")

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self.text_model.encode_texts(texts)

    def preprocess(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Pure numpy (resize, normalise): safe in the pipeline's worker thread."""
        return images_to_array(images, self.config.image_size)

    def encode_preprocessed(self, batch: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode():
            return to_numpy_normalized(self.tower(self._torch.from_numpy(batch).to(self.device)))

    def close(self) -> None:
        """Drop the image tower and the text model (a second call does nothing)."""
        release(self, "tower", "text_model")


__all__ = ["DEFAULT_BATCH_SIZE", "CrittersEncoder"]
