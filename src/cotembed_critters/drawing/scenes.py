"""Backgrounds: a vertical gradient per scene, then the scene's own details drawn on it.

:data:`SCENES` maps each scene key to its painter ``(draw, S, rng) -> None``; ``S`` is
the supersampled image side in pixels. Gradients are cached per (scene, size).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from cotembed_critters.drawing.palette import RGB, shade

ScenePainter = Callable[[ImageDraw.ImageDraw, int, np.random.Generator], None]

GRADIENTS: dict[str, tuple[RGB, RGB]] = {
    "sky": ((95, 160, 235), (195, 225, 250)),
    "grass": ((120, 190, 80), (50, 125, 40)),
    "space": ((4, 4, 14), (16, 10, 34)),
    "water": ((70, 150, 215), (18, 62, 140)),
    "desert": ((238, 206, 140), (212, 168, 98)),
    "volcano": ((48, 30, 34), (110, 46, 34)),
    "snow": ((196, 208, 224), (236, 240, 246)),
}
"""Scene key -> (top colour, bottom colour) of its background gradient."""


@lru_cache(maxsize=32)
def _gradient(scene: str, S: int) -> Image.Image:
    top, bottom = (np.asarray(c, dtype=float) for c in GRADIENTS[scene])
    t = np.linspace(0, 1, S)[:, None]
    col = (top + (bottom - top) * t).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(np.broadcast_to(col[:, None, :], (S, S, 3))), "RGB")


def base(scene: str, S: int) -> Image.Image:
    """A fresh copy of the scene's gradient, ``S`` x ``S`` (the gradient itself is cached)."""
    return _gradient(scene, S).copy()


def _wave(x0: float, y0: float, length: float, amp: float, periods: float, n: int = 12) -> list[float]:
    xs = np.linspace(x0, x0 + length, n)
    ys = y0 + amp * np.sin(np.linspace(0, 2 * np.pi * periods, n))
    return np.stack([xs, ys], 1).ravel().tolist()


def _sky(d: ImageDraw.ImageDraw, S: int, rng: np.random.Generator) -> None:
    for _ in range(int(rng.integers(2, 5))):
        x, y, w = rng.uniform(-0.1, 1.0) * S, rng.uniform(0.05, 0.8) * S, rng.uniform(0.14, 0.26) * S
        for dx, dy, r in ((0, 0, 0.32), (0.3, -0.12, 0.3), (0.6, 0.0, 0.28), (0.32, 0.08, 0.3)):
            cx, cy, rr = x + dx * w, y + dy * w, r * w
            d.ellipse([cx - rr * 1.3, cy - rr, cx + rr * 1.3, cy + rr], fill=(250, 251, 255))


def _grass(d: ImageDraw.ImageDraw, S: int, rng: np.random.Generator) -> None:
    n = 70
    xs, ys = rng.uniform(0, S, n), rng.uniform(0, S * 1.05, n)
    hs, lean = rng.uniform(0.04, 0.09, n) * S, rng.uniform(-0.3, 0.3, n)
    light = rng.random(n) < 0.25
    w = max(1, S // 90)
    for x, y, h, l, li in zip(xs, ys, hs, lean, light):
        d.line([x, y, x + l * h, y - h], fill=(150, 210, 95) if li else (30, 90, 25), width=w)


def _space(d: ImageDraw.ImageDraw, S: int, rng: np.random.Generator) -> None:
    if rng.random() < 0.5:
        r = rng.uniform(0.07, 0.13) * S
        x, y = rng.choice([rng.uniform(0.05, 0.25), rng.uniform(0.75, 0.95)]) * S, rng.uniform(0.08, 0.35) * S
        col = [(150, 125, 105), (115, 125, 155), (170, 160, 140)][int(rng.integers(3))]
        d.ellipse([x - r, y - r, x + r, y + r], fill=col, outline=shade(col, 0.6), width=max(1, S // 100))
        d.arc([x - 1.7 * r, y - 0.45 * r, x + 1.7 * r, y + 0.45 * r], 0, 360, fill=(200, 195, 180), width=max(1, S // 100))
    n = int(rng.integers(35, 60))
    xs, ys, rs = rng.uniform(0, S, n), rng.uniform(0, S, n), rng.uniform(0.004, 0.011, n) * S
    for x, y, r in zip(xs, ys, rs):
        d.ellipse([x - r, y - r, x + r, y + r], fill=(255, 255, 240))


def _water(d: ImageDraw.ImageDraw, S: int, rng: np.random.Generator) -> None:
    n = int(rng.integers(9, 14))
    w = max(1, S // 60)
    for x0, y0, length in zip(rng.uniform(-0.2, 0.9, n) * S, rng.uniform(0.03, 0.97, n) * S, rng.uniform(0.2, 0.45, n) * S):
        d.line(_wave(x0, y0, length, S * 0.012, 2.0), fill=(140, 200, 245), width=w, joint="curve")
    for _ in range(int(rng.integers(2, 6))):  # bubbles
        x, y, r = rng.uniform(0, S), rng.uniform(0, S), rng.uniform(0.01, 0.02) * S
        d.ellipse([x - r, y - r, x + r, y + r], outline=(170, 215, 250), width=max(1, S // 120))


def _desert(d: ImageDraw.ImageDraw, S: int, rng: np.random.Generator) -> None:
    horizon = rng.uniform(0.2, 0.3) * S
    d.rectangle([0, 0, S, horizon], fill=(215, 230, 242))
    xs = np.linspace(0, S, 16)
    for k, col in enumerate([(228, 190, 120), (216, 172, 102), (204, 158, 90)]):
        base = horizon + (0.12 + 0.28 * k) * S * rng.uniform(0.85, 1.15)
        ys = base - S * 0.06 * np.sin(xs / S * np.pi * rng.uniform(1.2, 2.2) + rng.uniform(0, 6))
        top = np.stack([xs, ys], 1)
        d.polygon(np.vstack([top, [(S, S), (0, S)]]).ravel().tolist(), fill=col)
        d.line(top.ravel().tolist(), fill=(185, 140, 80), width=max(1, S // 90), joint="curve")


def _volcano(d: ImageDraw.ImageDraw, S: int, rng: np.random.Generator) -> None:
    x = rng.uniform(0.3, 0.7) * S
    top, half_top, half_bottom = rng.uniform(0.25, 0.4) * S, 0.08 * S, rng.uniform(0.45, 0.6) * S
    d.polygon([x - half_bottom, S, x - half_top, top, x + half_top, top, x + half_bottom, S], fill=(62, 52, 54))
    d.ellipse([x - half_top, top - 0.03 * S, x + half_top, top + 0.03 * S], fill=(255, 150, 40))
    w = max(2, S // 28)
    for _ in range(int(rng.integers(2, 4))):
        sx = x + rng.uniform(-0.6, 0.6) * half_top
        end = x + rng.uniform(-0.8, 0.8) * half_bottom
        pts = _wave(0, 0, 1, 1, rng.uniform(1, 2), 10)
        path = []
        for i in range(0, len(pts), 2):
            t = pts[i]
            path += [sx + (end - sx) * t + pts[i + 1] * 0.03 * S, top + (S - top) * t]
        d.line(path, fill=(255, 95, 20), width=w, joint="curve")
    for _ in range(int(rng.integers(6, 14))):  # embers
        ex, ey, r = rng.uniform(0, S), rng.uniform(0, top), rng.uniform(0.006, 0.012) * S
        d.ellipse([ex - r, ey - r, ex + r, ey + r], fill=(255, 170, 60))


def _snow(d: ImageDraw.ImageDraw, S: int, rng: np.random.Generator) -> None:
    xs = np.linspace(0, S, 14)
    base = rng.uniform(0.45, 0.62) * S
    ys = base - 0.05 * S * np.sin(xs / S * np.pi * rng.uniform(1, 2) + rng.uniform(0, 6))
    top = np.stack([xs, ys], 1)
    d.polygon(np.vstack([top, [(S, S), (0, S)]]).ravel().tolist(), fill=(250, 251, 255))
    d.line(top.ravel().tolist(), fill=(185, 198, 218), width=max(1, S // 90), joint="curve")
    n = int(rng.integers(30, 50))
    for x, y, r in zip(rng.uniform(0, S, n), rng.uniform(0, S, n), rng.uniform(0.006, 0.014, n) * S):
        d.ellipse([x - r, y - r, x + r, y + r], fill=(255, 255, 255), outline=(170, 182, 205) if y > base - 0.06 * S else None)


SCENES: dict[str, ScenePainter] = {
    "sky": _sky, "grass": _grass, "space": _space, "water": _water,
    "desert": _desert, "volcano": _volcano, "snow": _snow,
}
"""Scene key -> painter of the scene's details over its gradient."""
