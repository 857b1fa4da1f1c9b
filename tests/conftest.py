"""Shared fixtures. Tests never touch the network: the hub is forced offline before
transformers / huggingface_hub are imported, and models are built locally."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory of a tiny random CLIP model; use it as ``hf:<dir>`` (offline, ~1 s to build)."""
    from cotembed.testing import build_random_clip

    return build_random_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture
def colour_model() -> Iterator[str]:
    """Registers the ColourEncoder test double (tests/support.py) as model spec ``test:<key>`` for one test."""
    from cotembed import encoders

    backend = encoders.Backend("test", "support", "ColourEncoder", "dev", "image, text", "test double", "test:x")
    with encoders.registered_backend(backend):
        yield "test:colour"
