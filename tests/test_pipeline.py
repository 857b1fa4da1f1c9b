"""Streaming encoding: cache reuse, resuming after an interruption, bad images."""

from __future__ import annotations

import sqlite3
import threading

import numpy as np
import pytest

from cotembed.cache import EmbeddingCache, NoCache
from cotembed.data import collect_samples
from cotembed.errors import InputError
from cotembed.pipeline import embed_texts, stream_embeddings
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
    import io

    from PIL import Image

    from cotembed.pipeline import _decode_image

    buf = io.BytesIO()
    Image.new("RGB", (1600, 1200), (10, 200, 30)).save(buf, format="JPEG")
    full = _decode_image(buf.getvalue())
    small = _decode_image(buf.getvalue(), min_side=224)
    assert full.size == (1600, 1200)
    assert small.size == (400, 300) and min(small.size) >= 224  # 1/4 DCT scale; 1/8 would be too small
    assert small.mode == "RGB"
