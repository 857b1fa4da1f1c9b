"""open_clip models (``open_clip:<arch>[:<pretrained tag or checkpoint path>]``).

``open_clip:hf-hub:org/repo`` and ``open_clip:local-dir:/path`` are passed whole as the
model name, since open_clip resolves those itself.
"""

from __future__ import annotations

import warnings
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image

from cotembed.encoders._base import probe_dim, release, to_numpy_normalized
from cotembed.encoders._loading import require_torch, resolve_device
from cotembed.errors import MissingDependencyError, ModelLoadError

DEFAULT_BATCH_SIZE = 32
_WHOLE_NAME_PREFIXES = ("hf-hub:", "local-dir:")


def split_argument(argument: str) -> tuple[str, str | None, str]:
    """-> (arch, pretrained or None, stable key). Checkpoint paths are keyed absolute."""
    if argument.startswith(_WHOLE_NAME_PREFIXES):
        return argument, None, f"open_clip:{argument}"
    arch, _, pretrained = argument.partition(":")
    if not pretrained:
        return arch, None, f"open_clip:{arch}"
    path = Path(pretrained).expanduser()
    if path.is_file():
        pretrained = str(path.resolve())
    return arch, pretrained, f"open_clip:{arch}:{pretrained}"


def model_key(argument: str, options: Mapping[str, Any]) -> str:
    """The cache key, without loading (checkpoint paths absolute)."""
    return split_argument(argument)[2]


def _side(size: Any) -> int | None:
    """open_clip stores ``visual.image_size`` as an int or an (h, w) pair."""
    if isinstance(size, int):
        return size
    if isinstance(size, (tuple, list)) and size and all(isinstance(s, int) for s in size):
        return max(int(s) for s in size)
    return None


class OpenClipEncoder:
    """``open_clip.create_model_and_transforms`` + ``get_tokenizer``; eval transforms for images."""

    modalities = frozenset({"image", "text"})

    def __init__(self, argument: str, *, device: str | None = None, batch_size: int | None = None) -> None:
        torch = require_torch("open_clip")
        try:
            import open_clip
        except ImportError as exc:
            raise MissingDependencyError("open_clip_torch", "open_clip") from exc
        self._torch = torch
        arch, pretrained, self.model_key = split_argument(argument)
        self.device = resolve_device(device, "open_clip")
        self.batch_size = int(batch_size or DEFAULT_BATCH_SIZE)
        try:
            model, _, transform = open_clip.create_model_and_transforms(arch, pretrained=pretrained)
            self.tokenizer = open_clip.get_tokenizer(arch)
        except (RuntimeError, OSError, ValueError, KeyError) as exc:
            raise ModelLoadError(
                f"could not load open_clip model {argument!r} ({type(exc).__name__}: {exc}); "
                "use open_clip:<arch>:<pretrained tag or checkpoint path>, "
                "see open_clip.list_pretrained() for valid pairs"
            ) from exc
        if pretrained is None and not arch.startswith(_WHOLE_NAME_PREFIXES):
            warnings.warn(f"open_clip:{arch} has no pretrained tag: weights are random", stacklevel=2)
        self.model = model.to(self.device).eval()
        self.transform = transform
        scale = getattr(model, "logit_scale", None)
        self.logit_scale: float | None = float(scale.detach().float().exp().item()) if scale is not None else None
        self.input_size = _side(getattr(getattr(model, "visual", None), "image_size", None))

    dim = cached_property(probe_dim)

    def close(self) -> None:
        release(self, "model")

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return self.encode_texts([""])[:0]
        parts = []
        for i in range(0, len(texts), self.batch_size):
            tokens = self.tokenizer(list(texts[i:i + self.batch_size])).to(self.device)
            with self._torch.inference_mode():
                parts.append(to_numpy_normalized(self.model.encode_text(tokens)))
        return np.concatenate(parts, axis=0)

    def preprocess(self, images: Sequence[Image.Image]) -> Any:
        """Per-image eval transform (stateless torchvision ops), stacked into one tensor."""
        return self._torch.stack([self.transform(image) for image in images])

    def encode_preprocessed(self, batch: Any) -> np.ndarray:
        with self._torch.inference_mode():
            return to_numpy_normalized(self.model.encode_image(batch.to(self.device)))


__all__ = ["OpenClipEncoder", "split_argument"]
