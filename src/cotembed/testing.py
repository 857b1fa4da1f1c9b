"""Tools for testing cotembed and its backends: an offline random-CLIP builder and
``check_encoder``, the conformance suite every encoder (ours or a third party's) should pass.

Real weights cannot always be downloaded, but the real ``hf:`` loading path can still
be driven end to end: this saves a CLIPModel with random weights and a byte-level
tokenizer (no merges, so any text tokenizes and nothing is downloaded) exactly as a
hub model is laid out, to be loaded with ``load_encoder("hf:<dir>")``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Sequence

from cotembed.errors import EncoderCheckError, MethodCheckError

TINY_VISION = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "patch_size": 8}
TINY_TEXT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "max_position_embeddings": 40}


def _byte_alphabet() -> list[str]:
    """GPT-2/CLIP byte-level alphabet: one printable character per byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = [b for b in range(256) if b not in printable]
    return [chr(c) for c in printable] + [chr(256 + i) for i in range(len(extra))]


def build_random_clip(target: Path, vision: dict[str, Any] = TINY_VISION, text: dict[str, Any] = TINY_TEXT,
                      projection_dim: int = 16, image_size: int = 32, seed: int = 0) -> Path:
    """Save a random CLIPModel + CLIPProcessor (resize shortest edge, centre crop) to ``target``."""
    import torch
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor, CLIPTokenizer

    ImageProcessor: Any
    try:  # transformers v5 without torchvision
        from transformers import CLIPImageProcessorPil as ImageProcessor
    except ImportError:
        from transformers import CLIPImageProcessor as ImageProcessor

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for ch in _byte_alphabet():
            vocab[ch + suffix] = len(vocab)
    max_len = int(text.get("max_position_embeddings", 77))
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=max_len)
    image_processor = ImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})
    config = CLIPConfig(
        text_config={**text, "vocab_size": len(vocab), "max_position_embeddings": max_len,
                     "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1},
        vision_config={**vision, "image_size": image_size},
        projection_dim=projection_dim,
        logit_scale_init_value=math.log(100.0),
    )
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target)
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(target)
    return target


# --- Encoder conformance suite -------------------------------------------------------


SAMPLE_TEXTS = (
    "a photo of a red fox in the snow",
    "blue",
    "Ein grünes Blatt, nass vom Regen – 雨に濡れた緑の葉",
    "a very long description " + "of many small things " * 12,
    "x",
    "the colour of the sky at dusk, with two small birds",
)


def sample_images(seed: int = 0) -> list[Any]:
    """Generated PIL images of different sizes, modes (RGB, L, RGBA) and colours."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    shapes = [((32, 32), "RGB", (220, 40, 30)), ((48, 20), "L", (90, 90, 90)), ((17, 45), "RGBA", (30, 60, 210)),
              ((64, 64), "RGB", (40, 200, 60)), ((300, 7), "RGB", (240, 230, 40))]
    images = []
    for (width, height), mode, colour in shapes:
        pixels = np.clip(np.asarray(colour) + rng.normal(0, 25, (height, width, 3)), 0, 255).astype(np.uint8)
        image = Image.fromarray(pixels, "RGB")
        images.append(image.convert(mode))
    return images


class _Checker:
    """The encoder under test and the assertions the checks share."""

    def __init__(self, encoder: Any, atol: float) -> None:
        self.encoder = encoder
        self.atol = atol
        self.key = str(getattr(encoder, "model_key", type(encoder).__name__))

    def fail(self, check: str, problem: str) -> EncoderCheckError:
        return EncoderCheckError(check, self.key, problem)

    def rows(self, check: str, out: Any, n: int) -> Any:
        """``out`` must be an (n, dim) float32 array of finite unit rows."""
        import numpy as np

        dim = self.encoder.dim
        if not isinstance(out, np.ndarray):
            raise self.fail(check, f"returned {type(out).__name__}, not a numpy array")
        if out.shape != (n, dim):
            raise self.fail(check, f"returned shape {out.shape}, expected ({n}, {dim}) (n inputs, encoder.dim)")
        if out.dtype != np.float32:
            raise self.fail(check, f"returned dtype {out.dtype}, expected float32")
        if not np.isfinite(out).all():
            raise self.fail(check, f"returned non-finite values in rows {sorted({int(i) for i in np.argwhere(~np.isfinite(out))[:, 0]})}")
        norms = np.linalg.norm(out, axis=1)
        bad = np.flatnonzero(np.abs(norms - 1.0) > 1e-3)
        if bad.size:
            raise self.fail(check, f"rows are not L2-normalised (row {bad[0]} has norm {norms[bad[0]]:.6f})")
        return out

    def same(self, check: str, a: Any, b: Any, what: str) -> None:
        import numpy as np

        diff = float(np.max(np.abs(a - b))) if a.size else 0.0
        if diff > self.atol:
            raise self.fail(check, f"{what} (max difference {diff:.2e} > atol {self.atol:g})")

    def texts(self, check: str, texts: Sequence[str]) -> Any:
        return self.rows(check, self.encoder.encode_texts(list(texts)), len(texts))

    def images(self, check: str, images: Sequence[Any]) -> Any:
        return self.rows(check, self.encoder.encode_preprocessed(self.encoder.preprocess(list(images))), len(images))


def _check_attributes(c: _Checker) -> None:
    enc, name = c.encoder, "attributes"
    missing = [a for a in ("model_key", "logit_scale", "modalities", "batch_size", "dim", "input_size",
                           "encode_texts", "preprocess", "encode_preprocessed", "close") if not hasattr(enc, a)]
    if missing:
        raise c.fail(name, f"missing protocol member(s): {', '.join(missing)}")
    for method in ("encode_texts", "preprocess", "encode_preprocessed", "close"):
        if not callable(getattr(enc, method)):
            raise c.fail(name, f"{method} is not callable")

    def positive_int(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value > 0

    valid = {
        "model_key": isinstance(enc.model_key, str) and bool(enc.model_key.strip()),
        "modalities": isinstance(enc.modalities, frozenset) and bool(enc.modalities)
        and enc.modalities <= {"image", "text"},
        "batch_size": positive_int(enc.batch_size),
        "dim": positive_int(enc.dim),
        "input_size": enc.input_size is None or positive_int(enc.input_size),
        "logit_scale": enc.logit_scale is None or (isinstance(enc.logit_scale, (int, float))
                                                   and not isinstance(enc.logit_scale, bool)
                                                   and math.isfinite(enc.logit_scale) and enc.logit_scale > 0),
    }
    wants = {"model_key": "a non-empty str", "modalities": 'a non-empty frozenset of "image"/"text"',
             "batch_size": "a positive int", "dim": "a positive int", "input_size": "None or a positive int",
             "logit_scale": "None or a finite float > 0"}
    for attr, ok in valid.items():
        if not ok:
            raise c.fail(name, f"{attr}={getattr(enc, attr)!r} should be {wants[attr]}")


def _check_text_embeddings(c: _Checker) -> None:
    import numpy as np

    out = c.texts("text_embeddings", SAMPLE_TEXTS)
    if np.all(np.abs(out - out[0]) <= c.atol):
        raise c.fail("text_embeddings", "every text gets the same embedding")


def _check_text_deterministic(c: _Checker) -> None:
    first = c.texts("text_deterministic", SAMPLE_TEXTS)
    c.same("text_deterministic", first, c.texts("text_deterministic", SAMPLE_TEXTS), "the same texts encode differently twice")


def _check_text_order(c: _Checker) -> None:
    a, b = SAMPLE_TEXTS[3], SAMPLE_TEXTS[4]  # long and short: padding differs between positions
    forward = c.texts("text_order", [a, b])
    backward = c.texts("text_order", [b, a])
    c.same("text_order", forward, backward[::-1], "encoding [a, b] is not encoding [b, a] reversed")


def _check_text_single(c: _Checker) -> None:
    batch = c.texts("text_single", SAMPLE_TEXTS[:2])
    c.same("text_single", c.texts("text_single", SAMPLE_TEXTS[:1]), batch[:1], "a text alone encodes differently than in a batch")


def _check_text_large_batch(c: _Checker) -> None:
    size = c.encoder.batch_size
    texts = [f"{SAMPLE_TEXTS[i % len(SAMPLE_TEXTS)]} #{i}" for i in range(size + 2)]
    out = c.texts("text_large_batch", texts)
    for i in sorted({0, size - 1, size, size + 1}):
        c.same("text_large_batch", c.texts("text_large_batch", [texts[i]]), out[i:i + 1],
               f"row {i} of {len(texts)} texts (batch_size {size}) differs from that text encoded alone")


def _check_images(c: _Checker) -> None:
    import numpy as np

    images = sample_images()
    out = c.images("image_embeddings", images)
    if np.all(np.abs(out - out[0]) <= c.atol):
        raise c.fail("image_embeddings", "every image gets the same embedding")
    for i, image in enumerate(images):
        c.same("image_embeddings", c.images("image_embeddings", [image]), out[i:i + 1],
               f"image {i} ({image.mode} {image.size[0]}x{image.size[1]}) encodes differently alone than in a batch")


def _check_images_refused(c: _Checker) -> None:
    """A text-only encoder must fail loudly on images rather than return something."""
    try:
        c.encoder.encode_preprocessed(c.encoder.preprocess(sample_images()[:1]))
    except Exception:
        return
    raise c.fail("images_refused", "a text-only encoder (modalities without 'image') encoded an image")


def _check_close(c: _Checker) -> None:
    c.encoder.close()
    try:
        c.encoder.close()
    except Exception as exc:
        raise c.fail("close", f"a second close() raised {type(exc).__name__}: {exc}") from exc


ENCODER_CHECKS: list[tuple[str, Callable[[Any], bool], Callable[[_Checker], None]]] = [
    ("attributes", lambda e: True, _check_attributes),
    ("text_embeddings", lambda e: True, _check_text_embeddings),
    ("text_deterministic", lambda e: True, _check_text_deterministic),
    ("text_order", lambda e: True, _check_text_order),
    ("text_single", lambda e: True, _check_text_single),
    ("text_large_batch", lambda e: True, _check_text_large_batch),
    ("image_embeddings", lambda e: "image" in e.modalities, _check_images),
    ("images_refused", lambda e: "image" not in e.modalities, _check_images_refused),
    ("close", lambda e: True, _check_close),
]
"""(name, applies to this encoder?, check). Prompts are always texts, so every encoder encodes texts."""


def check_encoder(encoder: Any, *, atol: float = 1e-4, close: bool = True) -> list[str]:
    """Check that ``encoder`` meets the :class:`~cotembed.encoders._base.Encoder` contract
    the pipeline relies on; raise :class:`EncoderCheckError` naming the first failed check.

    Texts: (n, dim) float32, finite, unit rows; deterministic; order-preserving; a batch
    larger than ``batch_size`` equals its texts encoded alone. Images (if the encoder takes
    them): generated RGB/L/RGBA images of several sizes give such rows, alone or batched.
    Text-only encoders must refuse images. Last, ``close()`` twice (skipped with
    ``close=False``; the encoder is unusable after it). Returns the checks that ran.
    """
    checker = _Checker(encoder, atol)
    ran = []
    for name, applies, check in ENCODER_CHECKS:
        if (name == "close" and not close) or (name != "attributes" and not applies(encoder)):
            continue
        try:
            check(checker)
        except EncoderCheckError:
            raise
        except Exception as exc:
            raise EncoderCheckError(name, checker.key, f"raised {type(exc).__name__}: {exc}") from exc
        ran.append(name)
    return ran


# --- Scoring-method conformance suite ------------------------------------------------


CHECK_SYSTEM: dict[str, Any] = {
    "name": "check-method",
    "groups": {
        "colour": {"prompt": "something {}", "options": ["red", "green", "blue"]},
        "shape": {"prompt": "shaped like {}", "options": ["a ball", "a box"]},
        "size": {"prompt": "it is {}", "options": ["small", "large", "tiny", "huge"]},
    },
    "rules": {
        "A": {"colour": "red", "shape": "a ball", "size": "small"},
        "B": {"colour": "green", "shape": "a box", "size": ["large", "huge"]},
        "C": {"colour": "blue", "shape": "a ball", "size": "tiny"},
        "D": {"colour": ["red", "blue"], "shape": "a box", "size": "small"},
    },
}
"""A small system with one-option and several-option rules, for :func:`check_method`."""


def _hashed_vectors(texts: Sequence[str], dim: int = 24) -> Any:
    """Deterministic pseudo-embeddings of texts (seeded by their bytes): no model needed."""
    import zlib

    import numpy as np

    rows = [np.random.default_rng(zlib.crc32(t.encode("utf-8"))).normal(size=dim) for t in texts]
    return np.asarray(rows, dtype=np.float32).reshape(len(texts), dim)


def check_method(name: str, *, n_inputs: int = 40, seed: int = 0) -> list[str]:
    """Check that registered method ``name`` meets the scoring-method protocol; raise
    :class:`MethodCheckError` naming the first failed check. Returns the checks that ran.

    Declarations: a name that matches the registry, a description, parameters whose
    defaults pass their own checks, unknown parameters refused naming the accepted ones,
    JSON-ready settings. Scoring on a small system (model-free): (B, N) finite scores
    that do not depend on how the inputs are chunked, probabilities that are rows
    summing to 1, additive ``terms`` that sum to the score, per-input ``extra_stats``,
    every seed's run, ``fit``/``prepare`` returning a method of the same name, and an
    explanation (if any) that serialises to JSON. A method that uses labelled examples
    (``uses_examples``) must refuse to score before it is fitted (InputError) and is
    checked fitted on examples drawn apart from the inputs scored.
    """
    import json

    import numpy as np

    from cotembed.errors import InputError
    from cotembed.scoring import Scorer, ScoringConfig, ScoringMethod, get_method, method_class
    from cotembed.system import System

    ran: list[str] = []

    def fail(check: str, problem: str) -> MethodCheckError:
        return MethodCheckError(check, name, problem)

    def run(check: str, body: Callable[[], None]) -> None:
        try:
            body()
        except MethodCheckError:
            raise
        except Exception as exc:
            raise fail(check, f"raised {type(exc).__name__}: {exc}") from exc
        ran.append(check)

    cls = method_class(name)
    system = System.from_dict(CHECK_SYSTEM)
    config = ScoringConfig(10.0)

    def declarations() -> None:
        if cls.name != name or not cls.description:
            raise fail("declarations", f"class name {cls.name!r} / description {cls.description!r}")
        for p in cls.parameters:
            if p.problem(p.default) is not None:
                raise fail("declarations", f"default of {p.name} fails its own check: {p.problem(p.default)}")
        try:
            get_method(name, no_such_parameter=1)
        except InputError as exc:
            if "no_such_parameter" not in str(exc):
                raise fail("declarations", f"unknown parameter error does not name it: {exc}") from None
        else:
            raise fail("declarations", "an unknown parameter was accepted")
        method = get_method(name)
        json.dumps(method.settings(system.compile()), allow_nan=False)
        if not isinstance(method.with_params(), cls):
            raise fail("declarations", "with_params() does not return the same kind of method")

    run("declarations", declarations)
    scorer = Scorer.build(system, _hashed_vectors, config, (name, "cot"))
    method = scorer.method(name)
    compiled = scorer.compiled
    x = np.random.default_rng(seed).normal(size=(n_inputs, 24)).astype(np.float32)

    def examples() -> None:
        nonlocal scorer, method
        try:
            scorer.scores(x, name)
        except InputError:
            pass
        else:
            raise fail("examples", "scored before it was fitted on examples")
        support = np.random.default_rng(seed + 1).normal(size=(2 * compiled.n_classes, 24)).astype(np.float32)
        labels = np.arange(len(support)) % compiled.n_classes
        fitted = method.fit_examples([batch for _, batch in scorer.batches(support, (name,))], labels)
        if not isinstance(fitted, ScoringMethod) or fitted.name != name:
            raise fail("examples", f"fit_examples returned {fitted!r}, not a {name} method")
        json.dumps(fitted.settings(compiled), allow_nan=False)
        scorer = scorer.with_methods([fitted, scorer.method("cot")])
        method = scorer.method(name)

    if cls.uses_examples:
        run("examples", examples)

    def scores() -> None:
        whole = scorer.scores(x, name)
        if whole.shape != (n_inputs, compiled.n_classes) or not np.isfinite(whole).all():
            raise fail("scores", f"shape {whole.shape} or non-finite values; expected ({n_inputs}, {compiled.n_classes})")
        if not np.allclose(scorer.scores(x, name, chunk=7), whole, rtol=1e-5, atol=1e-6):
            raise fail("scores", "scores change with the chunk size")
        probs = method.probabilities(whole, config)
        if probs.shape != whole.shape or (probs < -1e-6).any() or not np.allclose(probs.sum(axis=1), 1, atol=1e-4):
            raise fail("scores", "probabilities are not rows of non-negative numbers summing to 1")

    def parts() -> None:
        batch = scorer.batch(x)
        terms = method.terms(batch)
        if terms is not None:
            total = sum(terms.values())
            if not np.allclose(total, method.score(batch), rtol=1e-4, atol=1e-4):
                raise fail("terms", "the terms do not add up to the score")
        for stat, values in method.extra_stats(batch).items():
            if np.shape(values) != (n_inputs,):
                raise fail("extra_stats", f"{stat} has shape {np.shape(values)}, expected ({n_inputs},)")
        for s in method.seeds():
            if method.score_seed(batch, s).shape != (n_inputs, compiled.n_classes):
                raise fail("seeds", f"seed {s}: wrong shape")

    def learning() -> None:
        batches = [batch for _, batch in scorer.batches(x, (name,))]
        labels = np.arange(n_inputs) % compiled.n_classes
        for fitted in (method.fit(batches, labels), method.fit(batches, None), method.prepare(batches)):
            if not isinstance(fitted, ScoringMethod) or fitted.name != name:
                raise fail("fit", f"returned {fitted!r}, not a {name} method")
            fitted.score(batches[0])

    def explanation() -> None:
        detail = method.explain(scorer.batch(x[:1]), [g.options for g in system.groups])
        if detail is not None:
            json.dumps(detail.to_dict(), allow_nan=False)

    run("scores", scores)
    run("terms", parts)
    run("fit", learning)
    run("explain", explanation)
    return ran
