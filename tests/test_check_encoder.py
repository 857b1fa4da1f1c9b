"""cotembed.testing.check_encoder: the test double and the bundled model pass it, and
each way of breaking the contract fails the check that names it."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pytest

from cotembed.encoders import load_encoder
from cotembed.errors import EncoderCheckError
from cotembed.testing import ENCODER_CHECKS, check_encoder, sample_images
from support import ColourEncoder


def test_colour_double_passes_every_check() -> None:
    encoder = ColourEncoder()
    assert check_encoder(encoder) == [name for name, _, _ in ENCODER_CHECKS if name != "images_refused"]
    assert encoder.closed


@pytest.mark.slow
def test_bundled_critters_model_passes() -> None:
    encoder = load_encoder("critters")
    assert "image_embeddings" in check_encoder(encoder)
    assert encoder.dim == 384 and encoder.input_size == 64


def test_close_false_leaves_the_encoder_usable() -> None:
    encoder = ColourEncoder()
    assert "close" not in check_encoder(encoder, close=False)
    assert not hasattr(encoder, "closed") and encoder.encode_texts(["red"]).shape == (1, 8)


def test_sample_images_cover_modes_and_sizes() -> None:
    images = sample_images()
    assert {im.mode for im in images} == {"RGB", "L", "RGBA"}
    assert len({im.size for im in images}) == len(images)


# Each double below breaks one promise of the protocol.

class Unnormalised(ColourEncoder):
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return super().encode_texts(texts) * 2.0


class WrongDim(ColourEncoder):
    dim = 16


class Float64(ColourEncoder):
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return super().encode_texts(texts).astype(np.float64)


class NotFinite(ColourEncoder):
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        out = super().encode_texts(texts)
        out[-1] = np.nan
        return out


class Constant(ColourEncoder):
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return super().encode_texts(["red"] * len(texts))


class Noisy(ColourEncoder):
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        out = super().encode_texts(texts) + np.random.default_rng().normal(0, 0.01, (len(texts), 8)).astype(np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


class SortsRows(ColourEncoder):
    """Returns rows in sorted-text order instead of input order."""

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return super().encode_texts(sorted(texts))


class BatchCentred(ColourEncoder):
    """Each text's embedding depends on its batch-mates."""

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        out = super().encode_texts(texts)
        out = out - 0.5 * out.mean(axis=0) if len(texts) > 1 else out
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


class DropsLastBatch(ColourEncoder):
    """Encodes only whole batches of ``batch_size``."""

    batch_size = 8

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        whole = len(texts) - len(texts) % self.batch_size if len(texts) > self.batch_size else len(texts)
        return super().encode_texts(list(texts)[:whole])


class AssumesRGB(ColourEncoder):
    """Forgets to convert: grey (L) and RGBA images give arrays of other shapes."""

    def preprocess(self, images):  # type: ignore[no-untyped-def]
        return np.stack([np.asarray(im.resize((8, 8)), dtype=np.float32).mean(axis=(0, 1)) / 255.0 for im in images])


class ImagesUnnormalised(ColourEncoder):
    def encode_preprocessed(self, batch: np.ndarray) -> np.ndarray:
        return super().encode_preprocessed(batch) * 3.0


class TextOnlyButTakesImages(ColourEncoder):
    modalities = frozenset({"text"})


class CloseTwiceFails(ColourEncoder):
    def close(self) -> None:
        if getattr(self, "closed", False):
            raise RuntimeError("already closed")
        self.closed = True


class ZeroBatch(ColourEncoder):
    batch_size = 0


class NaNScale(ColourEncoder):
    logit_scale = float("nan")


class AudioModality(ColourEncoder):
    modalities = frozenset({"audio"})


class NoDim(ColourEncoder):
    def __getattribute__(self, name: str):  # type: ignore[no-untyped-def]
        if name == "dim":
            raise AttributeError(name)
        return super().__getattribute__(name)


class NoClose(ColourEncoder):
    close = None  # type: ignore[assignment]


@pytest.mark.parametrize(("broken", "check", "says"), [
    (Unnormalised, "text_embeddings", "not L2-normalised"),
    (WrongDim, "text_embeddings", "expected (6, 16)"),
    (Float64, "text_embeddings", "float64"),
    (NotFinite, "text_embeddings", "non-finite values in rows [5]"),
    (Constant, "text_embeddings", "same embedding"),
    (Noisy, "text_deterministic", "encode differently twice"),
    (SortsRows, "text_order", "reversed"),
    (BatchCentred, "text_single", "alone"),
    (DropsLastBatch, "text_large_batch", "shape (8, 8), expected (10, 8)"),
    (AssumesRGB, "image_embeddings", "raised ValueError"),
    (ImagesUnnormalised, "image_embeddings", "not L2-normalised"),
    (TextOnlyButTakesImages, "images_refused", "encoded an image"),
    (CloseTwiceFails, "close", "second close() raised RuntimeError: already closed"),
    (ZeroBatch, "attributes", "batch_size=0"),
    (NaNScale, "attributes", "logit_scale=nan"),
    (AudioModality, "attributes", "modalities="),
    (NoDim, "attributes", "missing protocol member(s): dim"),
    (NoClose, "attributes", "close is not callable"),
])
def test_broken_encoders_fail_the_named_check(broken: type[ColourEncoder], check: str, says: str) -> None:
    with pytest.raises(EncoderCheckError) as info:
        check_encoder(broken())
    assert info.value.check == check
    message = str(info.value)
    assert message.startswith(f"check_encoder: {check} failed for test:colour: ")
    assert says in message
    assert isinstance(info.value, AssertionError)
