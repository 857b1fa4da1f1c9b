"""transformers CLIP/SigLIP-style dual encoders (``hf:<hub id or local dir>``).

Works with any model whose class offers ``get_image_features`` / ``get_text_features``
(CLIP, SigLIP/SigLIP2, MetaCLIP, ALIGN, AltCLIP, Chinese-CLIP, ...). In transformers v5
those methods return a ``BaseModelOutputWithPooling`` whose ``pooler_output`` already holds
the *projected* embedding; v4 returned that tensor directly. ``_embeddings`` accepts both.
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

DEFAULT_BATCH_SIZE = 32


def model_key(argument: str, options: Mapping[str, Any]) -> str:
    """The cache key, without loading: local directories by absolute path, hub ids as given."""
    return resolve_local_or_hub(argument, "hf")[1]


def _explicit_params(fn: Callable[..., Any]) -> set[str]:
    """Named parameters of ``fn`` (so tokenizer/processor extras are not forwarded blindly)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return {"input_ids", "attention_mask", "pixel_values"}
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {p.name for p in params if p.kind in kinds}


def _embeddings(out: Any, kind: str) -> Any:
    """Tensor (transformers v4) or ModelOutput/tuple (v5) -> (B, D) embedding tensor."""
    if hasattr(out, "ndim"):
        return out
    for name in (f"{kind}_embeds", "pooler_output"):
        value = getattr(out, name, None)
        if value is not None:
            return value
    if isinstance(out, (tuple, list)) and len(out) > 1:
        return out[1]  # (last_hidden_state, pooler_output, ...) when return_dict=False
    raise ModelLoadError(f"get_{kind}_features returned {type(out).__name__}, not an embedding")


class HFClipEncoder:
    """A transformers dual encoder: ``AutoModel`` + ``AutoProcessor`` from a hub id or directory."""

    modalities = frozenset({"image", "text"})

    def __init__(self, argument: str, *, device: str | None = None, batch_size: int | None = None) -> None:
        torch = require_torch("hf")
        try:
            import transformers
        except ImportError as exc:
            raise MissingDependencyError("transformers", "hf") from exc
        self._torch = torch
        source, self.model_key = resolve_local_or_hub(argument, "hf")
        self.device = resolve_device(device, "hf")
        self.batch_size = int(batch_size or DEFAULT_BATCH_SIZE)
        try:
            model = transformers.AutoModel.from_pretrained(source)
            processor = transformers.AutoProcessor.from_pretrained(source)
        except (OSError, ValueError, KeyError, ImportError) as exc:
            raise load_error("hf", argument, source, exc) from exc
        if not (hasattr(model, "get_image_features") and hasattr(model, "get_text_features")):
            raise ModelLoadError(f"{self.model_key} ({type(model).__name__}) is not an image-text dual encoder")
        self.model = model.to(self.device).eval()
        self.tokenizer = getattr(processor, "tokenizer", None) or processor
        self.image_processor = getattr(processor, "image_processor", None) or processor
        scale = getattr(model, "logit_scale", None)
        self.logit_scale: float | None = float(scale.detach().float().exp().item()) if scale is not None else None
        config = model.config
        text_config = getattr(config, "text_config", config)
        self._max_length: int | None = getattr(text_config, "max_position_embeddings", None)
        # SigLIP was trained on texts padded to a fixed length without an attention mask.
        self._padding: bool | str = "max_length" if "siglip" in str(config.model_type) else True
        vision_size = getattr(getattr(config, "vision_config", config), "image_size", None)
        self.input_size: int | None = int(vision_size) if isinstance(vision_size, int) else None
        self._text_params = _explicit_params(model.get_text_features)
        self._image_params = _explicit_params(model.get_image_features)

    dim = cached_property(probe_dim)

    def close(self) -> None:
        release(self, "model")

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return self.encode_texts([""])[:0]
        parts = [self._encode_text_batch(list(texts[i:i + self.batch_size]))
                 for i in range(0, len(texts), self.batch_size)]
        return np.concatenate(parts, axis=0)

    def _encode_text_batch(self, texts: list[str]) -> np.ndarray:
        kwargs: dict[str, Any] = {"padding": self._padding, "truncation": True, "return_tensors": "pt"}
        if self._max_length:
            kwargs["max_length"] = self._max_length
        tokens = self.tokenizer(texts, **kwargs)
        inputs = {k: v.to(self.device) for k, v in tokens.items() if k in self._text_params}
        with self._torch.inference_mode():
            out = self.model.get_text_features(**inputs)
        return to_numpy_normalized(_embeddings(out, "text"))

    def preprocess(self, images: Sequence[Image.Image]) -> Any:
        """Image processor only: stateless, so safe in a worker thread."""
        return self.image_processor(images=list(images), return_tensors="pt")

    def encode_preprocessed(self, batch: Any) -> np.ndarray:
        inputs = {k: v.to(self.device) for k, v in batch.items() if k in self._image_params}
        with self._torch.inference_mode():
            out = self.model.get_image_features(**inputs)
        return to_numpy_normalized(_embeddings(out, "image"))


__all__ = ["HFClipEncoder"]
