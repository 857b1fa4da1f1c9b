"""jina-clip-v1/v2 (``jina:<hub id or dir>``) through transformers remote code.

The remote model brings its own tokenizer and image preprocessing behind
``encode_text(list[str])`` / ``encode_image(list[PIL.Image])``, so ``preprocess`` only
converts to RGB and the model does the rest.
"""

from __future__ import annotations

import inspect
from functools import cached_property
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from PIL import Image

from cotembed.encoders._base import probe_dim, release, to_numpy_normalized
from cotembed.encoders._loading import load_error, require_torch, resolve_device, resolve_local_or_hub
from cotembed.errors import MissingDependencyError, ModelLoadError

DEFAULT_BATCH_SIZE = 16


def model_key(argument: str, options: Mapping[str, Any]) -> str:
    """The cache key, without loading. A Matryoshka truncation and a task adapter each give
    different embeddings, so both are part of it."""
    truncate_dim, task = options.get("truncate_dim"), options.get("task")
    return (resolve_local_or_hub(argument, "jina")[1] + (f"@{int(truncate_dim)}" if truncate_dim else "")
            + (f";task={task}" if task else ""))


def _call(fn: Callable[..., Any], items: list[Any], **kwargs: Any) -> Any:
    """Call with only the keyword arguments ``fn`` accepts (the remote API varies by version)."""
    params = inspect.signature(fn).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        kwargs = {k: v for k, v in kwargs.items() if k in params}
    return fn(items, **kwargs)


class JinaClipEncoder:
    """``AutoModel.from_pretrained(..., trust_remote_code=True)`` with the model's own encode_* API.

    Options: ``task`` (jina-clip-v2 text task, e.g. ``retrieval.query``; default none) and
    ``truncate_dim`` (Matryoshka truncation of both towers).
    """

    modalities = frozenset({"image", "text"})

    def __init__(self, argument: str, *, device: str | None = None, batch_size: int | None = None,
                 task: str | None = None, truncate_dim: int | None = None) -> None:
        torch = require_torch("jina")
        try:
            from transformers import AutoModel
        except ImportError as exc:
            raise MissingDependencyError("transformers", "jina") from exc
        source = resolve_local_or_hub(argument, "jina")[0]
        self.model_key = model_key(argument, {"truncate_dim": truncate_dim, "task": task})
        self.device = resolve_device(device, "jina")
        self.batch_size = int(batch_size or DEFAULT_BATCH_SIZE)
        self.task = task
        self.truncate_dim = truncate_dim
        try:
            model = AutoModel.from_pretrained(source, trust_remote_code=True)
        except (OSError, ValueError, KeyError) as exc:
            raise load_error("jina", argument, source, exc) from exc
        except ImportError as exc:  # remote code imports einops, timm, ...
            raise ModelLoadError(f"jina:{argument} remote code needs a missing package ({exc}); "
                                 "pip install 'cotembed[jina]'") from exc
        if not (hasattr(model, "encode_text") and hasattr(model, "encode_image")):
            raise ModelLoadError(f"{self.model_key} ({type(model).__name__}) has no encode_text/encode_image")
        self._torch = torch
        self.model = model.to(self.device).eval()
        scale = getattr(model, "logit_scale", None)
        self.logit_scale: float | None = (
            float(scale.detach().float().exp().item()) if isinstance(scale, torch.Tensor) else None
        )
        vision_size = getattr(getattr(model.config, "vision_config", None), "image_size", None)
        self.input_size: int | None = vision_size if isinstance(vision_size, int) else None

    dim = cached_property(probe_dim)

    def close(self) -> None:
        release(self, "model")

    def _options(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size, "convert_to_numpy": True, "normalize_embeddings": True,
                "show_progress_bar": False, "truncate_dim": self.truncate_dim}

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return self.encode_texts([""])[:0]
        with self._torch.inference_mode():
            out = _call(self.model.encode_text, list(texts), task=self.task, **self._options())
        return to_numpy_normalized(out)

    def preprocess(self, images: Sequence[Image.Image]) -> list[Image.Image]:
        return [image if image.mode == "RGB" else image.convert("RGB") for image in images]

    def encode_preprocessed(self, batch: list[Image.Image]) -> np.ndarray:
        with self._torch.inference_mode():
            out = _call(self.model.encode_image, list(batch), **self._options())
        return to_numpy_normalized(out)


__all__ = ["JinaClipEncoder"]
