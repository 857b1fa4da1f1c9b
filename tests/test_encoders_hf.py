"""HFClipEncoder against a tiny random CLIP (and SigLIP) built locally."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cotembed.encoders import load_encoder
from cotembed.encoders._base import Encoder, encode_images
from cotembed.encoders._hf import HFClipEncoder, _embeddings
from cotembed.errors import CotembedError, ModelLoadError
from cotembed.testing import check_encoder

TEXTS = ["a red square", "a blue circle", "a green triangle on a white background", "x", "yellow"]


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    solid = [Image.new("RGB", (40, 30), c) for c in ("red", "blue", "green")]
    noise = [Image.fromarray(rng.integers(0, 255, (24, 48, 3), dtype=np.uint8)) for _ in range(2)]
    return solid + noise


@pytest.fixture(scope="module")
def encoder(tiny_clip_dir: Path) -> HFClipEncoder:
    return HFClipEncoder(str(tiny_clip_dir), device="cpu", batch_size=2)


def _assert_unit_rows(x: np.ndarray, n: int, d: int) -> None:
    assert x.shape == (n, d) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)


def test_identity_and_protocol(encoder: HFClipEncoder, tiny_clip_dir: Path) -> None:
    assert isinstance(encoder, Encoder)
    assert encoder.model_key == f"hf:{tiny_clip_dir.resolve()}"
    assert encoder.modalities == frozenset({"image", "text"})
    assert encoder.batch_size == 2
    assert encoder.logit_scale == pytest.approx(100.0, rel=1e-4)


def test_passes_check_encoder(tiny_clip_dir: Path) -> None:
    enc = load_encoder(f"hf:{tiny_clip_dir}", device="cpu", batch_size=2)
    assert check_encoder(enc)[-1] == "close"
    assert enc.dim == 16 and enc.input_size == 32
    with pytest.raises(CotembedError, match="was closed"):
        enc.encode_texts(["red"])


def test_matches_clip_forward(encoder: HFClipEncoder) -> None:
    """Our embeddings equal the projected, normalised embeddings of CLIPModel.forward."""
    texts, images = TEXTS[:3], _images()
    tokens = encoder.tokenizer(texts, padding=True, return_tensors="pt")
    pixels = encoder.image_processor(images=images, return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        ref = encoder.model(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"],
                            pixel_values=pixels)
    txt = encoder.encode_texts(texts)
    img = encode_images(encoder, images)
    _assert_unit_rows(txt, 3, 16)
    _assert_unit_rows(img, len(images), 16)
    np.testing.assert_allclose(txt, ref.text_embeds.numpy(), atol=1e-5)
    np.testing.assert_allclose(img, ref.image_embeds.numpy(), atol=1e-5)
    np.testing.assert_allclose(encoder.logit_scale * img @ txt.T, ref.logits_per_image.numpy(), rtol=1e-4, atol=1e-3)


def test_batching_does_not_change_results(encoder: HFClipEncoder, tiny_clip_dir: Path) -> None:
    big = HFClipEncoder(str(tiny_clip_dir), device="cpu", batch_size=64)
    np.testing.assert_allclose(encoder.encode_texts(TEXTS), big.encode_texts(TEXTS), atol=1e-5)
    one_by_one = np.concatenate([encoder.encode_texts([t]) for t in TEXTS])
    np.testing.assert_allclose(one_by_one, big.encode_texts(TEXTS), atol=1e-5)
    assert encoder.encode_texts([]).shape == (0, 16)


def test_different_inputs_give_different_embeddings(encoder: HFClipEncoder) -> None:
    img = encode_images(encoder, _images())
    sims = img @ img.T
    assert np.all(sims[~np.eye(len(img), dtype=bool)] < 0.9999)
    txt = encoder.encode_texts(TEXTS)
    assert np.all((txt @ txt.T)[~np.eye(len(TEXTS), dtype=bool)] < 0.9999)


def test_preprocess_is_thread_safe(encoder: HFClipEncoder) -> None:
    images = _images()
    expected = encoder.encode_preprocessed(encoder.preprocess(images))
    with ThreadPoolExecutor(4) as pool:
        batches = list(pool.map(lambda _: encoder.preprocess(images), range(8)))
    for batch in batches:
        np.testing.assert_allclose(encoder.encode_preprocessed(batch), expected, atol=1e-6)


def test_relative_path_gives_same_key(tiny_clip_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tiny_clip_dir.parent)
    enc = load_encoder(f"hf:./{tiny_clip_dir.name}", device="cpu")
    assert enc.model_key == f"hf:{tiny_clip_dir.resolve()}"


def test_missing_directory_fails_fast() -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        HFClipEncoder("./no/such/model-dir")


def test_embeddings_accepts_v4_and_v5_outputs() -> None:
    """v4 returned a tensor; v5 a ModelOutput with the projection in pooler_output."""
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    t = torch.ones(2, 4)
    assert _embeddings(t, "image") is t
    out = BaseModelOutputWithPooling(last_hidden_state=torch.zeros(2, 3, 8), pooler_output=t)
    assert _embeddings(out, "image") is t
    assert _embeddings((torch.zeros(2, 3, 8), t), "text") is t


def test_siglip_pads_to_max_length(tmp_path: Path, tiny_clip_dir: Path) -> None:
    """SigLIP models get fixed-length padding, so a text's embedding ignores its batch-mates."""
    from transformers import AutoProcessor, SiglipConfig, SiglipModel

    config = SiglipConfig(
        text_config={"vocab_size": 520, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "max_position_embeddings": 24, "pad_token_id": 1,
                     "eos_token_id": 1, "bos_token_id": 0},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                       "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
    )
    torch.manual_seed(0)
    SiglipModel(config).save_pretrained(tmp_path)
    AutoProcessor.from_pretrained(tiny_clip_dir).save_pretrained(tmp_path)
    enc = HFClipEncoder(str(tmp_path), device="cpu", batch_size=8)
    seen: list[tuple[object, tuple[int, ...]]] = []
    tokenizer = enc.tokenizer

    def spy(texts: list[str], **kwargs: object) -> object:
        out = tokenizer(texts, **kwargs)
        seen.append((kwargs.get("padding"), tuple(out["input_ids"].shape)))
        return out

    enc.tokenizer = spy
    alone = enc.encode_texts(["red"])
    together = enc.encode_texts(["red", "a much longer description of something blue"])
    assert seen == [("max_length", (1, 24)), ("max_length", (2, 24))]
    np.testing.assert_allclose(alone[0], together[0], atol=1e-5)
    img = encode_images(enc, _images())
    _assert_unit_rows(img, 5, 32)
    assert enc.logit_scale is not None and enc.logit_scale > 0
