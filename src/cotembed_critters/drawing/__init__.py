"""The parts :func:`cotembed_critters.render.render` draws a critter with, one concern each.

- :mod:`.palette`: body colours and the colours derived from them (outline, accents, ink);
- :mod:`.geometry`: curves and outlines in the creature's local frame (pure numpy);
- :mod:`.pen`: records local-frame shapes, then fits and draws them through one affine map;
- :mod:`.anatomy`: body plans, one per form, and where traits attach to each (``BODY_PLANS``);
- :mod:`.traits`: horn, wings, spikes, ... drawn on any body plan (``TRAITS``);
- :mod:`.scenes`: backgrounds (``SCENES``);
- :mod:`.clutter`: distractors and occluders for the ``hard`` difficulty.

Every registry is keyed by the vocabulary keys of :mod:`cotembed_critters.world`, so a
new attribute value is one function plus one registry entry. Random draws happen in a
fixed order, which is what keeps renders pixel-identical for a given seed.
"""
