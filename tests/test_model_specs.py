"""Model spec strings: parsing errors and loading through the registry."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from cotembed.encoders import BACKENDS, load_encoder, parse_spec
from cotembed.encoders.hf import HFClipEncoder
from cotembed.errors import InputError, ModelLoadError, UnknownModelError


def test_unknown_scheme_lists_known_ones() -> None:
    with pytest.raises(UnknownModelError) as info:
        parse_spec("clip:ViT-B-32")
    message = str(info.value)
    assert "'clip'" in message
    for scheme in ("hf:", "open_clip:", "jina:", "st:", "jina-api:", "minilm"):
        assert scheme in message
    assert info.value.exit_code == 2


@pytest.mark.parametrize("spec", ["hf:", "hf", "open_clip:", "jina-api:"])
def test_missing_argument(spec: str) -> None:
    with pytest.raises(InputError, match="needs an argument, e.g. "):
        parse_spec(spec)


def test_minilm_takes_no_argument() -> None:
    backend, argument = parse_spec("minilm")
    assert backend.scheme == "minilm" and argument == ""
    with pytest.raises(InputError, match="takes no argument"):
        parse_spec("minilm:other")


def test_every_backend_module_exposes_its_factory() -> None:
    import importlib

    for backend in BACKENDS.values():
        assert callable(getattr(importlib.import_module(backend.module), backend.factory)), backend.scheme


def test_hf_spec_loads_tiny_clip(tiny_clip_dir: Path) -> None:
    enc = load_encoder(f"hf:{tiny_clip_dir}", device="cpu", batch_size=4)
    assert isinstance(enc, HFClipEncoder)
    assert enc.model_key == f"hf:{tiny_clip_dir.resolve()}"
    emb = enc.encode_texts(["a cat", "a dog"])
    assert emb.shape == (2, 16)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_nonexistent_directory_suggests_local_path() -> None:
    with pytest.raises(ModelLoadError, match=r"hf:/path/to/model"):
        load_encoder("hf:/nonexistent/dir-or-unreachable-id")


def test_unreachable_hub_id_fails_fast_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import time
    start = time.monotonic()
    with pytest.raises(ModelLoadError) as info:
        load_encoder("hf:cotembed-test/no-such-model-anywhere")
    assert time.monotonic() - start < 10
    message = str(info.value)
    assert "could not be reached" in message and "hf:/path/to/model" in message
    assert info.value.exit_code == 1


def test_local_directory_without_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="from local directory"):
        load_encoder(f"hf:{tmp_path}")
