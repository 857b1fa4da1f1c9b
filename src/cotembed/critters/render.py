"""Procedural critter images: one attribute combination, one seed, one picture.

``render({"colour": "red", "form": "bird", "trait": "wings", "scene": "space"}, seed=3)``
draws a small RGB image with PIL only (no torch), deterministic in
(attributes, seed, size, difficulty). Everything is drawn at ``_SUPERSAMPLE``
times the target size and box-downsampled, so edges are antialiased.

The creature is built in a local frame (facing right, y down, about [-1, 1]^2)
from polygons, ellipses and lines, then mapped to the image by one affine
transform (scale, small rotation, optional mirror, translation): rotation costs
nothing and no layer compositing is needed. ``hard`` makes the creature smaller
and adds clutter, a foreground occluder and stronger pixel noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw

from cotembed.critters.world import ATTRIBUTE_NAMES, VOCABULARY

__all__ = ["COLOUR_RGB", "DIFFICULTIES", "render"]

DIFFICULTIES = ("easy", "hard")
_SUPERSAMPLE = 4

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

_DARK_SCENES = frozenset({"space", "volcano"})
_INK: dict[str, RGB] = {  # thin lines (antennae, insect legs): contrast with the scene
    "sky": (30, 30, 45), "grass": (25, 30, 20), "space": (225, 225, 235), "water": (15, 20, 35),
    "desert": (45, 30, 20), "volcano": (240, 225, 205), "snow": (35, 35, 50),
}


# ------------------------------------------------------------------ colours
def _lum(c: Sequence[float]) -> float:
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def _shade(c: Sequence[float], k: float) -> RGB:
    return tuple(int(max(0, min(255, round(v * k)))) for v in c)  # type: ignore[return-value]


@dataclass(frozen=True)
class _Palette:
    body: RGB
    far: RGB  # body parts on the far side (legs, wing behind)
    outline: RGB
    accent: RGB  # spots and stripes
    bone: RGB  # horn and spikes
    wing: RGB
    ink: RGB  # thin lines
    beak: RGB


def _palette(colour: str, scene: str, rng: np.random.Generator) -> _Palette:
    base = np.asarray(COLOUR_RGB[colour], dtype=float)
    body = np.clip(base * rng.uniform(0.92, 1.06) + rng.normal(0.0, 6.0, 3), 0, 255)
    body_t: RGB = tuple(int(v) for v in body)  # type: ignore[assignment]
    lum = _lum(body_t)
    if lum < 60:
        outline: RGB = (125, 125, 135) if scene in _DARK_SCENES else (0, 0, 0)
        far = (60, 60, 64)
    else:
        outline = _shade(body_t, 0.42)
        far = _shade(body_t, 0.72)
    light = lum > 150
    return _Palette(
        body=body_t,
        far=far,
        outline=outline,
        accent=(35, 30, 30) if light else (245, 242, 232),
        bone=(105, 85, 65) if lum > 170 else (242, 234, 205),
        wing=(150, 165, 190) if lum > 170 else (232, 238, 246),
        ink=_INK[scene],
        beak=(80, 65, 55) if colour in ("orange", "yellow") else (250, 185, 50),
    )


# ---------------------------------------------------------------- geometry
_N_ELLIPSE = 28
_COS = np.cos(np.linspace(0, 2 * np.pi, _N_ELLIPSE, endpoint=False))
_SIN = np.sin(np.linspace(0, 2 * np.pi, _N_ELLIPSE, endpoint=False))


def _ellipse_pts(cx: float, cy: float, rx: float, ry: float, rot: float = 0.0) -> np.ndarray:
    x, y = rx * _COS, ry * _SIN
    if rot:
        c, s = math.cos(rot), math.sin(rot)
        x, y = x * c - y * s, x * s + y * c
    return np.stack([x + cx, y + cy], axis=1)


def _spline(points: Sequence[Sequence[float]], per_segment: int = 8) -> np.ndarray:
    """Catmull-Rom curve through ``points``."""
    p = np.asarray(points, dtype=float)
    p = np.vstack([2 * p[0] - p[1], p, 2 * p[-1] - p[-2]])
    t = np.linspace(0, 1, per_segment, endpoint=False)[:, None]
    t2, t3 = t * t, t * t * t
    out = []
    for i in range(1, len(p) - 2):
        p0, p1, p2, p3 = p[i - 1], p[i], p[i + 1], p[i + 2]
        out.append(0.5 * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t2 + (-p0 + 3 * p1 - 3 * p2 + p3) * t3))
    out.append(p[-2][None, :])
    return np.vstack(out)


def _normals(c: np.ndarray) -> np.ndarray:
    """Unit normals to the left of the direction of travel (up, for a curve going right)."""
    d = np.gradient(c, axis=0)
    d /= np.linalg.norm(d, axis=1, keepdims=True) + 1e-9
    return np.stack([d[:, 1], -d[:, 0]], axis=1)


def _tube(c: np.ndarray, half: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Outline polygon of a curve of varying half-width, and its normals."""
    n = _normals(c)
    left, right = c + n * half[:, None], c - n * half[:, None]
    return np.vstack([left, right[::-1]]), n


def _rotate(v: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return v @ np.array([[c, s], [-s, c]])


class _Pen:
    """Records local-frame shapes, then draws them through one affine map.

    Recording first lets :meth:`place` size and position the creature from its
    real extent (wings, tail and all), so no part ends up outside the image.
    """

    def __init__(self) -> None:
        self.ops: list[tuple[str, np.ndarray, RGB, RGB | float | None]] = []

    def poly(self, pts: np.ndarray | Sequence[Sequence[float]], fill: RGB, outline: RGB | None = None) -> None:
        self.ops.append(("poly", np.asarray(pts, dtype=float), fill, outline))

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, fill: RGB, outline: RGB | None = None, rot: float = 0.0) -> None:
        self.poly(_ellipse_pts(cx, cy, rx, ry, rot), fill, outline)

    def line(self, pts: Sequence[Sequence[float]], fill: RGB, width: float) -> None:
        self.ops.append(("line", np.asarray(pts, dtype=float), fill, width))

    def thick(self, pts: Sequence[Sequence[float]], width: float, fill: RGB, outline: RGB) -> None:
        """A limb: an outlined straight or bent stroke (drawn as a tube polygon)."""
        c = np.asarray(pts, dtype=float)
        if len(c) == 2:
            c = np.vstack([c[0], (c[0] + c[1]) / 2, c[1]])
        poly, _ = _tube(c, np.full(len(c), width / 2))
        self.poly(poly, fill, outline)
        self.ellipse(*c[-1], width / 2, width / 2, fill)  # rounded end over the seam

    def place(self, S: int, extent: float, angle: float, mirror: bool, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Choose the map: rotate/mirror, scale the bounding box so its geometric-mean
        side is ``extent * S`` (its longer side at most 94% of ``S``) and put it at a
        random place inside the image. Returns the box (lo, hi) in image pixels."""
        c, s = math.cos(angle), math.sin(angle)
        fx = -1.0 if mirror else 1.0
        rot = np.array([[c * fx, -s], [s * fx, c]])
        allpts = np.vstack([op[1] for op in self.ops]) @ rot.T
        lo, hi = allpts.min(axis=0), allpts.max(axis=0)
        w, h = (hi - lo).tolist()
        # Size by the box's geometric mean side, so long thin critters (a serpent with a
        # tail) are not shrunk to a few pixels of thickness; never wider than the image.
        scale = min(extent * S / math.sqrt(w * h), 0.94 * S / max(w, h))
        free = S - scale * (hi - lo)
        offset = np.array([rng.uniform(0, max(0.0, f)) for f in free]) + np.minimum(free, 0) / 2
        self.m = rot * scale
        self.t = offset - scale * lo
        self.scale = scale
        return self.t + scale * lo, self.t + scale * hi

    def render(self, draw: ImageDraw.ImageDraw, outline_px: int) -> None:
        for kind, pts, fill, style in self.ops:
            xy = (pts @ self.m.T + self.t).ravel().tolist()
            if kind == "poly":
                draw.polygon(xy, fill=fill, outline=style, width=outline_px if style else 1)  # type: ignore[arg-type]
            else:
                draw.line(xy, fill=fill, width=max(1, int(round(float(style) * self.scale))), joint="curve")  # type: ignore[arg-type]


# ---------------------------------------------------------------- anatomy
@dataclass
class _Anatomy:
    """Where the traits attach, in the local frame (facing right, y down)."""

    crown: tuple[float, float]
    crown_angle: float  # direction "up" from the head, radians (image frame: -pi/2 is up)
    back: list[tuple[float, float, float]]  # spike sites: x, y, outward angle
    rear: tuple[float, float, float]  # tail root and the angle the tail leaves at
    wing_root: tuple[float, float]
    patch: tuple[float, float, float, float] | None = None  # body ellipse for spots/stripes
    stripe_axis: int = 0  # 0: bands across x (vertical bands), 1: across y
    tube: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # serpent: centre, normals, half-width
    body: list[Callable[[_Pen, _Palette], None]] = field(default_factory=list)
    behind: list[Callable[[_Pen, _Palette], None]] = field(default_factory=list)
    front: list[Callable[[_Pen, _Palette], None]] = field(default_factory=list)


def _ellipse_top(cx: float, cy: float, rx: float, ry: float, degrees: Sequence[float]) -> list[tuple[float, float, float]]:
    """Points on an ellipse at parametric angles, with their outward normal angles."""
    out = []
    for d in degrees:
        a = math.radians(d)
        x, y = cx + rx * math.cos(a), cy + ry * math.sin(a)
        out.append((x, y, math.atan2(math.sin(a) / ry, math.cos(a) / rx)))
    return out


def _eye(x: float, y: float, r: float) -> Callable[[_Pen, _Palette], None]:
    def draw(pen: _Pen, pal: _Palette) -> None:
        pen.ellipse(x, y, r, r, (250, 250, 250), (20, 20, 20))
        pen.ellipse(x + r * 0.3, y, r * 0.5, r * 0.55, (10, 10, 10))

    return draw


def _blob(rng: np.random.Generator) -> _Anatomy:
    cx, cy, rx, ry = 0.0, 0.08, 0.74, 0.66
    a = _Anatomy(
        crown=(0.2, cy - ry * 0.97), crown_angle=math.radians(-80),
        back=_ellipse_top(cx, cy, rx, ry, (-150, -125, -100, -75, -50)),
        rear=(-rx + 0.04, cy + 0.15, math.radians(175)), wing_root=(-0.1, cy - ry * 0.75),
        patch=(cx, cy, rx, ry), stripe_axis=0,
    )
    a.body.append(lambda pen, pal: pen.ellipse(cx, cy, rx, ry, pal.body, pal.outline))
    a.front += [_eye(0.28, -0.12, 0.11), _eye(0.56, -0.1, 0.1)]
    a.front.append(lambda pen, pal: pen.line([(0.3, 0.22), (0.42, 0.28), (0.56, 0.22)], pal.outline, 0.045))
    return a


def _serpent(rng: np.random.Generator) -> _Anatomy:
    wiggle = rng.uniform(0.8, 1.2)
    ctrl = [(-0.95, 0.42), (-0.62, 0.12 - 0.1 * wiggle), (-0.28, 0.5), (0.06, 0.12 - 0.08 * wiggle), (0.36, 0.46), (0.58, 0.14), (0.64, -0.12)]
    c = _spline(ctrl, 7)
    t = np.linspace(0, 1, len(c))
    half = 0.035 + 0.125 * np.minimum(1.0, t * 2.2)
    poly, n = _tube(c, half)
    hx, hy = 0.7, -0.26
    a = _Anatomy(
        crown=(hx - 0.02, hy - 0.16), crown_angle=math.radians(-80),
        back=[(c[i, 0] + n[i, 0] * half[i], c[i, 1] + n[i, 1] * half[i], math.atan2(n[i, 1], n[i, 0])) for i in (10, 17, 24, 31)],
        rear=(c[0, 0], c[0, 1], math.atan2(c[0, 1] - c[2, 1], c[0, 0] - c[2, 0])), wing_root=(c[21, 0], c[21, 1]),
        tube=(c, n, half),
    )

    def body(pen: _Pen, pal: _Palette) -> None:
        pen.poly(poly, pal.body, pal.outline)
        pen.ellipse(hx, hy, 0.25, 0.19, pal.body, pal.outline, rot=-0.25)

    a.body.append(body)
    a.front.append(_eye(hx + 0.08, hy - 0.04, 0.065))
    a.front.append(lambda pen, pal: pen.line([(hx + 0.16, hy + 0.07), (hx + 0.24, hy + 0.04)], pal.outline, 0.03))
    return a


def _beast(rng: np.random.Generator) -> _Anatomy:
    cx, cy, rx, ry = -0.1, 0.0, 0.58, 0.3
    hx, hy = 0.6, -0.32
    a = _Anatomy(
        crown=(hx - 0.03, hy - 0.16), crown_angle=math.radians(-75),
        back=_ellipse_top(cx, cy, rx, ry, (-150, -125, -100, -75)),
        rear=(cx - rx + 0.03, cy - 0.08, math.radians(200)), wing_root=(cx + 0.05, cy - ry * 0.85),
        patch=(cx, cy, rx, ry), stripe_axis=0,
    )
    legs_far = [(-0.42, 0.08), (0.22, 0.08)]
    legs_near = [(-0.56, 0.1), (0.36, 0.1)]

    def far(pen: _Pen, pal: _Palette) -> None:
        for x, y in legs_far:
            pen.thick([(x, y), (x + 0.02, 0.66)], 0.13, pal.far, pal.outline)

    def body(pen: _Pen, pal: _Palette) -> None:
        pen.poly([(0.22, -0.2), (0.52, -0.42), (0.66, -0.24), (0.42, 0.08)], pal.body, pal.outline)  # neck
        pen.ellipse(cx, cy, rx, ry, pal.body, pal.outline)
        for x, y in legs_near:
            pen.thick([(x, y), (x - 0.02, 0.68)], 0.14, pal.body, pal.outline)
        pen.ellipse(hx, hy, 0.2, 0.16, pal.body, pal.outline)
        pen.ellipse(hx + 0.19, hy + 0.06, 0.12, 0.085, pal.body, pal.outline)  # snout
        pen.ellipse(hx + 0.29, hy + 0.03, 0.03, 0.03, pal.outline)  # nose

    a.behind.append(far)
    a.body.append(body)
    a.front.append(_eye(hx + 0.03, hy - 0.04, 0.05))
    return a


def _bird(rng: np.random.Generator) -> _Anatomy:
    cx, cy, rx, ry = -0.08, 0.1, 0.44, 0.31
    hx, hy, hr = 0.36, -0.24, 0.2
    a = _Anatomy(
        crown=(hx - 0.02, hy - hr * 0.9), crown_angle=math.radians(-80),
        back=_ellipse_top(cx, cy, rx, ry, (-150, -125, -100, -75)),
        rear=(cx - rx + 0.05, cy - 0.05, math.radians(195)), wing_root=(cx + 0.02, cy - ry * 0.8),
        patch=(cx, cy, rx, ry), stripe_axis=0,
    )

    def behind(pen: _Pen, pal: _Palette) -> None:
        for tip_y in (-0.18, 0.06, 0.3):  # tail feathers
            pen.poly([(cx - rx + 0.1, cy - 0.08), (cx - rx - 0.42, cy + tip_y - 0.06), (cx - rx - 0.4, cy + tip_y + 0.06), (cx - rx + 0.1, cy + 0.1)], pal.far, pal.outline)
        for x in (-0.14, 0.04):  # legs with toes
            pen.line([(x, cy + ry - 0.05), (x, 0.72)], pal.beak, 0.045)
            pen.line([(x - 0.07, 0.74), (x + 0.1, 0.74)], pal.beak, 0.04)

    def body(pen: _Pen, pal: _Palette) -> None:
        pen.ellipse(cx, cy, rx, ry, pal.body, pal.outline)
        pen.ellipse(hx, hy, hr, hr, pal.body, pal.outline)
        pen.poly([(hx + 0.14, hy - 0.08), (hx + 0.46, hy + 0.03), (hx + 0.14, hy + 0.1)], pal.beak, _shade(pal.beak, 0.5))

    a.behind.append(behind)
    a.body.append(body)
    a.front.append(_eye(hx + 0.06, hy - 0.04, 0.055))
    return a


def _fish(rng: np.random.Generator) -> _Anatomy:
    cx, cy, rx, ry = 0.02, 0.0, 0.6, 0.31
    a = _Anatomy(
        crown=(0.32, cy - ry * 0.8), crown_angle=math.radians(-70),
        back=_ellipse_top(cx, cy, rx, ry, (-145, -120, -95, -70)),
        rear=(cx - rx - 0.32, cy, math.radians(180)), wing_root=(cx, cy - ry * 0.85),
        patch=(cx, cy, rx, ry), stripe_axis=0,
    )

    def behind(pen: _Pen, pal: _Palette) -> None:
        x0 = cx - rx
        pen.poly([(x0 + 0.12, cy), (x0 - 0.36, cy - 0.38), (x0 - 0.22, cy), (x0 - 0.36, cy + 0.38)], pal.far, pal.outline)  # forked tail fin
        pen.poly([(cx - 0.3, cy - ry + 0.08), (cx - 0.14, cy - ry - 0.17), (cx + 0.14, cy - ry - 0.2), (cx + 0.12, cy - ry + 0.1)], pal.far, pal.outline)  # dorsal fin

    def body(pen: _Pen, pal: _Palette) -> None:
        pen.ellipse(cx, cy, rx, ry, pal.body, pal.outline)

    def front(pen: _Pen, pal: _Palette) -> None:
        pen.line([(0.32, -0.18), (0.27, 0.0), (0.32, 0.18)], pal.outline, 0.03)  # gill
        pen.poly([(0.12, 0.1), (-0.18, 0.2), (-0.06, 0.3), (0.1, 0.2)], pal.far, pal.outline)  # pectoral fin
        pen.line([(0.5, 0.07), (0.6, 0.05)], pal.outline, 0.03)  # mouth

    a.behind.append(behind)
    a.body.append(body)
    a.front += [front, _eye(0.42, -0.07, 0.065)]
    return a


def _insect(rng: np.random.Generator) -> _Anatomy:
    ax, ay, arx, ary = -0.25, 0.02, 0.42, 0.25
    tx, ty = 0.28, 0.0
    hx, hy, hr = 0.58, -0.07, 0.15
    a = _Anatomy(
        crown=(hx - 0.02, hy - hr * 0.9), crown_angle=math.radians(-65),
        back=_ellipse_top(ax, ay, arx, ary, (-150, -125, -100, -75)) + [(tx, ty - 0.17, math.radians(-90))],
        rear=(ax - arx + 0.03, ay, math.radians(180)), wing_root=(0.12, -0.14),
        patch=(ax, ay, arx, ary), stripe_axis=0,
    )
    feet_near = [(0.66, 0.58), (0.3, 0.6), (-0.08, 0.58)]
    feet_far = [(0.76, 0.5), (0.42, 0.52), (0.04, 0.5)]
    hips = [(0.34, 0.1), (0.27, 0.12), (0.2, 0.1)]

    def legs(feet: list[tuple[float, float]]) -> Callable[[_Pen, _Palette], None]:
        def draw(pen: _Pen, pal: _Palette) -> None:
            for (hx_, hy_), (fx, fy) in zip(hips, feet):
                knee = ((hx_ + fx) / 2 + (fx - hx_) * 0.25, hy_ + 0.06)
                pen.line([(hx_, hy_), knee, (fx, fy)], pal.ink, 0.045)

        return draw

    def body(pen: _Pen, pal: _Palette) -> None:
        pen.ellipse(ax, ay, arx, ary, pal.body, pal.outline)
        pen.ellipse(tx, ty, 0.19, 0.16, pal.body, pal.outline)
        pen.ellipse(hx, hy, hr, hr, pal.body, pal.outline)
        pen.line([(hx + 0.12, hy + 0.1), (hx + 0.2, hy + 0.16)], pal.outline, 0.035)  # mandible

    a.behind.append(legs(feet_far))
    a.body.append(body)
    a.front += [legs(feet_near), _eye(hx + 0.06, hy - 0.03, 0.05)]
    return a


def _biped(rng: np.random.Generator) -> _Anatomy:
    cx, cy, rx, ry = 0.0, 0.04, 0.28, 0.4
    hx, hy, hr = 0.05, -0.55, 0.21
    a = _Anatomy(
        crown=(hx + 0.02, hy - hr * 0.95), crown_angle=math.radians(-85),
        back=_ellipse_top(cx, cy, rx, ry, (200, 180, 160, 140)),
        rear=(cx - rx + 0.04, cy + 0.22, math.radians(165)), wing_root=(cx - 0.1, cy - ry * 0.6),
        patch=(cx, cy, rx, ry), stripe_axis=1,
    )

    def behind(pen: _Pen, pal: _Palette) -> None:
        pen.thick([(-0.16, -0.22), (-0.36, 0.0), (-0.42, 0.2)], 0.1, pal.far, pal.outline)  # far arm
        for x in (-0.11, 0.11):  # legs and feet
            pen.thick([(x, 0.3), (x + 0.01, 0.82)], 0.14, pal.body, pal.outline)
            pen.ellipse(x + 0.08, 0.85, 0.12, 0.06, pal.body, pal.outline)

    def body(pen: _Pen, pal: _Palette) -> None:
        pen.ellipse(cx, cy, rx, ry, pal.body, pal.outline)
        pen.ellipse(hx, hy, hr, hr, pal.body, pal.outline)

    def arm(pen: _Pen, pal: _Palette) -> None:
        pen.thick([(0.16, -0.22), (0.38, -0.02), (0.46, 0.18)], 0.1, pal.body, pal.outline)

    a.behind.append(behind)
    a.body.append(body)
    a.front += [arm, _eye(hx + 0.1, hy - 0.03, 0.055)]
    a.front.append(lambda pen, pal: pen.line([(hx + 0.08, hy + 0.1), (hx + 0.17, hy + 0.08)], pal.outline, 0.03))
    return a


_FORMS: dict[str, Callable[[np.random.Generator], _Anatomy]] = {
    "blob": _blob, "serpent": _serpent, "beast": _beast, "bird": _bird,
    "fish": _fish, "insect": _insect, "biped": _biped,
}


# ------------------------------------------------------------------ traits
_WING = np.array([
    (0.0, -0.08), (0.3, -0.2), (0.62, -0.2), (0.88, -0.1), (1.0, 0.02),
    (0.84, 0.1), (0.76, 0.04), (0.64, 0.18), (0.54, 0.1), (0.42, 0.24), (0.3, 0.14), (0.14, 0.2), (0.0, 0.1),
])


def _trait_horn(a: _Anatomy, pen: _Pen, pal: _Palette, rng: np.random.Generator, layer: str) -> None:
    if layer != "behind":
        return
    x, y = a.crown
    ang = a.crown_angle + math.radians(12)
    d = np.array([math.cos(ang), math.sin(ang)])
    p = np.array([-d[1], d[0]])
    base = np.array([x, y]) - d * 0.08
    h = 0.48 * rng.uniform(0.92, 1.08)
    mid = base + d * h * 0.5 + p * 0.03
    tip = base + d * h + p * 0.09
    pen.poly([base + p * 0.12, mid + p * 0.065, tip, mid - p * 0.05, base - p * 0.12], pal.bone, _shade(pal.bone, 0.5))


def _trait_wings(a: _Anatomy, pen: _Pen, pal: _Palette, rng: np.random.Generator, layer: str) -> None:
    if layer != "behind":
        return
    root = np.asarray(a.wing_root)
    span = 0.78 * rng.uniform(0.92, 1.08)
    for k, deg in enumerate((-128, -62)):
        shape = _rotate(_WING * span * np.array([1.0, 1.25]), math.radians(deg))
        colour = pal.wing if k == 1 else _shade(pal.wing, 0.85)
        pen.poly(shape + root, colour, _shade(pal.wing, 0.4))
        rib = _rotate(np.array([(0.05, 0.0), (0.55, -0.08), (0.9, -0.02)]) * span, math.radians(deg)) + root
        pen.line(rib, _shade(pal.wing, 0.55), 0.025)


def _trait_spikes(a: _Anatomy, pen: _Pen, pal: _Palette, rng: np.random.Generator, layer: str) -> None:
    if layer != "behind":
        return
    for x, y, ang in a.back:
        d = np.array([math.cos(ang), math.sin(ang)])
        p = np.array([-d[1], d[0]])
        base = np.array([x, y]) - d * 0.05
        pen.poly([base + p * 0.08, base + d * 0.27, base - p * 0.08], pal.bone, _shade(pal.bone, 0.45))


def _trait_antennae(a: _Anatomy, pen: _Pen, pal: _Palette, rng: np.random.Generator, layer: str) -> None:
    if layer != "behind":
        return
    x, y = a.crown
    for off in (-0.3, 0.22):
        ang = a.crown_angle + off
        d = np.array([math.cos(ang), math.sin(ang)])
        bend = a.crown_angle + off * 1.8 + 0.35
        mid = np.array([x, y]) + d * 0.24
        end = mid + np.array([math.cos(bend), math.sin(bend)]) * 0.2
        pen.line([(x, y + 0.04), tuple(mid), tuple(end)], pal.ink, 0.04)
        pen.ellipse(end[0], end[1], 0.055, 0.055, pal.ink)


def _trait_tail(a: _Anatomy, pen: _Pen, pal: _Palette, rng: np.random.Generator, layer: str) -> None:
    if layer != "behind":
        return
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
    poly, _ = _tube(np.vstack([np.array([x, y]) - d * 0.05, curl]), np.concatenate([[half[0]], half]))
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


def _trait_spots(a: _Anatomy, pen: _Pen, pal: _Palette, rng: np.random.Generator, layer: str) -> None:
    if layer != "pattern":
        return
    if a.tube is not None:
        c, n, half = a.tube
        for i in range(6, len(c) - 3, 6):
            off = rng.uniform(-0.3, 0.3)
            r = half[i] * 0.62
            pen.ellipse(c[i, 0] + n[i, 0] * half[i] * off, c[i, 1] + n[i, 1] * half[i] * off, r, r, pal.accent)
        return
    assert a.patch is not None
    for x, y, r in _spots_in_ellipse(a.patch, rng):
        pen.ellipse(x, y, r, r, pal.accent)


def _trait_stripes(a: _Anatomy, pen: _Pen, pal: _Palette, rng: np.random.Generator, layer: str) -> None:
    if layer != "pattern":
        return
    if a.tube is not None:
        c, n, half = a.tube
        for i in range(5, len(c) - 3, 6):
            j = i + 2
            seg = [c[i] + n[i] * half[i] * 0.92, c[j] + n[j] * half[j] * 0.92, c[j] - n[j] * half[j] * 0.92, c[i] - n[i] * half[i] * 0.92]
            pen.poly(seg, pal.accent)
        return
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


_TRAITS: dict[str, Callable[[_Anatomy, _Pen, _Palette, np.random.Generator, str], None]] = {
    "horn": _trait_horn, "wings": _trait_wings, "spikes": _trait_spikes, "spots": _trait_spots,
    "stripes": _trait_stripes, "antennae": _trait_antennae, "tail": _trait_tail,
}


# ------------------------------------------------------------------ scenes
_GRADIENTS: dict[str, tuple[RGB, RGB]] = {
    "sky": ((95, 160, 235), (195, 225, 250)),
    "grass": ((120, 190, 80), (50, 125, 40)),
    "space": ((4, 4, 14), (16, 10, 34)),
    "water": ((70, 150, 215), (18, 62, 140)),
    "desert": ((238, 206, 140), (212, 168, 98)),
    "volcano": ((48, 30, 34), (110, 46, 34)),
    "snow": ((196, 208, 224), (236, 240, 246)),
}
_BASE_CACHE: dict[tuple[str, int], Image.Image] = {}


def _base(scene: str, S: int) -> Image.Image:
    key = (scene, S)
    img = _BASE_CACHE.get(key)
    if img is None:
        top, bottom = (np.asarray(c, dtype=float) for c in _GRADIENTS[scene])
        t = np.linspace(0, 1, S)[:, None]
        col = (top + (bottom - top) * t).astype(np.uint8)
        img = Image.fromarray(np.ascontiguousarray(np.broadcast_to(col[:, None, :], (S, S, 3))), "RGB")
        _BASE_CACHE[key] = img
    return img.copy()


def _wave(x0: float, y0: float, length: float, amp: float, periods: float, n: int = 12) -> list[float]:
    xs = np.linspace(x0, x0 + length, n)
    ys = y0 + amp * np.sin(np.linspace(0, 2 * np.pi * periods, n))
    return np.stack([xs, ys], 1).ravel().tolist()


def _scene_sky(d: ImageDraw.ImageDraw, S: int, rng: np.random.Generator) -> None:
    for _ in range(int(rng.integers(2, 5))):
        x, y, w = rng.uniform(-0.1, 1.0) * S, rng.uniform(0.05, 0.8) * S, rng.uniform(0.14, 0.26) * S
        for dx, dy, r in ((0, 0, 0.32), (0.3, -0.12, 0.3), (0.6, 0.0, 0.28), (0.32, 0.08, 0.3)):
            cx, cy, rr = x + dx * w, y + dy * w, r * w
            d.ellipse([cx - rr * 1.3, cy - rr, cx + rr * 1.3, cy + rr], fill=(250, 251, 255))


def _scene_grass(d: ImageDraw.ImageDraw, S: int, rng: np.random.Generator) -> None:
    n = 70
    xs, ys = rng.uniform(0, S, n), rng.uniform(0, S * 1.05, n)
    hs, lean = rng.uniform(0.04, 0.09, n) * S, rng.uniform(-0.3, 0.3, n)
    light = rng.random(n) < 0.25
    w = max(1, S // 90)
    for x, y, h, l, li in zip(xs, ys, hs, lean, light):
        d.line([x, y, x + l * h, y - h], fill=(150, 210, 95) if li else (30, 90, 25), width=w)


def _scene_space(d: ImageDraw.ImageDraw, S: int, rng: np.random.Generator) -> None:
    if rng.random() < 0.5:
        r = rng.uniform(0.07, 0.13) * S
        x, y = rng.choice([rng.uniform(0.05, 0.25), rng.uniform(0.75, 0.95)]) * S, rng.uniform(0.08, 0.35) * S
        col = [(150, 125, 105), (115, 125, 155), (170, 160, 140)][int(rng.integers(3))]
        d.ellipse([x - r, y - r, x + r, y + r], fill=col, outline=_shade(col, 0.6), width=max(1, S // 100))
        d.arc([x - 1.7 * r, y - 0.45 * r, x + 1.7 * r, y + 0.45 * r], 0, 360, fill=(200, 195, 180), width=max(1, S // 100))
    n = int(rng.integers(35, 60))
    xs, ys, rs = rng.uniform(0, S, n), rng.uniform(0, S, n), rng.uniform(0.004, 0.011, n) * S
    for x, y, r in zip(xs, ys, rs):
        d.ellipse([x - r, y - r, x + r, y + r], fill=(255, 255, 240))


def _scene_water(d: ImageDraw.ImageDraw, S: int, rng: np.random.Generator) -> None:
    n = int(rng.integers(9, 14))
    w = max(1, S // 60)
    for x0, y0, length in zip(rng.uniform(-0.2, 0.9, n) * S, rng.uniform(0.03, 0.97, n) * S, rng.uniform(0.2, 0.45, n) * S):
        d.line(_wave(x0, y0, length, S * 0.012, 2.0), fill=(140, 200, 245), width=w, joint="curve")
    for _ in range(int(rng.integers(2, 6))):  # bubbles
        x, y, r = rng.uniform(0, S), rng.uniform(0, S), rng.uniform(0.01, 0.02) * S
        d.ellipse([x - r, y - r, x + r, y + r], outline=(170, 215, 250), width=max(1, S // 120))


def _scene_desert(d: ImageDraw.ImageDraw, S: int, rng: np.random.Generator) -> None:
    horizon = rng.uniform(0.2, 0.3) * S
    d.rectangle([0, 0, S, horizon], fill=(215, 230, 242))
    xs = np.linspace(0, S, 16)
    for k, col in enumerate([(228, 190, 120), (216, 172, 102), (204, 158, 90)]):
        base = horizon + (0.12 + 0.28 * k) * S * rng.uniform(0.85, 1.15)
        ys = base - S * 0.06 * np.sin(xs / S * np.pi * rng.uniform(1.2, 2.2) + rng.uniform(0, 6))
        top = np.stack([xs, ys], 1)
        d.polygon(np.vstack([top, [(S, S), (0, S)]]).ravel().tolist(), fill=col)
        d.line(top.ravel().tolist(), fill=(185, 140, 80), width=max(1, S // 90), joint="curve")


def _scene_volcano(d: ImageDraw.ImageDraw, S: int, rng: np.random.Generator) -> None:
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


def _scene_snow(d: ImageDraw.ImageDraw, S: int, rng: np.random.Generator) -> None:
    xs = np.linspace(0, S, 14)
    base = rng.uniform(0.45, 0.62) * S
    ys = base - 0.05 * S * np.sin(xs / S * np.pi * rng.uniform(1, 2) + rng.uniform(0, 6))
    top = np.stack([xs, ys], 1)
    d.polygon(np.vstack([top, [(S, S), (0, S)]]).ravel().tolist(), fill=(250, 251, 255))
    d.line(top.ravel().tolist(), fill=(185, 198, 218), width=max(1, S // 90), joint="curve")
    n = int(rng.integers(30, 50))
    for x, y, r in zip(rng.uniform(0, S, n), rng.uniform(0, S, n), rng.uniform(0.006, 0.014, n) * S):
        d.ellipse([x - r, y - r, x + r, y + r], fill=(255, 255, 255), outline=(170, 182, 205) if y > base - 0.06 * S else None)


_SCENES: dict[str, Callable[[ImageDraw.ImageDraw, int, np.random.Generator], None]] = {
    "sky": _scene_sky, "grass": _scene_grass, "space": _scene_space, "water": _scene_water,
    "desert": _scene_desert, "volcano": _scene_volcano, "snow": _scene_snow,
}


# ----------------------------------------------------------------- clutter
def _random_colour(rng: np.random.Generator) -> RGB:
    return tuple(int(v) for v in rng.integers(0, 256, 3))  # type: ignore[return-value]


def _rock(d: ImageDraw.ImageDraw, x: float, y: float, rx: float, ry: float, rng: np.random.Generator, colour: RGB | None = None) -> None:
    k = 8
    ang = np.linspace(0, 2 * np.pi, k, endpoint=False) + rng.uniform(0, 1)
    rad = rng.uniform(0.75, 1.15, k)
    pts = np.stack([x + rx * rad * np.cos(ang), y + ry * rad * np.sin(ang)], 1)
    g = int(rng.integers(85, 165))
    col = colour or (g, int(g * rng.uniform(0.85, 1.0)), int(g * rng.uniform(0.75, 0.95)))
    d.polygon(pts.ravel().tolist(), fill=col, outline=_shade(col, 0.55), width=2)


def _distractor(d: ImageDraw.ImageDraw, S: int, x: float, y: float, size: float, rng: np.random.Generator) -> None:
    kind = int(rng.integers(4))
    if kind == 0:
        _rock(d, x, y, size, size * rng.uniform(0.55, 0.85), rng)
    elif kind == 1:  # plant
        stem = (40, 120, 40) if rng.random() < 0.6 else _random_colour(rng)
        d.line([x, y + size, x, y - size], fill=stem, width=max(2, S // 70))
        for k in range(3):
            ly, side = y + size * (0.5 - 0.55 * k), 1 if k % 2 else -1
            lx = x + side * size * 0.35
            d.ellipse([lx - size * 0.35, ly - size * 0.15, lx + size * 0.35, ly + size * 0.15], fill=stem)
    else:  # random-coloured shape
        col = _random_colour(rng)
        if kind == 2:
            d.ellipse([x - size, y - size, x + size, y + size], fill=col, outline=_shade(col, 0.5), width=2)
        else:
            a = rng.uniform(0, 2 * np.pi)
            pts = [(x + size * math.cos(a + k * 2.094), y + size * math.sin(a + k * 2.094)) for k in range(3)]
            d.polygon(pts, fill=col, outline=_shade(col, 0.5), width=2)


def _occluder(d: ImageDraw.ImageDraw, lo: np.ndarray, hi: np.ndarray, rng: np.random.Generator) -> None:
    """A foreground object over one edge of the creature's box, covering up to about a quarter of it."""
    w, h = hi - lo
    side = int(rng.integers(4))
    t = rng.uniform(0.2, 0.8)
    x, y = [(lo[0] + t * w, hi[1]), (lo[0], lo[1] + t * h), (hi[0], lo[1] + t * h), (lo[0] + t * w, hi[1])][side]
    rx, ry = w * rng.uniform(0.18, 0.29), h * rng.uniform(0.18, 0.29)
    kind = int(rng.integers(3))
    if kind == 0:
        _rock(d, x, y, rx, ry, rng)
    elif kind == 1:  # bush
        col = (int(rng.integers(30, 70)), int(rng.integers(110, 160)), int(rng.integers(30, 60)))
        for dx, dy in ((-0.45, 0.15), (0.45, 0.15), (0.0, -0.25)):
            cx, cy = x + dx * rx, y + dy * ry
            d.ellipse([cx - rx * 0.62, cy - ry * 0.62, cx + rx * 0.62, cy + ry * 0.62], fill=col, outline=_shade(col, 0.6), width=2)
    else:
        col = _random_colour(rng)
        d.rectangle([x - rx, y - ry, x + rx, y + ry], fill=col, outline=_shade(col, 0.5), width=2)


# ------------------------------------------------------------------ render
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


def render(attributes: Mapping[str, str], seed: int, size: int = 64, difficulty: str = "easy") -> Image.Image:
    """Draw one critter: an RGB ``size`` x ``size`` image, the same for the same arguments.

    ``attributes`` maps each of colour, form, trait and scene to a key of
    :data:`cotembed.critters.world.VOCABULARY`; an unknown or missing one raises
    ``KeyError`` naming the attribute and the valid keys.
    """
    attrs = _check(attributes)
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"unknown difficulty {difficulty!r}; choose one of {', '.join(DIFFICULTIES)}")
    if not isinstance(size, (int, np.integer)) or size < 8:
        raise ValueError(f"size must be an integer >= 8, got {size!r}")
    hard = difficulty == "hard"
    rng = np.random.default_rng(seed)
    S = int(size) * _SUPERSAMPLE
    img = _base(attrs["scene"], S)
    draw = ImageDraw.Draw(img)
    _SCENES[attrs["scene"]](draw, S, rng)

    if hard:
        for _ in range(int(rng.integers(3, 7))):
            _distractor(draw, S, rng.uniform(0, S), rng.uniform(0, S), rng.uniform(0.04, 0.09) * S, rng)

    palette = _palette(attrs["colour"], attrs["scene"], rng)
    anatomy = _FORMS[attrs["form"]](rng)
    trait = _TRAITS[attrs["trait"]]
    pen = _Pen()
    trait(anatomy, pen, palette, rng, "behind")
    for part in anatomy.behind:
        part(pen, palette)
    for part in anatomy.body:
        part(pen, palette)
    trait(anatomy, pen, palette, rng, "pattern")
    for part in anatomy.front:
        part(pen, palette)
    extent = rng.uniform(0.25, 0.45) if hard else rng.uniform(0.4, 0.7)
    lo, hi = pen.place(S, extent, math.radians(rng.uniform(-20, 20)), bool(rng.random() < 0.5), rng)
    pen.render(draw, max(1, round(0.9 * _SUPERSAMPLE)))
    if hard:
        _occluder(draw, lo, hi, rng)

    small = img.reduce(_SUPERSAMPLE)
    sigma = rng.uniform(9.0, 16.0) if hard else rng.uniform(2.0, 6.0)
    noisy = np.asarray(small, dtype=np.float32) + rng.standard_normal((size, size, 3), dtype=np.float32) * sigma
    return Image.fromarray(np.clip(noisy + 0.5, 0, 255).astype(np.uint8), "RGB")
