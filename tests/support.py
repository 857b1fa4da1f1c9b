"""Test doubles and generated data shared by the test modules."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 30)}
SHAPES = ("square", "disc")


class ColourEncoder:
    """A tiny deterministic 'CLIP': images embed to their mean colour, and a text
    embeds to the colour it names (or to a hashed direction if it names none).
    Counts how many images and texts it really encoded, so cache tests can check."""

    modalities = frozenset({"image", "text"})
    logit_scale = 50.0
    batch_size = 4
    dim = 8
    input_size = 8

    def __init__(self, name: str = "colour"):
        self.model_key = f"test:{name}"
        self.images_encoded = 0
        self.texts_encoded = 0
        self.calls = 0

    def _text_vector(self, text: str) -> np.ndarray:
        vec = np.zeros(8, dtype=np.float32)
        for name, rgb in COLOURS.items():
            if name in text:
                vec[:3] += np.asarray(rgb, dtype=np.float32) / 255.0
        if not vec.any():
            seed = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
            vec[3:] = np.random.default_rng(seed).normal(size=5)
        return vec / np.linalg.norm(vec)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        self.texts_encoded += len(texts)
        return np.stack([self._text_vector(t) for t in texts])

    def preprocess(self, images: Sequence[Image.Image]) -> np.ndarray:
        return np.stack([np.asarray(img.convert("RGB").resize((8, 8)), dtype=np.float32).reshape(-1, 3).mean(axis=0) / 255.0
                         for img in images])

    def encode_preprocessed(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        self.images_encoded += len(batch)
        out = np.zeros((len(batch), 8), dtype=np.float32)
        out[:, :3] = batch
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def close(self) -> None:
        self.closed = True


COLOUR_SYSTEM = {
    "name": "colours",
    "groups": {
        "colour": {"prompt": "a photo of something {}", "options": list(COLOURS)},
    },
    "rules": {f"{c}-thing": {"colour": c} for c in COLOURS},
}


def make_image(path: Path, colour: str, size: int = 24, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    base = np.asarray(COLOURS[colour], dtype=np.float32)
    pixels = np.clip(base + rng.normal(0, 12, size=(size, size, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def make_image_folder(root: Path, per_class: int = 3, classes: Sequence[str] = tuple(COLOURS)) -> Path:
    """ImageFolder layout: root/<colour>-thing/<i>.png."""
    for c in classes:
        for i in range(per_class):
            make_image(root / f"{c}-thing" / f"{i}.png", c, seed=i)
    return root


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """Run the ``cotembed`` command in-process: (exit code, stdout, stderr)."""
    from cotembed.cli import main

    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err
