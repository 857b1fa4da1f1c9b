"""JinaClipEncoder through the real ``jina:`` path: a local folder with remote code
(``auto_map`` -> configuration/modeling files), loaded with trust_remote_code, offline."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cotembed.encoders import load_encoder
from cotembed.encoders._base import Encoder, encode_images
from cotembed.encoders._jina import JinaClipEncoder
from cotembed.errors import ModelLoadError
from cotembed.testing import check_encoder

CONFIGURATION = '''
from transformers import PretrainedConfig


class TinyJinaConfig(PretrainedConfig):
    model_type = "tiny_jina_clip"

    def __init__(self, dim=8, logit_scale_init_value=2.0, **kwargs):
        self.dim = dim
        self.logit_scale_init_value = logit_scale_init_value
        super().__init__(**kwargs)
'''

# Mirrors jina-clip's public API: encode_text(sentences, task=..., batch_size=..., ...) and
# encode_image(images, ...), returning normalised numpy arrays. No show_progress_bar on
# purpose: the adapter must only pass keyword arguments the remote code accepts.
MODELING = '''
import numpy as np
import torch
from PIL import Image
from torch import nn
from transformers import PreTrainedModel

from .configuration_tiny_jina import TinyJinaConfig


class TinyJinaModel(PreTrainedModel):
    config_class = TinyJinaConfig
    calls = []

    def __init__(self, config):
        super().__init__(config)
        self.text_proj = nn.Linear(128, config.dim, bias=False)
        self.image_proj = nn.Linear(48, config.dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(config.logit_scale_init_value))
        self.post_init()

    def _init_weights(self, module):
        pass

    def _finish(self, out, normalize_embeddings, truncate_dim, convert_to_numpy):
        if truncate_dim:
            out = out[:, :truncate_dim]
        if normalize_embeddings:
            out = torch.nn.functional.normalize(out, dim=-1)
        return out.float().numpy() if convert_to_numpy else out

    @torch.inference_mode()
    def encode_text(self, sentences, task=None, batch_size=32, convert_to_numpy=True,
                    normalize_embeddings=True, truncate_dim=None):
        type(self).calls.append(("text", len(sentences), task, batch_size))
        feats = torch.zeros(len(sentences), 128)
        for i, sentence in enumerate(sentences):
            for byte in sentence.encode():
                feats[i, byte % 128] += 1.0
        return self._finish(self.text_proj(feats), normalize_embeddings, truncate_dim, convert_to_numpy)

    @torch.inference_mode()
    def encode_image(self, images, batch_size=32, convert_to_numpy=True, normalize_embeddings=True,
                     truncate_dim=None):
        assert all(isinstance(im, Image.Image) and im.mode == "RGB" for im in images)
        type(self).calls.append(("image", len(images), None, batch_size))
        pixels = [np.asarray(im.resize((4, 4)), dtype=np.float32).reshape(-1) / 255.0 for im in images]
        out = self.image_proj(torch.from_numpy(np.stack(pixels)))
        return self._finish(out, normalize_embeddings, truncate_dim, convert_to_numpy)
'''


@pytest.fixture(scope="module")
def jina_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A remote-code model folder, weights saved by the remote class itself."""
    from transformers import AutoConfig, AutoModel

    root = tmp_path_factory.mktemp("tiny-jina")
    (root / "configuration_tiny_jina.py").write_text(CONFIGURATION)
    (root / "modeling_tiny_jina.py").write_text(MODELING)
    (root / "config.json").write_text(json.dumps({
        "model_type": "tiny_jina_clip", "dim": 8, "logit_scale_init_value": 2.0,
        "auto_map": {"AutoConfig": "configuration_tiny_jina.TinyJinaConfig",
                     "AutoModel": "modeling_tiny_jina.TinyJinaModel"},
    }))
    config = AutoConfig.from_pretrained(root, trust_remote_code=True)
    torch.manual_seed(0)
    model = AutoModel.from_config(config, trust_remote_code=True)
    with torch.no_grad():
        model.text_proj.weight.normal_()
        model.image_proj.weight.normal_()
    model.save_pretrained(root)
    assert "auto_map" in json.loads((root / "config.json").read_text())
    return root


@pytest.fixture(scope="module")
def encoder(jina_dir: Path) -> JinaClipEncoder:
    enc = load_encoder(f"jina:{jina_dir}", device="cpu", batch_size=4)
    assert isinstance(enc, JinaClipEncoder)
    return enc


def test_loads_remote_code_offline(encoder: JinaClipEncoder, jina_dir: Path) -> None:
    assert isinstance(encoder, Encoder)
    assert type(encoder.model).__name__ == "TinyJinaModel"
    assert encoder.model_key == f"jina:{jina_dir.resolve()}"
    assert encoder.modalities == frozenset({"image", "text"})
    assert encoder.logit_scale == pytest.approx(math.exp(2.0))
    assert not encoder.model.training


def test_passes_check_encoder(jina_dir: Path) -> None:
    enc = load_encoder(f"jina:{jina_dir}", device="cpu", batch_size=2)
    assert "image_embeddings" in check_encoder(enc)
    assert enc.dim == 8 and enc.input_size is None  # the tiny config has no vision_config


def test_text_embeddings_come_from_saved_weights(encoder: JinaClipEncoder, jina_dir: Path) -> None:
    from safetensors.torch import load_file

    saved = load_file(jina_dir / "model.safetensors")
    torch.testing.assert_close(encoder.model.text_proj.weight.detach(), saved["text_proj.weight"])
    texts = ["red", "blue", "a green field", "red"]
    emb = encoder.encode_texts(texts)
    assert emb.shape == (4, 8) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(emb[0], emb[3], atol=1e-6)
    assert emb[0] @ emb[1] < 0.999
    assert encoder.model.calls[-1] == ("text", 4, None, 4)
    assert encoder.encode_texts([]).shape == (0, 8)


def test_images_round_trip(encoder: JinaClipEncoder) -> None:
    images = [Image.new("RGB", (8, 8), "red"), Image.new("L", (5, 9), 200), Image.new("RGBA", (6, 6), "blue")]
    batch = encoder.preprocess(images)
    assert all(im.mode == "RGB" for im in batch)
    emb = encode_images(encoder, images)
    assert emb.shape == (3, 8) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-6)
    direct = encoder.model.encode_image([im.convert("RGB") for im in images])
    np.testing.assert_allclose(emb, direct, atol=1e-6)


def test_task_and_truncation_options(jina_dir: Path) -> None:
    enc = JinaClipEncoder(str(jina_dir), device="cpu", task="retrieval.query", truncate_dim=4)
    assert enc.model_key == f"jina:{jina_dir.resolve()}@4;task=retrieval.query"
    emb = enc.encode_texts(["red"])
    assert emb.shape == (1, 4)
    assert enc.model.calls[-1][2] == "retrieval.query"


def test_missing_dir_and_unreachable_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelLoadError, match="does not exist"):
        JinaClipEncoder("/no/such/jina-dir")
    with pytest.raises(ModelLoadError, match="jina:/path/to/model"):
        JinaClipEncoder("cotembed-test/definitely-not-a-model")


def test_remote_code_module_is_importable(encoder: JinaClipEncoder) -> None:
    """The remote class was imported from the folder (transformers_modules), not from sys.path."""
    assert type(encoder.model).__module__.startswith("transformers_modules")
    assert "modeling_tiny_jina" not in sys.modules
