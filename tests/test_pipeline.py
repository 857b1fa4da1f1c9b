"""Streaming encoding: cache reuse, resuming after an interruption, bad images."""

from __future__ import annotations

import io
import sqlite3
import threading

import numpy as np
import pytest
from PIL import Image

from cotembed._pipeline import KEEP_FACTOR, decode_image, embed_texts, stream_embeddings
from cotembed.cache import EmbeddingCache, NoCache
from cotembed.data import collect_samples
from cotembed.errors import InputError
from support import ColourEncoder, make_image_folder


def run(samples, encoder, store, **kw):
    batches = list(stream_embeddings(samples, encoder, store, **kw))
    return batches, [s.source for b in batches for s in b.samples], [e for b in batches for e in b.errors]


def test_second_run_encodes_nothing(tmp_path):
    samples = collect_samples([make_image_folder(tmp_path / "data", per_class=3)])
    cache = EmbeddingCache(tmp_path / "cache.sqlite")
    first = ColourEncoder()
    batches, sources, errors = run(samples, first, cache)
    assert first.images_encoded == 12 and not errors
    assert sources == [s.source for s in samples]  # input order kept
    second = ColourEncoder()
    again, _, _ = run(samples, second, cache)
    assert second.images_encoded == 0
    np.testing.assert_array_equal(np.concatenate([b.embeddings for b in batches]), np.concatenate([b.embeddings for b in again]))


def test_other_model_key_does_not_share_cache(tmp_path):
    samples = collect_samples([make_image_folder(tmp_path / "data", per_class=1)])
    cache = EmbeddingCache(tmp_path / "cache.sqlite")
    run(samples, ColourEncoder("a"), cache)
    other = ColourEncoder("b")
    run(samples, other, cache)
    assert other.images_encoded == 4


def test_interrupted_run_keeps_finished_batches_and_resumes(tmp_path):
    samples = collect_samples([make_image_folder(tmp_path / "data", per_class=4)])  # 16 images, batches of 4
    path = tmp_path / "cache.sqlite"

    class Crashing(ColourEncoder):
        def encode_preprocessed(self, batch):
            if self.calls == 2:
                raise KeyboardInterrupt  # killed during the third batch
            return super().encode_preprocessed(batch)

    with pytest.raises(KeyboardInterrupt):
        run(samples, Crashing(), EmbeddingCache(path))
    assert EmbeddingCache(path).count("test:colour") == 8
    resumed = ColourEncoder()
    _, sources, _ = run(samples, resumed, EmbeddingCache(path))
    assert resumed.images_encoded == 8 and len(sources) == 16


def test_corrupt_and_missing_images_are_reported_and_skipped(tmp_path):
    root = make_image_folder(tmp_path / "data", per_class=2)
    (root / "red-thing" / "broken.png").write_bytes(b"\x89PNG not really")
    (root / "blue-thing" / "empty.jpg").write_bytes(b"")
    samples = collect_samples([root]) + collect_samples([tmp_path / "gone.png"])
    encoder = ColourEncoder()
    _, sources, errors = run(samples, encoder, NoCache())
    assert len(sources) == 8 and encoder.images_encoded == 8
    failed = {e.source.split("/")[-1]: e.error for e in errors}
    assert set(failed) == {"broken.png", "empty.jpg", "gone.png"}
    assert failed["broken.png"].startswith("cannot decode image")
    assert failed["gone.png"].startswith("cannot read")


def test_image_that_fails_preprocessing_is_isolated(tmp_path):
    samples = collect_samples([make_image_folder(tmp_path / "data", per_class=2)])

    class Picky(ColourEncoder):
        def preprocess(self, images):
            if any(int(np.asarray(img)[0, 0, 0]) > 150 and int(np.asarray(img)[0, 0, 1]) < 100 for img in images):  # red
                raise ValueError("unsupported pixels")
            return super().preprocess(images)

    _, sources, errors = run(samples, Picky(), NoCache())
    assert len(errors) == 2 and all("red-thing" in e.source and "unsupported pixels" in e.error for e in errors)
    assert len(sources) == 6


def test_text_only_encoder_rejects_images(tmp_path):
    samples = collect_samples([make_image_folder(tmp_path / "data", per_class=1)])
    encoder = ColourEncoder()
    encoder.modalities = frozenset({"text"})
    with pytest.raises(InputError, match="cannot encode image inputs"):
        run(samples, encoder, NoCache())


def test_text_embeddings_cached_once_per_model_and_prompt(tmp_path):
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    enc = ColourEncoder()
    first = embed_texts(["a red thing", "a blue thing", "a red thing"], enc, cache)
    assert enc.texts_encoded == 2 and first.shape == (3, 8)
    again = embed_texts(["a blue thing", "a red thing"], enc, cache)
    assert enc.texts_encoded == 2
    np.testing.assert_array_equal(again[1], first[0])


def test_concurrent_readers_share_the_cache(tmp_path):
    path = tmp_path / "c.sqlite"
    writer = EmbeddingCache(path)
    vectors = {f"k{i}": np.full(8, i, dtype=np.float32) for i in range(200)}
    writer.put_many("m", "image", vectors)
    results, failures = [], []

    def read():
        try:
            reader = EmbeddingCache(path)
            for _ in range(20):
                results.append(len(reader.get_many("m", "image", list(vectors))))
            reader.close()
        except sqlite3.Error as exc:  # pragma: no cover - the failure being tested for
            failures.append(exc)

    threads = [threading.Thread(target=read) for _ in range(4)]
    for t in threads:
        t.start()
    writer.put_many("m", "image", {"extra": np.zeros(8, dtype=np.float32)})
    for t in threads:
        t.join()
    assert not failures and results and all(n == 200 for n in results)
    assert writer.count() == 201


def test_jpeg_decoded_at_reduced_scale_that_still_covers_the_model_input():
    buf = io.BytesIO()
    Image.new("RGB", (1600, 1200), (10, 200, 30)).save(buf, format="JPEG")
    full = decode_image(io.BytesIO(buf.getvalue()))
    small = decode_image(io.BytesIO(buf.getvalue()), min_side=224)
    assert full.size == (1600, 1200)
    assert small.size == (400, 300) and min(small.size) >= 224  # 1/4 DCT scale; 1/8 would be too small
    assert small.mode == "RGB"


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "I;16", "CMYK"])
def test_large_images_are_shrunk_to_twice_the_model_input_in_any_mode(mode):
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (1500, 2400, 3), dtype=np.uint8)).convert(mode)
    buf = io.BytesIO()
    img.save(buf, format="TIFF" if mode == "CMYK" else "PNG")
    out = decode_image(io.BytesIO(buf.getvalue()), keep_side=448)
    assert out.mode == "RGB" and out.size == (717, 448)  # aspect kept, short side 2 x 224
    small = decode_image(io.BytesIO(buf.getvalue()), keep_side=4096)
    assert small.size == (2400, 1500)  # never enlarged


def test_shrinking_keeps_what_the_model_sees():
    """A gradient shrunk to twice the model input, then resized by the model's own
    preprocessing, matches resizing the full image directly."""
    y, x = np.mgrid[0:1800, 0:2400]
    pixels = np.stack([x * 255 // 2400, y * 255 // 1800, (x + y) * 255 // 4200], axis=-1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    direct = np.asarray(Image.fromarray(pixels).resize((224, 168), Image.Resampling.BICUBIC), dtype=np.float32)
    shrunk = decode_image(io.BytesIO(buf.getvalue()), keep_side=448)
    via = np.asarray(shrunk.resize((224, 168), Image.Resampling.BICUBIC), dtype=np.float32)
    assert np.abs(direct - via).max() <= 2.0


def test_pipeline_hands_the_encoder_shrunk_images(tmp_path):
    (tmp_path / "data").mkdir()
    for i, size in enumerate([(1200, 900), (40, 30)]):
        Image.new("RGB", size, (200, 10, 10)).save(tmp_path / "data" / f"{i}.png")

    class Sized(ColourEncoder):
        input_size = 32

        def preprocess(self, images):
            self.seen = [img.size for img in images]
            return super().preprocess(images)

    encoder = Sized()
    run(collect_samples([tmp_path / "data"]), encoder, NoCache())
    short = KEEP_FACTOR * 32
    assert encoder.seen == [(round(1200 * short / 900), short), (40, 30)]


def test_images_above_the_pixel_cap_are_refused_per_file_and_the_run_goes_on(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # restored afterwards
    root = make_image_folder(tmp_path / "data", per_class=1)
    big = root / "red-thing" / "big.png"
    Image.new("RGB", (2000, 1500), (200, 10, 10)).save(big)  # 3 MP
    huge = root / "red-thing" / "huge.png"
    Image.new("RGB", (3000, 3000), (200, 10, 10)).save(huge)  # 9 MP: above twice the cap, PIL's own refusal
    monkeypatch.setenv("COTEMBED_MAX_PIXELS", "2_000_000")
    encoder = ColourEncoder()
    _, sources, errors = run(collect_samples([root]), encoder, NoCache())
    assert len(sources) == 4 and encoder.images_encoded == 4
    failed = {e.source: e.error for e in errors}
    assert set(failed) == {str(big), str(huge)}
    assert failed[str(big)].startswith("image too large: big.png is 2000x1500 = 3.0 MP, above the cap of 2.0 MP; ")
    assert failed[str(huge)].startswith("image too large: huge.png is 9.0 MP, above the cap of 2.0 MP; ")
    for error in failed.values():
        assert "COTEMBED_MAX_PIXELS" in error and "_io." not in error
    assert Image.MAX_IMAGE_PIXELS == 2_000_000  # PIL refuses nothing the cap allows
    _, sources, errors = run(collect_samples([root]), ColourEncoder(), NoCache(), max_pixels=10_000_000)
    assert len(sources) == 6 and not errors


@pytest.mark.parametrize("value", ["lots", "1.5", "0", "-3"])
def test_a_bad_pixel_cap_is_an_input_error(tmp_path, monkeypatch, value):
    samples = collect_samples([make_image_folder(tmp_path / "data", per_class=1)])
    monkeypatch.setenv("COTEMBED_MAX_PIXELS", value)
    with pytest.raises(InputError, match="COTEMBED_MAX_PIXELS|max_pixels"):
        run(samples, ColourEncoder(), NoCache())


def test_cached_images_are_not_decoded_again(tmp_path):
    samples = collect_samples([make_image_folder(tmp_path / "data", per_class=2)])
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    run(samples, ColourEncoder(), cache)

    class Lazy(ColourEncoder):
        @property
        def input_size(self):
            raise AssertionError("a cached run must not ask the model anything")

    # a cap of one pixel refuses every image that is decoded; none is
    _, sources, errors = run(samples, Lazy(), cache, max_pixels=1)
    assert len(sources) == 8 and not errors


def test_decode_errors_name_the_file(tmp_path):
    root = make_image_folder(tmp_path / "data", per_class=1)
    good = root / "red-thing" / "0.png"
    truncated = root / "red-thing" / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:-200])
    garbage = root / "red-thing" / "garbage.png"
    garbage.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    _, _, errors = run(collect_samples([root]), ColourEncoder(), NoCache())
    failed = {e.source: e.error for e in errors}
    assert set(failed) == {str(truncated), str(garbage)}
    for source, error in failed.items():
        name = source.rsplit("/", 1)[-1]
        assert error.startswith(f"cannot decode image: {name}") and "_io." not in error and "0x" not in error
    assert "garbage.png is not in an image format PIL can read" in failed[str(garbage)]


@pytest.mark.parametrize("size", [0, -1, 4097, 2.5, True])
def test_batch_size_out_of_range_is_an_input_error(tmp_path, size):
    samples = collect_samples([make_image_folder(tmp_path / "data", per_class=1)])
    with pytest.raises(InputError, match="batch size must be a whole number from 1 to 4096"):
        run(samples, ColourEncoder(), NoCache(), batch_size=size)


def test_encoder_batch_size_out_of_range_names_the_model(tmp_path):
    encoder = ColourEncoder()
    encoder.batch_size = 100_000
    with pytest.raises(InputError, match="model test:colour's batch size must be"):
        embed_texts(["a"], encoder, NoCache())
    assert embed_texts(["a", "b"], ColourEncoder(), NoCache()).shape == (2, 8)
    batches = list(stream_embeddings(collect_samples([make_image_folder(tmp_path / "d", per_class=1)]), encoder, NoCache(), 4096))
    assert sum(len(b.samples) for b in batches) == 4
