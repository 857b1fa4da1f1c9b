"""Colours: the base colour of each colour key, and the palette derived from it for one critter.

The derived colours keep parts readable whatever the body colour and scene: dark bodies
get light outlines on dark scenes, light bodies get dark accents, thin lines contrast
with the scene.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

RGB = tuple[int, int, int]

COLOUR_RGB: dict[str, RGB] = {
    "red": (205, 30, 30),
    "orange": (245, 135, 20),
    "yellow": (245, 215, 40),
    "green": (45, 165, 55),
    "blue": (40, 80, 215),
    "purple": (135, 50, 175),
    "pink": (245, 145, 190),
    "brown": (125, 78, 38),
    "white": (246, 246, 246),
    "black": (28, 28, 30),
}
"""Base body colour of each colour key (before jitter)."""

DARK_SCENES = frozenset({"space", "volcano"})

INK: dict[str, RGB] = {  # thin lines (antennae, insect legs): contrast with the scene
    "sky": (30, 30, 45), "grass": (25, 30, 20), "space": (225, 225, 235), "water": (15, 20, 35),
    "desert": (45, 30, 20), "volcano": (240, 225, 205), "snow": (35, 35, 50),
}


def lum(c: Sequence[float]) -> float:
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def shade(c: Sequence[float], k: float) -> RGB:
    """``c`` scaled by ``k``, rounded and clipped to 0..255."""
    return tuple(int(max(0, min(255, round(v * k)))) for v in c)  # type: ignore[return-value]


def random_colour(rng: np.random.Generator) -> RGB:
    return tuple(int(v) for v in rng.integers(0, 256, 3))  # type: ignore[return-value]


@dataclass(frozen=True)
class Palette:
    body: RGB
    far: RGB  # body parts on the far side (legs, wing behind)
    outline: RGB
    accent: RGB  # spots and stripes
    bone: RGB  # horn and spikes
    wing: RGB
    ink: RGB  # thin lines
    beak: RGB


def palette(colour: str, scene: str, rng: np.random.Generator) -> Palette:
    """The palette of one critter: the colour key's base colour with a little jitter from ``rng``."""
    base = np.asarray(COLOUR_RGB[colour], dtype=float)
    body = np.clip(base * rng.uniform(0.92, 1.06) + rng.normal(0.0, 6.0, 3), 0, 255)
    body_t: RGB = tuple(int(v) for v in body)  # type: ignore[assignment]
    luminance = lum(body_t)
    if luminance < 60:
        outline: RGB = (125, 125, 135) if scene in DARK_SCENES else (0, 0, 0)
        far = (60, 60, 64)
    else:
        outline = shade(body_t, 0.42)
        far = shade(body_t, 0.72)
    light = luminance > 150
    return Palette(
        body=body_t,
        far=far,
        outline=outline,
        accent=(35, 30, 30) if light else (245, 242, 232),
        bone=(105, 85, 65) if luminance > 170 else (242, 234, 205),
        wing=(150, 165, 190) if luminance > 170 else (232, 238, 246),
        ink=INK[scene],
        beak=(80, 65, 55) if colour in ("orange", "yellow") else (250, 185, 50),
    )
