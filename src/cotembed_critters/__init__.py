"""critters: a procedural offline world of made-up creatures for image experiments.

Each critter is a combination of four attributes (colour, form, trait, scene;
see :mod:`cotembed_critters.world`). :func:`render` draws one as a small RGB
image, :func:`caption` describes it in words from the vocabulary only, and
:mod:`cotembed_critters.species` names attribute combinations as species,
writes ImageFolder splits and builds matching chain-of-thought systems;
:mod:`cotembed_critters.model` and :mod:`cotembed_critters.train` hold the bundled
default model ``critters`` (weights in ``weights/``) and its training.

A guest of ``cotembed``: it imports the library, never the other way round. The core
reaches it only through its adapters, by import string: the ``critters`` entry of the
encoder registry and the ``cotembed critters`` verb.
"""

from __future__ import annotations

from cotembed_critters.captions import caption
from cotembed_critters.render import render

__all__ = ["caption", "render"]
