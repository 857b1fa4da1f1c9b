"""Reference decode (the default) vs fast decode: what reaches the model's preprocessing,
and that the two never share cached embeddings."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cotembed._pipeline import FAST_DECODE_ENV, KEEP_FACTOR, resolve_fast_decode, stream_embeddings
from cotembed.cache import EmbeddingCache, NoCache
from cotembed.data import collect_samples
from cotembed.errors import InputError
from support import ColourEncoder


class Recording(ColourEncoder):
    """Keeps the decoded images the pipeline hands to preprocessing."""

    input_size = 32

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Image.Image] = []

    def preprocess(self, images):
        self.seen.extend(img.copy() for img in images)
        return super().preprocess(images)


def noisy(size: tuple[int, int], seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def run(folder, encoder, store=None, **kw):
    return [s for b in stream_embeddings(collect_samples([folder]), encoder, store or NoCache(), **kw) for s in b.samples]


def test_reference_decode_hands_ordinary_images_over_exactly_as_decoded(tmp_path):
    """A JPEG up to KEEP_FACTOR x the input size reaches preprocessing pixel for pixel as
    PIL decodes it in full, as the model's own pipeline would see it (no draft, no shrink),
    where the fast decode drafts it."""
    (tmp_path / "d").mkdir()
    side = KEEP_FACTOR * 32
    noisy((side + 20, side), 1).save(tmp_path / "d" / "a.jpg", quality=90)
    noisy((60, 50), 2).save(tmp_path / "d" / "b.png")
    encoder = Recording()
    run(tmp_path / "d", encoder)
    for img, name in zip(encoder.seen, ["a.jpg", "b.png"]):
        with Image.open(tmp_path / "d" / name) as original:
            assert np.array_equal(np.asarray(img), np.asarray(original.convert("RGB")))
    fast = Recording()
    run(tmp_path / "d", fast, fast_decode=True)
    assert fast.seen[0].size == ((side + 20) // 2, side // 2)  # the JPEG drafted at 1/2 scale (both sides still >= 32)
    assert fast.seen[1].size == (60, 50)  # PNGs have no draft mode


def test_fast_decode_drafts_to_the_smallest_scale_that_covers_the_input(tmp_path):
    (tmp_path / "d").mkdir()
    noisy((600, 400), 1).save(tmp_path / "d" / "a.jpg", quality=90)
    encoder = Recording()
    run(tmp_path / "d", encoder, fast_decode=True)
    assert encoder.seen[0].size == (75, 50)  # decoded at 1/8 DCT scale: the smallest that keeps both sides >= 32


def test_reference_decode_still_bounds_camera_sized_images(tmp_path):
    (tmp_path / "d").mkdir()
    noisy((1200, 900), 1).save(tmp_path / "d" / "a.png")
    encoder = Recording()
    run(tmp_path / "d", encoder)
    short = KEEP_FACTOR * 32
    assert encoder.seen[0].size == (round(1200 * short / 900), short)


def test_the_modes_never_read_each_others_embeddings(tmp_path):
    (tmp_path / "d").mkdir()
    noisy((300, 200), 1).save(tmp_path / "d" / "a.jpg", quality=90)
    cache = EmbeddingCache(tmp_path / "cache.sqlite")
    reference = ColourEncoder()
    run(tmp_path / "d", reference, cache)
    fast = ColourEncoder()
    run(tmp_path / "d", fast, cache, fast_decode=True)
    again = ColourEncoder()
    run(tmp_path / "d", again, cache, fast_decode=True)
    cache.close()
    assert (reference.images_encoded, fast.images_encoded, again.images_encoded) == (1, 1, 0)


@pytest.mark.parametrize(("value", "expected"), [("1", True), ("yes", True), ("0", False), ("", False), ("off", False)])
def test_environment_variable(value, expected, monkeypatch):
    monkeypatch.setenv(FAST_DECODE_ENV, value)
    assert resolve_fast_decode() is expected
    assert resolve_fast_decode(False) is False  # the argument wins


def test_a_bad_environment_value_is_an_input_error(monkeypatch):
    monkeypatch.setenv(FAST_DECODE_ENV, "fast")
    with pytest.raises(InputError, match=FAST_DECODE_ENV):
        resolve_fast_decode()


def test_cli_flag_applies_to_the_verb_and_is_restored(tmp_path, monkeypatch):
    """--fast-decode sets the mode for one verb; the next call in the same process is back to the reference."""
    import argparse

    from cotembed.cli._common import Resources

    monkeypatch.delenv(FAST_DECODE_ENV, raising=False)
    args = argparse.Namespace(fast_decode=True, cache=None, no_cache=True)
    with Resources(args):
        assert resolve_fast_decode() is True
    assert resolve_fast_decode() is False
