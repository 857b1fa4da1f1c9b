"""Traits: the key feature drawn on a critter, on any body plan.

A trait draws in one *layer*: ``behind`` (horn, wings, spikes, antennae, tail: before the
body, so the body overlaps their roots) or ``pattern`` (spots, stripes: on top of the
body, under the eyes). :data:`TRAITS` maps each trait key to its layer and its painter;
painters read only the attachment sites of :class:`~cotembed_critters.drawing.anatomy.Anatomy`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, NamedTuple

import numpy as np

from cotembed_critters.drawing.anatomy import Anatomy
from cotembed_critters.drawing.geometry import rotate, tube
from cotembed_critters.drawing.palette import Palette, shade
from cotembed_critters.drawing.pen import Pen

Layer = Literal["behind", "pattern"]
LAYERS: tuple[Layer, ...] = ("behind", "pattern")
Painter = Callable[[Anatomy, Pen, Palette, np.random.Generator], None]


WING_SHAPE = np.array([
    (0.0, -0.08), (0.3, -0.2), (0.62, -0.2), (0.88, -0.1), (1.0, 0.02),
    (0.84, 0.1), (0.76, 0.04), (0.64, 0.18), (0.54, 0.1), (0.42, 0.24), (0.3, 0.14), (0.14, 0.2), (0.0, 0.1),
])


def horn(a: Anatomy, pen: Pen, pal: Palette, rng: np.random.Generator) -> None:
    x, y = a.crown
    ang = a.crown_angle + math.radians(12)
    d = np.array([math.cos(ang), math.sin(ang)])
    p = np.array([-d[1], d[0]])
    base = np.array([x, y]) - d * 0.08
    h = 0.48 * rng.uniform(0.92, 1.08)
    mid = base + d * h * 0.5 + p * 0.03
    tip = base + d * h + p * 0.09
    pen.poly([base + p * 0.12, mid + p * 0.065, tip, mid - p * 0.05, base - p * 0.12], pal.bone, shade(pal.bone, 0.5))


def wings(a: Anatomy, pen: Pen, pal: Palette, rng: np.random.Generator) -> None:
    root = np.asarray(a.wing_root)
    span = 0.78 * rng.uniform(0.92, 1.08)
    for k, deg in enumerate((-128, -62)):
        shape = rotate(WING_SHAPE * span * np.array([1.0, 1.25]), math.radians(deg))
        colour = pal.wing if k == 1 else shade(pal.wing, 0.85)
        pen.poly(shape + root, colour, shade(pal.wing, 0.4))
        rib = rotate(np.array([(0.05, 0.0), (0.55, -0.08), (0.9, -0.02)]) * span, math.radians(deg)) + root
        pen.line(rib, shade(pal.wing, 0.55), 0.025)


def spikes(a: Anatomy, pen: Pen, pal: Palette, rng: np.random.Generator) -> None:
    for x, y, ang in a.back:
        d = np.array([math.cos(ang), math.sin(ang)])
        p = np.array([-d[1], d[0]])
        base = np.array([x, y]) - d * 0.05
        pen.poly([base + p * 0.08, base + d * 0.27, base - p * 0.08], pal.bone, shade(pal.bone, 0.45))


def antennae(a: Anatomy, pen: Pen, pal: Palette, rng: np.random.Generator) -> None:
    x, y = a.crown
    for off in (-0.3, 0.22):
        ang = a.crown_angle + off
        d = np.array([math.cos(ang), math.sin(ang)])
        bend = a.crown_angle + off * 1.8 + 0.35
        mid = np.array([x, y]) + d * 0.24
        end = mid + np.array([math.cos(bend), math.sin(bend)]) * 0.2
        pen.line([(x, y + 0.04), tuple(mid), tuple(end)], pal.ink, 0.04)
        pen.ellipse(end[0], end[1], 0.055, 0.055, pal.ink)


def tail(a: Anatomy, pen: Pen, pal: Palette, rng: np.random.Generator) -> None:
    x, y, ang = a.rear
    d = np.array([math.cos(ang), math.sin(ang)])
    up = np.array([-d[1], d[0]])
    if up[1] > 0:
        up = -up
    length = 1.0 * rng.uniform(0.9, 1.1)
    t = np.linspace(0, 1, 16)[:, None]
    start = np.array([x, y]) + d * 0.1
    curl = start + d * (length * t) + up * (0.6 * length * t ** 2.2) - d * (0.25 * length * t ** 3)
    half = 0.1 * (1 - 0.5 * t[:, 0])
    poly, _ = tube(np.vstack([np.array([x, y]) - d * 0.05, curl]), np.concatenate([[half[0]], half]))
    pen.poly(poly, pal.body, pal.outline)
    tip = curl[-1]
    angle = math.atan2(*(curl[-1] - curl[-3])[::-1])
    pen.ellipse(tip[0], tip[1], 0.15, 0.1, pal.far, pal.outline, rot=angle)  # tuft


def _spots_in_ellipse(patch: tuple[float, float, float, float], rng: np.random.Generator) -> list[tuple[float, float, float]]:
    cx, cy, rx, ry = patch
    r = min(0.12, 0.26 * min(rx, ry))
    spots: list[tuple[float, float, float]] = []
    for _ in range(60):
        if len(spots) >= 7:
            break
        a, rho = rng.uniform(0, 2 * np.pi), math.sqrt(rng.uniform(0, 1)) * 0.72
        x, y = cx + rx * rho * math.cos(a), cy + ry * rho * math.sin(a)
        if all((x - u) ** 2 + (y - v) ** 2 > (2.2 * r) ** 2 for u, v, _ in spots):
            spots.append((x, y, r * rng.uniform(0.8, 1.15)))
    return spots


def _spots_on_tube(a: Anatomy, pen: Pen, pal: Palette, rng: np.random.Generator) -> None:
    assert a.tube is not None
    c, n, half = a.tube
    for i in range(6, len(c) - 3, 6):
        off = rng.uniform(-0.3, 0.3)
        r = half[i] * 0.62
        pen.ellipse(c[i, 0] + n[i, 0] * half[i] * off, c[i, 1] + n[i, 1] * half[i] * off, r, r, pal.accent)


def _spots_on_patch(a: Anatomy, pen: Pen, pal: Palette, rng: np.random.Generator) -> None:
    assert a.patch is not None
    for x, y, r in _spots_in_ellipse(a.patch, rng):
        pen.ellipse(x, y, r, r, pal.accent)


def _stripes_on_tube(a: Anatomy, pen: Pen, pal: Palette, rng: np.random.Generator) -> None:
    assert a.tube is not None
    c, n, half = a.tube
    for i in range(5, len(c) - 3, 6):
        j = i + 2
        seg = [c[i] + n[i] * half[i] * 0.92, c[j] + n[j] * half[j] * 0.92, c[j] - n[j] * half[j] * 0.92, c[i] - n[i] * half[i] * 0.92]
        pen.poly(seg, pal.accent)


def _stripes_on_patch(a: Anatomy, pen: Pen, pal: Palette, rng: np.random.Generator) -> None:
    assert a.patch is not None
    cx, cy, rx, ry = a.patch
    if a.stripe_axis == 1:  # upright body: horizontal bands
        cx, cy, rx, ry = cy, cx, ry, rx
    bands = 4
    width = 2 * rx / (bands * 2 + 1) * 0.95
    for k in range(bands):
        lo = cx - rx + (2 * k + 1) * (2 * rx / (bands * 2 + 1))
        xs = np.linspace(lo, lo + width, 5)
        hs = ry * np.sqrt(np.clip(1 - ((xs - cx) / rx) ** 2, 0, 1)) * 0.97
        pts = np.concatenate([np.stack([xs, cy - hs], 1), np.stack([xs[::-1], (cy + hs)[::-1]], 1)])
        if a.stripe_axis == 1:
            pts = pts[:, ::-1]
        pen.poly(pts, pal.accent)


def _by_surface(on_tube: Painter, on_patch: Painter) -> Painter:
    """A pattern painter for any body: along the serpent's tube, or inside the body ellipse."""

    def paint(a: Anatomy, pen: Pen, pal: Palette, rng: np.random.Generator) -> None:
        (on_tube if a.tube is not None else on_patch)(a, pen, pal, rng)

    return paint


class Trait(NamedTuple):
    layer: Layer
    paint: Painter


TRAITS: dict[str, Trait] = {
    "horn": Trait("behind", horn),
    "wings": Trait("behind", wings),
    "spikes": Trait("behind", spikes),
    "spots": Trait("pattern", _by_surface(_spots_on_tube, _spots_on_patch)),
    "stripes": Trait("pattern", _by_surface(_stripes_on_tube, _stripes_on_patch)),
    "antennae": Trait("behind", antennae),
    "tail": Trait("behind", tail),
}
"""Trait key -> the layer it draws in and its painter."""
