"""Procedural critter images: one attribute combination, one seed, one picture.

``render({"colour": "red", "form": "bird", "trait": "wings", "scene": "space"}, seed=3)``
draws a small RGB image with PIL only (no torch), deterministic in
(attributes, seed, size, difficulty). Everything is drawn at ``SUPERSAMPLE``
times the target size and box-downsampled, so edges are antialiased.

The creature is built in a local frame (facing right, y down, about [-1, 1]^2)
from its body plan and trait (:mod:`cotembed_critters.drawing`), then mapped to
the image by one affine transform (scale, small rotation, optional mirror,
translation). ``hard`` makes the creature smaller and adds clutter, a foreground
occluder and stronger pixel noise (:data:`DIFFICULTIES`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from cotembed_critters.drawing.anatomy import BODY_PLANS, Anatomy
from cotembed_critters.drawing.clutter import distractor, occluder
from cotembed_critters.drawing.palette import COLOUR_RGB, Palette, palette
from cotembed_critters.drawing.pen import Pen
from cotembed_critters.drawing.scenes import SCENES, base
from cotembed_critters.drawing.traits import TRAITS, Trait
from cotembed_critters.world import ATTRIBUTE_NAMES, VOCABULARY

__all__ = ["COLOUR_RGB", "DIFFICULTIES", "MAX_SIZE", "MIN_SIZE", "Difficulty", "render"]

SUPERSAMPLE = 4
MIN_SIZE, MAX_SIZE = 8, 4096
"""Image sides :func:`render` accepts; the supersampled canvas is ``SUPERSAMPLE**2`` times larger."""


@dataclass(frozen=True)
class Difficulty:
    """How hard a picture is to read: critter size, clutter, occlusion and pixel noise."""

    extent: tuple[float, float]
    """Range of the critter's box side (geometric mean) as a fraction of the image side."""
    noise: tuple[float, float]
    """Range of the Gaussian pixel noise's standard deviation (0-255 scale)."""
    distractors: tuple[int, int] | None = None
    """Range of the number of distractor objects drawn on the scene (upper bound exclusive)."""
    occluder: bool = False
    """Whether a foreground object hides part of the critter."""


DIFFICULTIES: dict[str, Difficulty] = {
    "easy": Difficulty(extent=(0.4, 0.7), noise=(2.0, 6.0)),
    "hard": Difficulty(extent=(0.25, 0.45), noise=(9.0, 16.0), distractors=(3, 7), occluder=True),
}


def _check(attributes: Mapping[str, str]) -> dict[str, str]:
    if not isinstance(attributes, Mapping):
        raise TypeError(f"attributes must be a mapping of {', '.join(ATTRIBUTE_NAMES)}, got {type(attributes).__name__}")
    extra = sorted(set(attributes) - set(ATTRIBUTE_NAMES))
    if extra:
        raise KeyError(f"unknown attribute {extra[0]!r}; attributes are {', '.join(ATTRIBUTE_NAMES)}")
    out = {}
    for name in ATTRIBUTE_NAMES:
        keys = [v.key for v in VOCABULARY[name]]
        if name not in attributes:
            raise KeyError(f"missing attribute {name!r}; give one of {', '.join(keys)}")
        key = attributes[name]
        if key not in keys:
            raise KeyError(f"unknown {name} {key!r}; choose one of {', '.join(keys)}")
        out[name] = key
    return out


def _paint_critter(pen: Pen, pal: Palette, anatomy: Anatomy, trait: Trait, rng: np.random.Generator) -> None:
    """Back to front: trait parts that sit behind the body, far-side parts, the body, body
    patterns, then near-side parts and eyes."""
    for layer, parts in (("behind", anatomy.behind + anatomy.body), ("pattern", anatomy.front)):
        if trait.layer == layer:
            trait.paint(anatomy, pen, pal, rng)
        for part in parts:
            part(pen, pal)


def render(attributes: Mapping[str, str], seed: int, size: int = 64, difficulty: str = "easy") -> Image.Image:
    """Draw one critter: an RGB ``size`` x ``size`` image, the same for the same arguments.

    ``attributes`` maps each of colour, form, trait and scene to a key of
    :data:`cotembed_critters.world.VOCABULARY`; an unknown or missing one raises
    ``KeyError`` naming the attribute and the valid keys. ``size`` is an integer in
    ``MIN_SIZE..MAX_SIZE`` and ``difficulty`` a key of :data:`DIFFICULTIES` (else ``ValueError``).
    """
    attrs = _check(attributes)
    spec = DIFFICULTIES.get(difficulty)
    if spec is None:
        raise ValueError(f"unknown difficulty {difficulty!r}; choose one of {', '.join(DIFFICULTIES)}")
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"size must be an integer from {MIN_SIZE} to {MAX_SIZE}, got {size!r}")
    rng = np.random.default_rng(seed)
    S = int(size) * SUPERSAMPLE
    img = base(attrs["scene"], S)
    draw = ImageDraw.Draw(img)
    SCENES[attrs["scene"]](draw, S, rng)
    if spec.distractors is not None:
        for _ in range(int(rng.integers(*spec.distractors))):
            distractor(draw, S, rng.uniform(0, S), rng.uniform(0, S), rng.uniform(0.04, 0.09) * S, rng)

    pal = palette(attrs["colour"], attrs["scene"], rng)
    anatomy = BODY_PLANS[attrs["form"]](rng)
    pen = Pen()
    _paint_critter(pen, pal, anatomy, TRAITS[attrs["trait"]], rng)
    extent = rng.uniform(*spec.extent)
    lo, hi = pen.place(S, extent, math.radians(rng.uniform(-20, 20)), bool(rng.random() < 0.5), rng)
    pen.render(draw, max(1, round(0.9 * SUPERSAMPLE)))
    if spec.occluder:
        occluder(draw, lo, hi, rng)

    small = img.reduce(SUPERSAMPLE)
    sigma = rng.uniform(*spec.noise)
    noisy = np.asarray(small, dtype=np.float32) + rng.standard_normal((size, size, 3), dtype=np.float32) * sigma
    return Image.fromarray(np.clip(noisy + 0.5, 0, 255).astype(np.uint8), "RGB")
