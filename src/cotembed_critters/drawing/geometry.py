"""Curves and outlines in the creature's local frame (facing right, y down, about [-1, 1]^2).

Pure numpy: every shape is a point array the pen maps to the image later.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

N_ELLIPSE = 28
_COS = np.cos(np.linspace(0, 2 * np.pi, N_ELLIPSE, endpoint=False))
_SIN = np.sin(np.linspace(0, 2 * np.pi, N_ELLIPSE, endpoint=False))


def ellipse_pts(cx: float, cy: float, rx: float, ry: float, rot: float = 0.0) -> np.ndarray:
    """An ellipse as an ``N_ELLIPSE``-gon (rotated by ``rot`` radians about its centre)."""
    x, y = rx * _COS, ry * _SIN
    if rot:
        c, s = math.cos(rot), math.sin(rot)
        x, y = x * c - y * s, x * s + y * c
    return np.stack([x + cx, y + cy], axis=1)


def ellipse_top(cx: float, cy: float, rx: float, ry: float, degrees: Sequence[float]) -> list[tuple[float, float, float]]:
    """Points on an ellipse at parametric angles, with their outward normal angles."""
    out = []
    for d in degrees:
        a = math.radians(d)
        x, y = cx + rx * math.cos(a), cy + ry * math.sin(a)
        out.append((x, y, math.atan2(math.sin(a) / ry, math.cos(a) / rx)))
    return out


def spline(points: Sequence[Sequence[float]], per_segment: int = 8) -> np.ndarray:
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


def normals(c: np.ndarray) -> np.ndarray:
    """Unit normals to the left of the direction of travel (up, for a curve going right)."""
    d = np.gradient(c, axis=0)
    d /= np.linalg.norm(d, axis=1, keepdims=True) + 1e-9
    return np.stack([d[:, 1], -d[:, 0]], axis=1)


def tube(c: np.ndarray, half: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Outline polygon of a curve of varying half-width, and its normals."""
    n = normals(c)
    left, right = c + n * half[:, None], c - n * half[:, None]
    return np.vstack([left, right[::-1]]), n


def rotate(v: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    rotated: np.ndarray = v @ np.array([[c, s], [-s, c]])
    return rotated
