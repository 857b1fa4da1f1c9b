"""Body plans: one per form, drawing the body and saying where traits attach to it.

A body plan is a function ``rng -> Anatomy``: the parts to draw behind, as and in front
of the body, plus the attachment sites (crown for horns and antennae, back for spikes,
rear for a tail, wing root, and the surface spots and stripes go on). Traits read only
those sites, so every trait works on every form. :data:`BODY_PLANS` maps each form key
to its plan.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from cotembed_critters.drawing.geometry import ellipse_top, spline, tube
from cotembed_critters.drawing.palette import Palette, shade
from cotembed_critters.drawing.pen import Pen

Part = Callable[[Pen, Palette], None]
"""One piece of a body, drawn with the critter's palette."""


@dataclass
class Anatomy:
    """Where the traits attach, in the local frame (facing right, y down)."""

    crown: tuple[float, float]
    crown_angle: float  # direction "up" from the head, radians (image frame: -pi/2 is up)
    back: list[tuple[float, float, float]]  # spike sites: x, y, outward angle
    rear: tuple[float, float, float]  # tail root and the angle the tail leaves at
    wing_root: tuple[float, float]
    patch: tuple[float, float, float, float] | None = None  # body ellipse for spots/stripes
    stripe_axis: int = 0  # 0: bands across x (vertical bands), 1: across y
    tube: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # serpent: centre, normals, half-width
    body: list[Part] = field(default_factory=list)
    behind: list[Part] = field(default_factory=list)
    front: list[Part] = field(default_factory=list)


def eye(x: float, y: float, r: float) -> Part:
    """A round eye with its pupil towards the front."""

    def draw(pen: Pen, pal: Palette) -> None:
        pen.ellipse(x, y, r, r, (250, 250, 250), (20, 20, 20))
        pen.ellipse(x + r * 0.3, y, r * 0.5, r * 0.55, (10, 10, 10))

    return draw


def blob(rng: np.random.Generator) -> Anatomy:
    cx, cy, rx, ry = 0.0, 0.08, 0.74, 0.66
    a = Anatomy(
        crown=(0.2, cy - ry * 0.97), crown_angle=math.radians(-80),
        back=ellipse_top(cx, cy, rx, ry, (-150, -125, -100, -75, -50)),
        rear=(-rx + 0.04, cy + 0.15, math.radians(175)), wing_root=(-0.1, cy - ry * 0.75),
        patch=(cx, cy, rx, ry), stripe_axis=0,
    )
    a.body.append(lambda pen, pal: pen.ellipse(cx, cy, rx, ry, pal.body, pal.outline))
    a.front += [eye(0.28, -0.12, 0.11), eye(0.56, -0.1, 0.1)]
    a.front.append(lambda pen, pal: pen.line([(0.3, 0.22), (0.42, 0.28), (0.56, 0.22)], pal.outline, 0.045))
    return a


def serpent(rng: np.random.Generator) -> Anatomy:
    wiggle = rng.uniform(0.8, 1.2)
    ctrl = [(-0.95, 0.42), (-0.62, 0.12 - 0.1 * wiggle), (-0.28, 0.5), (0.06, 0.12 - 0.08 * wiggle), (0.36, 0.46), (0.58, 0.14), (0.64, -0.12)]
    c = spline(ctrl, 7)
    t = np.linspace(0, 1, len(c))
    half = 0.035 + 0.125 * np.minimum(1.0, t * 2.2)
    poly, n = tube(c, half)
    hx, hy = 0.7, -0.26
    a = Anatomy(
        crown=(hx - 0.02, hy - 0.16), crown_angle=math.radians(-80),
        back=[(c[i, 0] + n[i, 0] * half[i], c[i, 1] + n[i, 1] * half[i], math.atan2(n[i, 1], n[i, 0])) for i in (10, 17, 24, 31)],
        rear=(c[0, 0], c[0, 1], math.atan2(c[0, 1] - c[2, 1], c[0, 0] - c[2, 0])), wing_root=(c[21, 0], c[21, 1]),
        tube=(c, n, half),
    )

    def body(pen: Pen, pal: Palette) -> None:
        pen.poly(poly, pal.body, pal.outline)
        pen.ellipse(hx, hy, 0.25, 0.19, pal.body, pal.outline, rot=-0.25)

    a.body.append(body)
    a.front.append(eye(hx + 0.08, hy - 0.04, 0.065))
    a.front.append(lambda pen, pal: pen.line([(hx + 0.16, hy + 0.07), (hx + 0.24, hy + 0.04)], pal.outline, 0.03))
    return a


def beast(rng: np.random.Generator) -> Anatomy:
    cx, cy, rx, ry = -0.1, 0.0, 0.58, 0.3
    hx, hy = 0.6, -0.32
    a = Anatomy(
        crown=(hx - 0.03, hy - 0.16), crown_angle=math.radians(-75),
        back=ellipse_top(cx, cy, rx, ry, (-150, -125, -100, -75)),
        rear=(cx - rx + 0.03, cy - 0.08, math.radians(200)), wing_root=(cx + 0.05, cy - ry * 0.85),
        patch=(cx, cy, rx, ry), stripe_axis=0,
    )
    legs_far = [(-0.42, 0.08), (0.22, 0.08)]
    legs_near = [(-0.56, 0.1), (0.36, 0.1)]

    def far(pen: Pen, pal: Palette) -> None:
        for x, y in legs_far:
            pen.thick([(x, y), (x + 0.02, 0.66)], 0.13, pal.far, pal.outline)

    def body(pen: Pen, pal: Palette) -> None:
        pen.poly([(0.22, -0.2), (0.52, -0.42), (0.66, -0.24), (0.42, 0.08)], pal.body, pal.outline)  # neck
        pen.ellipse(cx, cy, rx, ry, pal.body, pal.outline)
        for x, y in legs_near:
            pen.thick([(x, y), (x - 0.02, 0.68)], 0.14, pal.body, pal.outline)
        pen.ellipse(hx, hy, 0.2, 0.16, pal.body, pal.outline)
        pen.ellipse(hx + 0.19, hy + 0.06, 0.12, 0.085, pal.body, pal.outline)  # snout
        pen.ellipse(hx + 0.29, hy + 0.03, 0.03, 0.03, pal.outline)  # nose

    a.behind.append(far)
    a.body.append(body)
    a.front.append(eye(hx + 0.03, hy - 0.04, 0.05))
    return a


def bird(rng: np.random.Generator) -> Anatomy:
    cx, cy, rx, ry = -0.08, 0.1, 0.44, 0.31
    hx, hy, hr = 0.36, -0.24, 0.2
    a = Anatomy(
        crown=(hx - 0.02, hy - hr * 0.9), crown_angle=math.radians(-80),
        back=ellipse_top(cx, cy, rx, ry, (-150, -125, -100, -75)),
        rear=(cx - rx + 0.05, cy - 0.05, math.radians(195)), wing_root=(cx + 0.02, cy - ry * 0.8),
        patch=(cx, cy, rx, ry), stripe_axis=0,
    )

    def behind(pen: Pen, pal: Palette) -> None:
        for tip_y in (-0.18, 0.06, 0.3):  # tail feathers
            pen.poly([(cx - rx + 0.1, cy - 0.08), (cx - rx - 0.42, cy + tip_y - 0.06), (cx - rx - 0.4, cy + tip_y + 0.06), (cx - rx + 0.1, cy + 0.1)], pal.far, pal.outline)
        for x in (-0.14, 0.04):  # legs with toes
            pen.line([(x, cy + ry - 0.05), (x, 0.72)], pal.beak, 0.045)
            pen.line([(x - 0.07, 0.74), (x + 0.1, 0.74)], pal.beak, 0.04)

    def body(pen: Pen, pal: Palette) -> None:
        pen.ellipse(cx, cy, rx, ry, pal.body, pal.outline)
        pen.ellipse(hx, hy, hr, hr, pal.body, pal.outline)
        pen.poly([(hx + 0.14, hy - 0.08), (hx + 0.46, hy + 0.03), (hx + 0.14, hy + 0.1)], pal.beak, shade(pal.beak, 0.5))

    a.behind.append(behind)
    a.body.append(body)
    a.front.append(eye(hx + 0.06, hy - 0.04, 0.055))
    return a


def fish(rng: np.random.Generator) -> Anatomy:
    cx, cy, rx, ry = 0.02, 0.0, 0.6, 0.31
    a = Anatomy(
        crown=(0.32, cy - ry * 0.8), crown_angle=math.radians(-70),
        back=ellipse_top(cx, cy, rx, ry, (-145, -120, -95, -70)),
        rear=(cx - rx - 0.32, cy, math.radians(180)), wing_root=(cx, cy - ry * 0.85),
        patch=(cx, cy, rx, ry), stripe_axis=0,
    )

    def behind(pen: Pen, pal: Palette) -> None:
        x0 = cx - rx
        pen.poly([(x0 + 0.12, cy), (x0 - 0.36, cy - 0.38), (x0 - 0.22, cy), (x0 - 0.36, cy + 0.38)], pal.far, pal.outline)  # forked tail fin
        pen.poly([(cx - 0.3, cy - ry + 0.08), (cx - 0.14, cy - ry - 0.17), (cx + 0.14, cy - ry - 0.2), (cx + 0.12, cy - ry + 0.1)], pal.far, pal.outline)  # dorsal fin

    def body(pen: Pen, pal: Palette) -> None:
        pen.ellipse(cx, cy, rx, ry, pal.body, pal.outline)

    def front(pen: Pen, pal: Palette) -> None:
        pen.line([(0.32, -0.18), (0.27, 0.0), (0.32, 0.18)], pal.outline, 0.03)  # gill
        pen.poly([(0.12, 0.1), (-0.18, 0.2), (-0.06, 0.3), (0.1, 0.2)], pal.far, pal.outline)  # pectoral fin
        pen.line([(0.5, 0.07), (0.6, 0.05)], pal.outline, 0.03)  # mouth

    a.behind.append(behind)
    a.body.append(body)
    a.front += [front, eye(0.42, -0.07, 0.065)]
    return a


def insect(rng: np.random.Generator) -> Anatomy:
    ax, ay, arx, ary = -0.25, 0.02, 0.42, 0.25
    tx, ty = 0.28, 0.0
    hx, hy, hr = 0.58, -0.07, 0.15
    a = Anatomy(
        crown=(hx - 0.02, hy - hr * 0.9), crown_angle=math.radians(-65),
        back=ellipse_top(ax, ay, arx, ary, (-150, -125, -100, -75)) + [(tx, ty - 0.17, math.radians(-90))],
        rear=(ax - arx + 0.03, ay, math.radians(180)), wing_root=(0.12, -0.14),
        patch=(ax, ay, arx, ary), stripe_axis=0,
    )
    feet_near = [(0.66, 0.58), (0.3, 0.6), (-0.08, 0.58)]
    feet_far = [(0.76, 0.5), (0.42, 0.52), (0.04, 0.5)]
    hips = [(0.34, 0.1), (0.27, 0.12), (0.2, 0.1)]

    def legs(feet: list[tuple[float, float]]) -> Part:
        def draw(pen: Pen, pal: Palette) -> None:
            for (hx_, hy_), (fx, fy) in zip(hips, feet):
                knee = ((hx_ + fx) / 2 + (fx - hx_) * 0.25, hy_ + 0.06)
                pen.line([(hx_, hy_), knee, (fx, fy)], pal.ink, 0.045)

        return draw

    def body(pen: Pen, pal: Palette) -> None:
        pen.ellipse(ax, ay, arx, ary, pal.body, pal.outline)
        pen.ellipse(tx, ty, 0.19, 0.16, pal.body, pal.outline)
        pen.ellipse(hx, hy, hr, hr, pal.body, pal.outline)
        pen.line([(hx + 0.12, hy + 0.1), (hx + 0.2, hy + 0.16)], pal.outline, 0.035)  # mandible

    a.behind.append(legs(feet_far))
    a.body.append(body)
    a.front += [legs(feet_near), eye(hx + 0.06, hy - 0.03, 0.05)]
    return a


def biped(rng: np.random.Generator) -> Anatomy:
    cx, cy, rx, ry = 0.0, 0.04, 0.28, 0.4
    hx, hy, hr = 0.05, -0.55, 0.21
    a = Anatomy(
        crown=(hx + 0.02, hy - hr * 0.95), crown_angle=math.radians(-85),
        back=ellipse_top(cx, cy, rx, ry, (200, 180, 160, 140)),
        rear=(cx - rx + 0.04, cy + 0.22, math.radians(165)), wing_root=(cx - 0.1, cy - ry * 0.6),
        patch=(cx, cy, rx, ry), stripe_axis=1,
    )

    def behind(pen: Pen, pal: Palette) -> None:
        pen.thick([(-0.16, -0.22), (-0.36, 0.0), (-0.42, 0.2)], 0.1, pal.far, pal.outline)  # far arm
        for x in (-0.11, 0.11):  # legs and feet
            pen.thick([(x, 0.3), (x + 0.01, 0.82)], 0.14, pal.body, pal.outline)
            pen.ellipse(x + 0.08, 0.85, 0.12, 0.06, pal.body, pal.outline)

    def body(pen: Pen, pal: Palette) -> None:
        pen.ellipse(cx, cy, rx, ry, pal.body, pal.outline)
        pen.ellipse(hx, hy, hr, hr, pal.body, pal.outline)

    def arm(pen: Pen, pal: Palette) -> None:
        pen.thick([(0.16, -0.22), (0.38, -0.02), (0.46, 0.18)], 0.1, pal.body, pal.outline)

    a.behind.append(behind)
    a.body.append(body)
    a.front += [arm, eye(hx + 0.1, hy - 0.03, 0.055)]
    a.front.append(lambda pen, pal: pen.line([(hx + 0.08, hy + 0.1), (hx + 0.17, hy + 0.08)], pal.outline, 0.03))
    return a


BODY_PLANS: dict[str, Callable[[np.random.Generator], Anatomy]] = {
    "blob": blob, "serpent": serpent, "beast": beast, "bird": bird,
    "fish": fish, "insect": insect, "biped": biped,
}
"""Form key -> body plan."""
