"""critters: a procedural offline world of made-up creatures for image experiments.

Each critter is a combination of four attributes (colour, form, trait, scene;
see :mod:`cotembed_critters.world`). :func:`render` draws one as a small RGB
image, :func:`caption` describes it in words from the vocabulary only, and
:mod:`cotembed_critters.species` names attribute combinations as species,
writes ImageFolder splits and builds matching chain-of-thought systems.
"""

from __future__ import annotations

from cotembed_critters.captions import caption
from cotembed_critters.render import render

__all__ = ["caption", "render"]
