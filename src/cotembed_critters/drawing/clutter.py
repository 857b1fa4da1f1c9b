"""Clutter for the ``hard`` difficulty: distractor objects around the scene and an occluder
in front of the critter.

Each kind is one painter; :data:`DISTRACTORS` and :data:`OCCLUDERS` list them in the order
the random kind index picks from, which is part of what keeps renders stable for a seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from PIL import ImageDraw

from cotembed_critters.drawing.palette import random_colour, shade

Distractor = Callable[[ImageDraw.ImageDraw, int, float, float, float, np.random.Generator], None]
"""``(draw, S, x, y, size, rng)``: an object centred at (x, y) about ``size`` pixels in radius."""

Occluder = Callable[[ImageDraw.ImageDraw, float, float, float, float, np.random.Generator], None]
"""``(draw, x, y, rx, ry, rng)``: a foreground object centred at (x, y) with radii (rx, ry)."""


def rock(d: ImageDraw.ImageDraw, x: float, y: float, rx: float, ry: float, rng: np.random.Generator) -> None:
    """An irregular grey-brown octagon."""
    k = 8
    ang = np.linspace(0, 2 * np.pi, k, endpoint=False) + rng.uniform(0, 1)
    rad = rng.uniform(0.75, 1.15, k)
    pts = np.stack([x + rx * rad * np.cos(ang), y + ry * rad * np.sin(ang)], 1)
    g = int(rng.integers(85, 165))
    col = (g, int(g * rng.uniform(0.85, 1.0)), int(g * rng.uniform(0.75, 0.95)))
    d.polygon(pts.ravel().tolist(), fill=col, outline=shade(col, 0.55), width=2)


# -------------------------------------------------------------- distractors
def _rock_distractor(d: ImageDraw.ImageDraw, S: int, x: float, y: float, size: float, rng: np.random.Generator) -> None:
    rock(d, x, y, size, size * rng.uniform(0.55, 0.85), rng)


def _plant(d: ImageDraw.ImageDraw, S: int, x: float, y: float, size: float, rng: np.random.Generator) -> None:
    stem = (40, 120, 40) if rng.random() < 0.6 else random_colour(rng)
    d.line([x, y + size, x, y - size], fill=stem, width=max(2, S // 70))
    for k in range(3):
        ly, side = y + size * (0.5 - 0.55 * k), 1 if k % 2 else -1
        lx = x + side * size * 0.35
        d.ellipse([lx - size * 0.35, ly - size * 0.15, lx + size * 0.35, ly + size * 0.15], fill=stem)


def _disc(d: ImageDraw.ImageDraw, S: int, x: float, y: float, size: float, rng: np.random.Generator) -> None:
    col = random_colour(rng)
    d.ellipse([x - size, y - size, x + size, y + size], fill=col, outline=shade(col, 0.5), width=2)


def _triangle(d: ImageDraw.ImageDraw, S: int, x: float, y: float, size: float, rng: np.random.Generator) -> None:
    col = random_colour(rng)
    a = rng.uniform(0, 2 * np.pi)
    pts = [(x + size * math.cos(a + k * 2.094), y + size * math.sin(a + k * 2.094)) for k in range(3)]
    d.polygon(pts, fill=col, outline=shade(col, 0.5), width=2)


DISTRACTORS: tuple[Distractor, ...] = (_rock_distractor, _plant, _disc, _triangle)


def distractor(d: ImageDraw.ImageDraw, S: int, x: float, y: float, size: float, rng: np.random.Generator) -> None:
    """One distractor of a random kind."""
    DISTRACTORS[int(rng.integers(len(DISTRACTORS)))](d, S, x, y, size, rng)


# ---------------------------------------------------------------- occluders
def _bush(d: ImageDraw.ImageDraw, x: float, y: float, rx: float, ry: float, rng: np.random.Generator) -> None:
    col = (int(rng.integers(30, 70)), int(rng.integers(110, 160)), int(rng.integers(30, 60)))
    for dx, dy in ((-0.45, 0.15), (0.45, 0.15), (0.0, -0.25)):
        cx, cy = x + dx * rx, y + dy * ry
        d.ellipse([cx - rx * 0.62, cy - ry * 0.62, cx + rx * 0.62, cy + ry * 0.62], fill=col, outline=shade(col, 0.6), width=2)


def _box(d: ImageDraw.ImageDraw, x: float, y: float, rx: float, ry: float, rng: np.random.Generator) -> None:
    col = random_colour(rng)
    d.rectangle([x - rx, y - ry, x + rx, y + ry], fill=col, outline=shade(col, 0.5), width=2)


OCCLUDERS: tuple[Occluder, ...] = (rock, _bush, _box)


def occluder(d: ImageDraw.ImageDraw, lo: np.ndarray, hi: np.ndarray, rng: np.random.Generator) -> None:
    """A foreground object over one edge of the creature's box (``lo``, ``hi`` in pixels),
    covering up to about a quarter of it."""
    w, h = hi - lo
    side = int(rng.integers(4))
    t = rng.uniform(0.2, 0.8)
    # bottom, left, right, bottom: the bottom edge is listed twice (twice as likely), as the
    # published splits were drawn
    x, y = [(lo[0] + t * w, hi[1]), (lo[0], lo[1] + t * h), (hi[0], lo[1] + t * h), (lo[0] + t * w, hi[1])][side]
    rx, ry = w * rng.uniform(0.18, 0.29), h * rng.uniform(0.18, 0.29)
    OCCLUDERS[int(rng.integers(len(OCCLUDERS)))](d, x, y, rx, ry, rng)
