"""The pen: records shapes in the creature's local frame, then draws them through one affine map.

Recording first lets :meth:`Pen.place` size and position the creature from its real
extent (wings, tail and all), so no part ends up outside the image; rotation and mirroring
cost nothing and no layer compositing is needed.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike
from PIL import ImageDraw

from cotembed_critters.drawing.geometry import ellipse_pts, tube
from cotembed_critters.drawing.palette import RGB

Op = tuple[str, np.ndarray, RGB, RGB | float | None]
"""(kind, local-frame points, fill, style): style is the outline colour of a polygon or the width of a line."""


def _draw_poly(draw: ImageDraw.ImageDraw, xy: list[float], fill: RGB, style: RGB | float | None, outline_px: int, scale: float) -> None:
    draw.polygon(xy, fill=fill, outline=style, width=outline_px if style else 1)


def _draw_line(draw: ImageDraw.ImageDraw, xy: list[float], fill: RGB, style: RGB | float | None, outline_px: int, scale: float) -> None:
    draw.line(xy, fill=fill, width=max(1, round(float(style) * scale)), joint="curve")  # type: ignore[arg-type]


_DRAW: dict[str, Callable[[ImageDraw.ImageDraw, list[float], RGB, RGB | float | None, int, float], None]] = {
    "poly": _draw_poly,  # style: outline colour or None
    "line": _draw_line,  # style: width in local units
}


class Pen:
    """Records local-frame shapes (filled polygons, ellipses, lines, limbs), then draws them in order."""

    def __init__(self) -> None:
        self.ops: list[Op] = []

    def poly(self, pts: ArrayLike, fill: RGB, outline: RGB | None = None) -> None:
        self.ops.append(("poly", np.asarray(pts, dtype=float), fill, outline))

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, fill: RGB, outline: RGB | None = None, rot: float = 0.0) -> None:
        self.poly(ellipse_pts(cx, cy, rx, ry, rot), fill, outline)

    def line(self, pts: ArrayLike, fill: RGB, width: float) -> None:
        self.ops.append(("line", np.asarray(pts, dtype=float), fill, width))

    def thick(self, pts: ArrayLike, width: float, fill: RGB, outline: RGB) -> None:
        """A limb: an outlined straight or bent stroke (drawn as a tube polygon)."""
        c = np.asarray(pts, dtype=float)
        if len(c) == 2:
            c = np.vstack([c[0], (c[0] + c[1]) / 2, c[1]])
        poly, _ = tube(c, np.full(len(c), width / 2))
        self.poly(poly, fill, outline)
        self.ellipse(c[-1, 0], c[-1, 1], width / 2, width / 2, fill)  # rounded end over the seam

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
        """Draw every recorded shape, in recording order, through the map :meth:`place` chose."""
        for kind, pts, fill, style in self.ops:
            xy = (pts @ self.m.T + self.t).ravel().tolist()
            _DRAW[kind](draw, xy, fill, style, outline_px, self.scale)
