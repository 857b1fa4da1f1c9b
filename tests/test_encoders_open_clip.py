"""OpenClipEncoder adapter logic, exercised through a small fake ``open_clip`` module
(the real package needs torchvision, which this environment lacks)."""

from __future__ import annotations

import math
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from cotembed.encoders import load_encoder
from cotembed.encoders._base import Encoder, encode_images
from cotembed.encoders._open_clip import OpenClipEncoder
from cotembed.errors import MissingDependencyError, ModelLoadError
from cotembed.testing import check_encoder


class _TinyClip(torch.nn.Module):
    """open_clip-shaped model: encode_image / encode_text return unnormalised features."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.visual = torch.nn.Linear(3 * 4 * 4, 8)
        self.token_embedding = torch.nn.EmbeddingBag(256, 8, mode="sum")
        self.logit_scale = torch.nn.Parameter(torch.tensor(math.log(100.0)))
        self.encode_calls: list[int] = []

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        assert not self.training and not torch.is_grad_enabled()
        self.encode_calls.append(len(x))
        return self.visual(x.flatten(1)) * 3.0

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        assert not self.training and not torch.is_grad_enabled()
        self.encode_calls.append(len(tokens))
        return self.token_embedding(tokens) * 5.0


def _transform(image: Image.Image) -> torch.Tensor:
    arr = np.asarray(image.convert("RGB").resize((4, 4)), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1)


def _tokenize(texts: list[str]) -> torch.Tensor:
    out = torch.zeros(len(texts), 12, dtype=torch.long)
    for i, text in enumerate(texts):
        codes = list(text.encode())[:12]
        out[i, : len(codes)] = torch.tensor(codes)
    return out


@pytest.fixture()
def fake_open_clip(monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    calls: dict[str, Any] = {}
    module = types.ModuleType("open_clip")

    def create_model_and_transforms(arch: str, pretrained: str | None = None) -> tuple[Any, Any, Any]:
        if arch == "NoSuchArch":
            raise RuntimeError(f"Model config for {arch} not found.")
        calls["create"] = (arch, pretrained)
        calls["model"] = _TinyClip().train()
        if "image_size" in calls:  # open_clip towers carry the size their transform resizes to
            calls["model"].visual.image_size = calls["image_size"]
        return calls["model"], "train-transform", _transform

    def get_tokenizer(arch: str) -> Any:
        calls["tokenizer"] = arch
        return _tokenize

    module.create_model_and_transforms = create_model_and_transforms  # type: ignore[attr-defined]
    module.get_tokenizer = get_tokenizer  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "open_clip", module)
    return types.SimpleNamespace(calls=calls)


def test_loads_and_reports_identity(fake_open_clip: types.SimpleNamespace) -> None:
    enc = load_encoder("open_clip:ViT-T-1:laion_fake", device="cpu", batch_size=3)
    assert isinstance(enc, OpenClipEncoder) and isinstance(enc, Encoder)
    assert fake_open_clip.calls["create"] == ("ViT-T-1", "laion_fake")
    assert fake_open_clip.calls["tokenizer"] == "ViT-T-1"
    assert enc.model_key == "open_clip:ViT-T-1:laion_fake"
    assert enc.logit_scale == pytest.approx(100.0)
    assert enc.modalities == frozenset({"image", "text"})
    assert not enc.model.training


def test_passes_check_encoder(fake_open_clip: types.SimpleNamespace) -> None:
    enc = load_encoder("open_clip:ViT-T-1:laion_fake", device="cpu", batch_size=3)
    assert "image_embeddings" in check_encoder(enc)
    assert enc.dim == 8


def test_input_size_from_the_visual_tower(fake_open_clip: types.SimpleNamespace) -> None:
    """open_clip keeps ``visual.image_size`` as an int or an (h, w) pair."""
    assert OpenClipEncoder("ViT-T-1:x", device="cpu").input_size is None
    for size, expected in ((224, 224), ((256, 384), 384)):
        fake_open_clip.calls["image_size"] = size
        assert OpenClipEncoder("ViT-T-1:x", device="cpu").input_size == expected


def test_checkpoint_path_and_hf_hub_keys(fake_open_clip: types.SimpleNamespace, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "ckpt.pt").write_bytes(b"weights")
    monkeypatch.chdir(tmp_path)
    enc = OpenClipEncoder("ViT-T-1:./ckpt.pt", device="cpu")
    resolved = str((tmp_path / "ckpt.pt").resolve())
    assert fake_open_clip.calls["create"] == ("ViT-T-1", resolved)
    assert enc.model_key == f"open_clip:ViT-T-1:{resolved}"
    hub = OpenClipEncoder("hf-hub:org/some-clip", device="cpu")
    assert fake_open_clip.calls["create"] == ("hf-hub:org/some-clip", None)
    assert hub.model_key == "open_clip:hf-hub:org/some-clip"


def test_no_pretrained_tag_warns(fake_open_clip: types.SimpleNamespace) -> None:
    with pytest.warns(UserWarning, match="random"):
        enc = OpenClipEncoder("ViT-T-1", device="cpu")
    assert enc.model_key == "open_clip:ViT-T-1"


def test_texts_are_batched_and_normalised(fake_open_clip: types.SimpleNamespace) -> None:
    enc = OpenClipEncoder("ViT-T-1:x", device="cpu", batch_size=2)
    texts = ["red", "blue", "green", "a long sentence", "z"]
    emb = enc.encode_texts(texts)
    model = fake_open_clip.calls["model"]
    assert model.encode_calls == [2, 2, 1]
    expected = model.token_embedding(_tokenize(texts)).detach().numpy()
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert emb.dtype == np.float32 and emb.shape == (5, 8)
    np.testing.assert_allclose(emb, expected, atol=1e-6)
    assert enc.encode_texts([]).shape == (0, 8)


def test_images_use_eval_transform(fake_open_clip: types.SimpleNamespace) -> None:
    enc = OpenClipEncoder("ViT-T-1:x", device="cpu")
    images = [Image.new("RGB", (9, 7), c) for c in ("red", "blue", "white")]
    batch = enc.preprocess(images)
    assert tuple(batch.shape) == (3, 3, 4, 4)
    emb = encode_images(enc, images)
    model = fake_open_clip.calls["model"]
    expected = model.visual(torch.stack([_transform(i) for i in images]).flatten(1)).detach().numpy()
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(emb, expected, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-6)


def test_unknown_arch_is_a_load_error(fake_open_clip: types.SimpleNamespace) -> None:
    with pytest.raises(ModelLoadError, match="NoSuchArch.*list_pretrained"):
        OpenClipEncoder("NoSuchArch:tag", device="cpu")


def test_missing_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "open_clip", None)
    with pytest.raises(MissingDependencyError) as info:
        load_encoder("open_clip:ViT-B-32:laion2b_s34b_b79k")
    assert "open_clip_torch" in str(info.value)
    assert "pip install 'cotembed[open_clip]'" in str(info.value)
